"""Shared helpers of the proof parts: the real local system as a subprocess, HTTP, output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.e2e.conftest import Reply, _opener  # one HTTP client for the e2e tests and the proofs

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "proof"
START_TIMEOUT = 90.0


def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Reply:
    """One HTTP request, redirects not followed, error statuses returned (not raised)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return Reply(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read())


def get_json(url: str, timeout: float = 120.0) -> Any:
    reply = request(url, timeout=timeout)
    if reply.status != 200:
        raise RuntimeError(f"GET {url}: {reply.status} {reply.body[:200]!r}")
    return reply.json()


@dataclass
class Server:
    """A running ``python -m leadflow.local``."""

    base: str
    pid: int
    admin_key: str
    log_path: Path
    started_s: float

    def figures(self) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{self.base}/_local/figures")
        return result

    def events_by_type(self) -> dict[str, int]:
        by_type: dict[str, int] = self.figures()["events"]["by_type"]
        return by_type


@contextmanager
def local_server(name: str, *, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start ``python -m leadflow.local`` on a free loopback port (fresh state), wait until it answers,
    and stop it (SIGTERM, then SIGKILL) at the end. Its output goes to ``artifacts/proof/<name>-server.log``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = f"proof-{name}-{os.getpid()}"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LEADFLOW_LOCAL_ADMIN_KEY": admin_key,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_path = artifacts_dir() / f"{name}-server.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadflow.local"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait_ready(proc, base, log_path)
            yield Server(base, proc.pid, admin_key, log_path, time.monotonic() - started)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"leadflow.local exited with {proc.returncode}:\n{tail}")
        try:
            if request(f"{base}/_local/clock", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"leadflow.local did not answer at {base} within {START_TIMEOUT:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_until(check: Any, timeout: float = 30.0, interval: float = 0.25) -> Any:
    """Call ``check()`` until it returns something truthy; that value, or the last one at the deadline."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def emit(result: dict[str, Any], stream: IO[str] | None = None) -> None:
    """The part's one JSON line (compact, keys in order)."""
    print(json.dumps(result, separators=(",", ":"), default=str), file=stream or sys.stdout, flush=True)


def say(text: str) -> None:
    """A human line of a part's figures."""
    print(text, flush=True)
