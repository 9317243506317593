"""``python -m leadflow.local`` (what ``make run`` starts): the whole system on one port."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from leadflow.local.server import LocalServer
from leadflow.local.system import ROOT, LocalSystem
from leadflow.platform.routes import ADMIN_ROUTES, PUBLIC_ROUTES


def content_problems() -> list[str]:
    """The journeys' problems (language, templates, template variables), checked before anything
    starts: ``make run`` refuses a bad journey with its problems instead of failing at a send."""
    from leadflow.journeys.checks import check_content

    return check_content(ROOT)


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LEADFLOW_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    base = f"http://{host}:{port}"
    problems = content_problems()
    if problems:
        print("leadflow did not start: fix these journey problems first", file=sys.stderr)
        for problem in problems:
            print(f"  error: {problem}", file=sys.stderr)
        return 1
    with LocalSystem(public_base_url=base) as system:
        server = LocalServer(system, host, port)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        print(f"leadflow is running locally on an embedded AWS (moto) at {base}", flush=True)
        print(f"  demo page        {base}/", flush=True)
        print("  public API (the track function, as API Gateway routes it):", flush=True)
        for route in PUBLIC_ROUTES:
            print(f"    {route.method:<5} {base}{route.path}", flush=True)
        print("  admin API (the admin function; IAM in AWS, locally this dev credential):", flush=True)
        for route in ADMIN_ROUTES:
            print(f"    {route.method:<5} {base}{route.path}", flush=True)
        print(f"    header: Authorization: Bearer {system.admin_key}", flush=True)
        print("    (set LEADFLOW_LOCAL_ADMIN_KEY to choose the credential)", flush=True)
        print(
            f"  signed server events: POST {base}/events/signed, source 'default', key {system.event_source_key}"
            " (set LEADFLOW_LOCAL_EVENT_SOURCE_KEY to choose it)",
            flush=True,
        )
        print("  operator routes:", flush=True)
        print(
            f"    GET   {base}/_local/              dashboard: figures, executions, outbox, contacts",
            flush=True,
        )
        print(f"    GET   {base}/_local/figures       the dashboard figures as JSON", flush=True)
        print(f"    GET   {base}/_local/outbox        emails and SMS sent", flush=True)
        print(f'    POST  {base}/_local/clock/advance {{"seconds": N}}  advance virtual time', flush=True)
        print(f"    GET   {base}/_local/executions    journey executions", flush=True)
        print(
            f"    POST  {base}/_local/journeys/deploy  publish edited journeys (new versions; "
            "contacts in flight as each file's on_change says)",
            flush=True,
        )
        print(f"  journeys: {', '.join(system.state_machines)}   (Ctrl-C to stop)", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
