"""The local HTTP front door: the demo site, the public API exactly as API Gateway routes it to
``track`` (HTTP API v2 events), and operator routes under ``/_local/``."""

from __future__ import annotations

import base64
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadflow.local import ops_pages
from leadflow.local.system import LocalSystem

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/thanks": "thanks.html"}
MAX_BODY = 1024 * 1024
MAX_ADVANCE = 400 * 86400
log = logging.getLogger("leadflow.local.server")


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(
            status, json.dumps(payload, indent=1, default=str).encode(), {"Content-Type": "application/json"}
        )

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body larger than {MAX_BODY} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if body is None:
            return
        try:
            if url.path.startswith("/_local/"):
                self._operator(method, url.path, body, url.query)
            elif method == "GET" and url.path in PAGES:
                page = (STATIC / PAGES[url.path]).read_bytes()
                self._send(HTTPStatus.OK, page, {"Content-Type": "text/html; charset=utf-8"})
            else:
                self._api(method, url.path, url.query, body)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client went away before the answer")  # nothing to answer to
        except Exception:
            log.exception("request failed")
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    def _api(self, method: str, path: str, query: str, body: bytes) -> None:
        headers = dict(self.headers.items())
        result = self.server.system.invoke_http(
            method, path, query=query, headers=headers, body=body, source_ip=self.client_address[0]
        )
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        response_headers = dict(result.get("headers") or {})
        for key, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[key] = ", ".join(values)
        self._send(int(result.get("statusCode", 500)), payload, response_headers, result.get("cookies"))

    def _operator(self, method: str, path: str, body: bytes, query: str = "") -> None:
        system = self.server.system
        if method == "GET" and path in ("/_local/outbox", "/_local/executions"):
            # let in-flight work (stream records, running executions) finish first: reads are consistent
            with self.server.clock_lock:
                _settle_briefly(system)
            self._json(HTTPStatus.OK, system.outbox() if path.endswith("outbox") else system.executions())
        elif method == "POST" and path == "/_local/clock/advance":
            seconds, error = _advance_seconds(body)
            if error:
                self._json(
                    HTTPStatus.BAD_REQUEST,
                    {"error": "invalid request", "fields": [{"field": "seconds", "message": error}]},
                )
                return
            with self.server.clock_lock:
                now = system.advance(seconds)
            self._json(
                HTTPStatus.OK,
                {"now": system.clock.now_datetime().isoformat(), "epoch": now, "advanced": seconds},
            )
        elif method == "POST" and path == "/_local/journeys/deploy":
            self._deploy_journeys(system)
        elif method == "POST" and path.startswith("/_local/journeys/") and path.endswith("/simulate"):
            self._simulate(system, path.removeprefix("/_local/journeys/").removesuffix("/simulate"), body)
        elif ops_pages.handles(method, path):
            with self.server.clock_lock:  # settled, and no clock move while the page is read
                _settle_briefly(system)
                page = ops_pages.render(system, path, query)
            if page is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no operator route {method} {path}"})
                return
            status, content_type, payload = page
            self._send(status, payload, {"Content-Type": content_type})
        elif method == "GET" and path == "/_local/clock":
            self._json(
                HTTPStatus.OK, {"now": system.clock.now_datetime().isoformat(), "epoch": system.clock.now()}
            )
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no operator route {method} {path}"})

    def _deploy_journeys(self, system: LocalSystem) -> None:
        """Re-deploy the edited journey files as ``cdk deploy`` would: checked first (a problem
        refuses the deploy, 400 with every problem); each changed journey gets a new version and
        its alias moves, running executions keep theirs."""
        from leadflow.journeys.checks import check_content

        problems = check_content(system.content_dir)
        if problems:
            self._json(
                HTTPStatus.BAD_REQUEST, {"error": "journey problems: nothing deployed", "problems": problems}
            )
            return
        with self.server.clock_lock:
            outcome = system.deploy_journeys()
        self._json(
            HTTPStatus.OK,
            {
                "journeys": outcome,
                "in_flight": [report.to_dict() for report in system.change_reports],
                "failed": system.change_failures,
            },
        )

    def _simulate(self, system: LocalSystem, journey_id: str, body: bytes) -> None:
        """Replay a history through a journey apart from this system (``leadflow journeys
        simulate``): body ``{"journey": YAML?, "events": JSONL?, "contacts": JSONL?}``; without
        ``journey`` the loaded journey's file, without ``events`` this system's own history."""
        from leadflow.journeys import load_journey
        from leadflow.local.simulate import local_history, simulate_apart

        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict) or any(
            not isinstance(request.get(k), str | None) for k in ("journey", "events", "contacts")
        ):
            self._json(
                HTTPStatus.BAD_REQUEST, {"error": "body: a JSON object of journey, events, contacts texts"}
            )
            return
        journey = request.get("journey")
        if journey is None:
            for file in sorted((system.content_dir / "journeys").glob("*.yaml")):
                if load_journey(file).id == journey_id:
                    journey = file.read_text(encoding="utf-8")
        if journey is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no journey {journey_id}"})
            return
        events, contacts = request.get("events"), request.get("contacts")
        if events is None:
            with self.server.clock_lock:
                _settle_briefly(system)
                events, contacts = local_history(system)
        outcome = simulate_apart(journey, events, contacts, templates=system.content_dir / "templates")
        self._json(HTTPStatus.BAD_REQUEST if "error" in outcome else HTTPStatus.OK, outcome)


SETTLE_SECONDS = 5.0


def _settle_briefly(system: Any) -> None:
    """Let in-flight work finish before a read, but answer anyway when bulk work (a broadcast, a
    segment re-evaluation over thousands of contacts) keeps the system busy for longer."""
    try:
        system.settle(timeout=SETTLE_SECONDS)
    except TimeoutError:
        log.info("answering while work is still in flight")


def _advance_seconds(body: bytes) -> tuple[float, str | None]:
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 0, 'the body must be JSON like {"seconds": 3600}'
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return 0, "must be a number"
    if not 0 < seconds <= MAX_ADVANCE:
        return 0, f"must be greater than 0 and at most {MAX_ADVANCE}"
    return float(seconds), None


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, system: LocalSystem, host: str = "127.0.0.1", port: int = 8080) -> None:
        import threading

        self.system = system
        self.clock_lock = threading.Lock()
        super().__init__((host, port), _Handler)
