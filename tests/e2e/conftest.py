"""The whole local system, started once per test module, on a free port."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from leadflow.local.server import LocalServer
from leadflow.local.system import LocalSystem


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Site:
    """A visitor's and an operator's view of the running local system."""

    base: str
    system: LocalSystem

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with _opener.open(req, timeout=30) as resp:
                return Reply(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers.items()), err.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_form(self, path: str, fields: str) -> Reply:
        return self.request(
            "POST", path, fields.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )

    def post_json(self, path: str, payload: Any) -> Reply:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def outbox(self) -> list[dict[str, Any]]:
        self.system.settle()
        result: list[dict[str, Any]] = self.get("/_local/outbox").json()
        return result

    def executions(self) -> list[dict[str, Any]]:
        self.system.settle()
        result: list[dict[str, Any]] = self.get("/_local/executions").json()
        return result

    def advance(self, seconds: float) -> Reply:
        return self.post_json("/_local/clock/advance", {"seconds": seconds})


@contextmanager
def local_site(*, background_pump: bool = True) -> Iterator[Site]:
    """The local system behind its HTTP server on a free port (the links in emails point at it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with LocalSystem(public_base_url=f"http://127.0.0.1:{port}", background_pump=background_pump) as system:
        server = LocalServer(system, "127.0.0.1", port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Site(base=f"http://127.0.0.1:{port}", system=system)
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with local_site() as running:
        yield running
