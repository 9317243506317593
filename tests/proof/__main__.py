"""``make proof`` / ``python -m tests.proof [PART ...]``: run the proof parts, print a summary table.

Each part is a module ``tests.proof.<part>`` with ``run() -> dict``: it prints its figures as it
goes and returns its result, which holds at least ``"part"`` and ``"ok"`` (its targets met). The
runner prints that result as the part's one JSON line (unless the part just printed the same line
itself), then a summary table of all parts, and exits 1 if any part that ran failed its targets.
A part whose module does not exist yet is listed as absent and does not fail the run."""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import IO, Any

from tests.proof.common import artifacts_dir, emit

PARTS = ("browser", "load", "faults", "hostile", "access")
PACKAGE = "tests.proof"


class _LastLine:
    """Passes writes through (and into ``copy``: the part's log) and remembers the last complete
    non-empty line."""

    def __init__(self, stream: IO[str], copy: IO[str] | None = None) -> None:
        self.stream = stream
        self.copy = copy
        self.last = ""
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.last = line.strip()
        if self.copy is not None:
            self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        if self.copy is not None:
            self.copy.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def run_part(name: str) -> dict[str, Any]:
    """Import and run one part; its result (``status``: passed, failed or absent; ``seconds``)."""
    started = time.monotonic()
    try:
        module = importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{PACKAGE}.{name}":
            raise
        return {"part": name, "ok": None, "status": "absent", "seconds": 0.0}
    # the part's full output (figures, tracebacks, its JSON line) is kept in artifacts/proof/<part>.log
    log = (artifacts_dir() / f"{name}.log").open("w", encoding="utf-8")
    watcher = _LastLine(sys.stdout, log)
    saved, sys.stdout = sys.stdout, watcher
    saved_err, sys.stderr = sys.stderr, _LastLine(sys.stderr, log)
    try:
        result = dict(module.run())
    except Exception as exc:
        traceback.print_exc()
        result = {"part": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        sys.stdout, sys.stderr = saved, saved_err
    result.setdefault("part", name)
    result["ok"] = bool(result.get("ok"))
    printed = _as_json(watcher.last)
    if printed is None or printed.get("part") != name:
        emit(result)
        log.write(json.dumps(result, default=str) + "\n")
    log.close()
    result["status"] = "passed" if result["ok"] else "failed"
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _as_json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def headline(result: dict[str, Any]) -> str:
    """A part's key figures in one cell: its ``summary`` if it gives one, else a few scalar figures."""
    if result.get("summary"):
        return str(result["summary"])
    if result["status"] == "absent":
        return "module not present"
    if result.get("error"):
        return str(result["error"])[:100]
    if result["part"] == "load" and "steps" in result:
        steps = ", ".join(
            f"{s['target_rps']:g}/s→{s['achieved_rps']:g}/s p99 {s['p99_ms']:g} ms" for s in result["steps"]
        )
        return f"{steps}; 5xx {result['5xx']}; accepted {result['accepted_total']} = stored {result['stored_total']}"
    if result["part"] == "browser" and "checks" in result:
        passed = sum(1 for v in result["checks"].values() if v)
        return (
            f"{passed}/{len(result['checks'])} checks; page {result.get('page_load_ms')} ms, "
            f"submit→thanks {result.get('submit_to_thanks_ms')} ms"
        )
    skip = {"part", "ok", "status", "seconds"}
    scalars = [f"{k} {v}" for k, v in result.items() if k not in skip and isinstance(v, int | float | str)]
    return "; ".join(scalars[:4])


def summary(results: list[dict[str, Any]]) -> str:
    rows = [("part", "status", "seconds", "figures")] + [
        (r["part"], r["status"], f"{r['seconds']:.1f}", headline(r)) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]) for row in rows]
    lines.insert(1, "-+-".join(["-" * w for w in widths] + ["-" * 7]))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    names = argv or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part(s): {', '.join(unknown)}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = []
    for name in names:
        print(f"== proof: {name}", flush=True)
        results.append(run_part(name))
    failed = [r["part"] for r in results if r["status"] == "failed"]
    print(f"\n== proof summary ({time.monotonic() - started:.0f} s)")
    print(summary(results), flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
