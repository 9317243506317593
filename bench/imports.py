"""Cold-start proxy: import time of each function's module relative to ``import boto3`` alone,
each measured in fresh interpreters, interleaved, median of several runs — for EVERY function
(``leadflow.local.system.FUNCTIONS``), in the environment Lambda gives it: tracing and metrics on
(the local runtime's ``POWERTOOLS_*_DISABLED`` left out), ``AWS_LAMBDA_FUNCTION_NAME`` set.

With Lambda SnapStart the import runs once per published version, before the snapshot; a cold start
restores the snapshot and runs the after-restore hooks (``leadflow.kernel.snapshot``). ``restore``
times those hooks the same way: the module imported and the before-snapshot hooks run, untimed,
then the after-restore hooks, timed. (Lambda's own restore of the snapshot is not code of ours and
cannot be measured here.)"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from leadflow.local.system import FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent

LOCAL_ONLY = ("POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_DISABLED")

_TIMER = """
import importlib.util, sys, time
t = time.perf_counter()
{body}
print(time.perf_counter() - t)
"""
_RESTORE_FUNCTION = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("fn", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from snapshot_restore_py import get_after_restore, get_before_snapshot
for hook, args, kwargs in reversed(get_before_snapshot()):
    hook(*args, **kwargs)
t = time.perf_counter()
for hook, args, kwargs in get_after_restore():
    hook(*args, **kwargs)
print(time.perf_counter() - t)
"""
_IMPORT_FUNCTION = """
spec = importlib.util.spec_from_file_location("fn", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def _time(body: str, env: Mapping[str, str], timer: str = _TIMER) -> float:
    out = subprocess.run(
        [sys.executable, "-c", timer.format(body=body)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env),
        cwd=ROOT,
    )
    return float(out.stdout.strip().splitlines()[-1])


def import_ratios(env: Mapping[str, str], runs: int = 7) -> dict[str, float]:
    """{function: median import seconds / median boto3 import seconds}."""
    full_env = {k: v for k, v in {**os.environ, **env}.items() if k not in LOCAL_ONLY}
    full_env["AWS_LAMBDA_FUNCTION_NAME"] = "leadflow-bench"
    samples: dict[str, list[float]] = {"boto3": [], **{fn: [] for fn in FUNCTIONS}}
    for _ in range(runs):
        samples["boto3"].append(_time("import boto3", full_env))
        for fn in FUNCTIONS:
            body = _IMPORT_FUNCTION.format(path=str(ROOT / "functions" / fn / "app.py"))
            samples[fn].append(_time(body, full_env))
    base = statistics.median(samples["boto3"])
    return {"boto3_s": base} | {fn: statistics.median(samples[fn]) / base for fn in FUNCTIONS}


def restore_ratios(env: Mapping[str, str], boto3_s: float, runs: int = 5) -> dict[str, float]:
    """{function: median seconds of its after-restore hooks / ``boto3_s`` (``import boto3``)}."""
    full_env = {k: v for k, v in {**os.environ, **env}.items() if k not in LOCAL_ONLY}
    full_env["AWS_LAMBDA_FUNCTION_NAME"] = "leadflow-bench"
    samples: dict[str, list[float]] = {fn: [] for fn in FUNCTIONS}
    for _ in range(runs):
        for fn in FUNCTIONS:
            code = _RESTORE_FUNCTION.format(path=str(ROOT / "functions" / fn / "app.py"))
            samples[fn].append(_time(code, full_env, timer="{body}"))
    return {fn: statistics.median(samples[fn]) / boto3_s for fn in FUNCTIONS}
