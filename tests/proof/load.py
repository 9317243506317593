"""Proof part ``load``: a bounded, stepped load on loopback, then **events accepted == events stored**.

The generator is Python threads, each holding one keep-alive HTTP/1.1 connection (``http.client``),
fed an open-loop schedule (request *i* of a step is due at ``start + i / rate``). Why not ``wrk``:
the local server is one Python process on moto whose handlers run one at a time, so it saturates at
tens of requests per second, far below what a handful of Python threads can offer; and the check
that matters needs every response classified by event type (2xx/302/303 per type, duplicates,
``Location`` of form redirects), which is a few lines here and a Lua reporting layer with ``wrk``.
Latency is measured from the request's *scheduled* time, so a server that falls behind shows it
(no coordinated omission); the offered concurrency is capped at ``WORKERS`` connections.

Mix per step: page-view pixels, ``POST /events`` (JSON), signed click redirects (real links taken
from the welcome email of a seed sign-up in ``/_local/outbox``) and newsletter form posts (each a
new contact: a welcome journey execution and an email). What was stored is read from
``/_local/figures`` (which first lets the stream and the executions settle) and compared per type
with what the server accepted, minus what existed before the load."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import queue
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.proof.common import Server, get_json, local_server, request, say, wait_until

# steps of (target requests/s, seconds): bounded in count (sum of rate x seconds) and time
STEPS: tuple[tuple[float, float], ...] = ((10, 10), (20, 10), (40, 10))
WORKERS = 8
REQUEST_TIMEOUT = 30.0
# per 100 requests; pixels dominate real traffic. Every /events post and form post is a DynamoDB
# transaction, which moto serves by deep-copying each table it touches: those get slower as the
# tables grow (a local-runtime cost; AWS has no such term)
MIX: tuple[tuple[str, int], ...] = (("pixel", 70), ("event", 15), ("click", 10), ("form", 5))
EVENT_TYPE = {
    "pixel": "page_viewed",
    "event": "video_played",
    "click": "email_clicked",
    "form": "form_submitted",
}
SEED_EMAIL = "load-seed@example.com"
CLICK_LINK = re.compile(r"/t/c/([A-Za-z0-9._~-]+)")


@dataclass
class Outcome:
    kind: str
    status: int  # 0: no answer (connection error, timeout)
    latency: float  # from the scheduled time
    service: float  # from the moment the request was written
    accepted: bool
    error: str | None = None


@dataclass
class StepResult:
    rate: float
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0

    def figures(self) -> dict[str, Any]:
        done = [o for o in self.outcomes if o.status]
        latencies = sorted(o.latency for o in self.outcomes)
        return {
            "target_rps": self.rate,
            "seconds": self.seconds,
            "requests": len(self.outcomes),
            "achieved_rps": round(len(done) / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": _pct(latencies, 50),
            "p99_ms": _pct(latencies, 99),
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
            # information, not a target: the offered rate was served without a growing queue
            "kept_up": bool(self.elapsed) and len(done) / self.elapsed >= 0.95 * self.rate,
            "errors": sum(1 for o in self.outcomes if not o.accepted),
            "5xx": sum(1 for o in self.outcomes if o.status >= 500),
            "by_kind": dict(sorted(Counter(o.kind for o in self.outcomes).items())),
        }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return round(values[index] * 1000, 1)


class Traffic:
    """Builds the requests of each kind; thread-safe counters for unique ids."""

    def __init__(self, run_id: str, click_tokens: list[str], mix: tuple[tuple[str, int], ...] = MIX) -> None:
        self.run_id = run_id
        self.click_tokens = click_tokens
        self.visitors = [f"v{run_id}{i:06d}" for i in range(200)]
        self._lock = threading.Lock()
        self._n = 0
        self._rng = random.Random(run_id)
        kinds = [k for k, w in mix if w > 0 and (k != "click" or click_tokens)]
        self._kinds = kinds
        self._weights = [w for k, w in mix if k in kinds]

    def _next(self) -> tuple[int, random.Random]:
        with self._lock:
            self._n += 1
            return self._n, random.Random(f"{self.run_id}-{self._n}")

    def pick(self) -> str:
        with self._lock:
            return self._rng.choices(self._kinds, self._weights)[0]

    def build(self, kind: str) -> tuple[str, str, bytes | None, dict[str, str]]:
        n, rng = self._next()
        visitor = rng.choice(self.visitors)
        ua = {"User-Agent": "leadflow-proof-load/1"}
        if kind == "pixel":
            query = urlencode(
                {"vid": visitor, "url": f"https://www.example.com/blog/{n % 37}", "title": "Blog"}
            )
            return "GET", f"/t/p.gif?{query}", None, ua
        if kind == "event":
            body = {
                "type": EVENT_TYPE["event"],
                "visitor_id": visitor,
                "event_id": f"load-{self.run_id}-{n}",
                "properties": {"video": f"demo-{n % 5}", "seconds": n % 300},
            }
            return "POST", "/events", json.dumps(body).encode(), ua | {"Content-Type": "application/json"}
        if kind == "click":
            return "GET", f"/t/c/{rng.choice(self.click_tokens)}", None, ua
        form = urlencode(
            {
                "email": f"load-{self.run_id}-{n}@example.com",
                "first_name": "Load",
                "consent": "on",
                "visitor_id": visitor,
                "page_url": "https://www.example.com/",
            }
        ).encode()
        return "POST", "/forms/newsletter", form, ua | {"Content-Type": "application/x-www-form-urlencoded"}


def accepted(kind: str, status: int, headers: http.client.HTTPMessage, body: bytes) -> bool:
    """Whether the server said it took the event (and so must store exactly one)."""
    if kind == "pixel":
        return status == 200
    if kind == "event":
        return status == 202 and json.loads(body).get("duplicate") is False
    if kind == "click":
        return status == 302
    return status == 303 and (headers.get("Location") or "").endswith("/thanks")


def run_step(base: str, traffic: Traffic, rate: float, seconds: float, workers: int = WORKERS) -> StepResult:
    """Offer ``rate x seconds`` requests at ``rate``/s over at most ``workers`` keep-alive connections."""
    total = max(1, round(rate * seconds))
    result = StepResult(rate, seconds)
    tickets: queue.Queue[tuple[float, str] | None] = queue.Queue()
    start = time.monotonic() + 0.2
    for i in range(total):
        tickets.put((start + i / rate, traffic.pick()))
    for _ in range(workers):
        tickets.put(None)
    lock = threading.Lock()
    netloc = urlsplit(base).netloc
    signups = itertools.count()  # next() of a count is atomic under the GIL

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while (ticket := tickets.get()) is not None:
            due, kind = ticket
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            method, path, body, headers = traffic.build(kind)
            sent = time.monotonic()
            one_off: http.client.HTTPConnection | None = None
            try:
                if kind == "form":
                    # each sign-up is another person: its own connection from its own loopback
                    # network (forms budget sign-ups per source network: 10 per hour by default)
                    n = next(signups)
                    one_off = http.client.HTTPConnection(
                        netloc, timeout=REQUEST_TIMEOUT, source_address=(f"127.{1 + n // 250}.{n % 250}.1", 0)
                    )
                elif conn is None:
                    conn = http.client.HTTPConnection(netloc, timeout=REQUEST_TIMEOUT)
                use = one_off or conn
                assert use is not None
                use.request(method, path, body=body, headers=headers)
                resp = use.getresponse()
                payload = resp.read()
                status = resp.status
                ok = accepted(kind, status, resp.headers, payload)
                error = None if ok else f"{status} {payload[:120]!r}"
                if resp.will_close and one_off is None and conn is not None:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status, ok, error = 0, False, f"{type(exc).__name__}: {exc}"
                if conn is not None and one_off is None:
                    conn.close()
                    conn = None
            finally:
                if one_off is not None:
                    one_off.close()
            now = time.monotonic()
            with lock:
                result.outcomes.append(Outcome(kind, status, now - due, now - sent, ok, error))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 30)
    result.elapsed = max(time.monotonic() - start, 1e-6)
    return result


def seed_click_tokens(server: Server) -> list[str]:
    """Sign one contact up and take the click links of its welcome email from the outbox."""
    reply = request(
        f"{server.base}/forms/newsletter",
        "POST",
        urlencode({"email": SEED_EMAIL, "first_name": "Seed", "consent": "on"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    if reply.status != 303:
        raise RuntimeError(f"seed sign-up answered {reply.status}")

    def links() -> list[str]:
        found: set[str] = set()
        for message in get_json(f"{server.base}/_local/outbox"):
            if SEED_EMAIL in message.get("to", []):
                found.update(CLICK_LINK.findall((message.get("text") or "") + (message.get("html") or "")))
        return sorted(found)

    tokens: list[str] = wait_until(links, timeout=30)
    return tokens


def settle_counts(server: Server, timeout: float = 120.0) -> dict[str, int]:
    """Events by type once two reads in a row agree and no stream record is pending."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] | None = None
    while time.monotonic() < deadline:
        figures = server.figures()
        counts: dict[str, int] = figures["events"]["by_type"]
        pending = sum(int(c.get("pending", 0)) for c in figures["consumers"].values())
        if counts == last and pending == 0:
            return counts
        last = counts
        time.sleep(0.5)
    return last or {}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def measure(
    server: Server,
    steps: tuple[tuple[float, float], ...] = STEPS,
    workers: int = WORKERS,
    mix: tuple[tuple[str, int], ...] = MIX,
) -> dict[str, Any]:
    """Seed, baseline, the steps, settle, compare: the figures and ``ok``."""
    run_id = f"{os.getpid():x}{int(time.time()) % 100000:05d}"
    tokens = seed_click_tokens(server)
    before = settle_counts(server)
    rss_before = rss_mb(server.pid)
    traffic = Traffic(run_id, tokens, mix)
    results: list[StepResult] = []
    for rate, seconds in steps:
        step = run_step(server.base, traffic, rate, seconds, workers)
        results.append(step)
        f = step.figures()
        say(
            f"load: step {rate:>5.0f}/s x {seconds:.0f} s: {f['requests']} requests, {f['achieved_rps']}/s, "
            f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, errors {f['errors']}, 5xx {f['5xx']}"
        )
    t = time.monotonic()
    after = settle_counts(server)
    settle_s = round(time.monotonic() - t, 1)

    sent: Counter[str] = Counter()
    for step in results:
        sent.update(EVENT_TYPE[o.kind] for o in step.outcomes if o.accepted)
    comparison = {
        event_type: {
            "accepted": sent[event_type],
            "stored": after.get(event_type, 0) - before.get(event_type, 0),
        }
        for event_type in sorted(set(EVENT_TYPE.values()))
    }
    matched = all(c["accepted"] == c["stored"] for c in comparison.values())
    step_figures = [s.figures() for s in results]
    errors = [o.error for s in results for o in s.outcomes if o.error][:5]
    for event_type, c in comparison.items():
        say(f"load: {event_type:<15} accepted {c['accepted']:>5}  stored {c['stored']:>5}")
    five_xx = sum(f["5xx"] for f in step_figures)
    error_count = sum(f["errors"] for f in step_figures)
    return {
        "ok": matched and five_xx == 0 and error_count == 0 and sum(sent.values()) > 0,
        "steps": step_figures,
        "accepted_total": sum(sent.values()),
        "stored_total": sum(c["stored"] for c in comparison.values()),
        "accepted_eq_stored": matched,
        "by_type": comparison,
        "5xx": five_xx,
        "errors": error_count,
        "error_samples": errors,
        "settle_s": settle_s,
        "click_links": len(tokens),
        "workers": workers,
        "server_rss_mb": {"before": rss_before, "after": rss_mb(server.pid)},
        "server": "python -m leadflow.local: one process, moto in memory, handlers serialized",
    }


def run(steps: tuple[tuple[float, float], ...] = STEPS, workers: int = WORKERS) -> dict[str, Any]:
    with local_server("load") as server:
        result: dict[str, Any] = {"part": "load", "server_start_s": round(server.started_s, 2)}
        result |= measure(server, steps, workers)
    result["ok"] = bool(result["ok"])
    say(
        f"load: accepted {result['accepted_total']} == stored {result['stored_total']}: "
        f"{result['accepted_eq_stored']}; 5xx {result['5xx']}; settled in {result['settle_s']} s"
    )
    return {"part": result.pop("part"), "ok": result.pop("ok"), **result}
