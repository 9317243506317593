"""Lambda SnapStart: what a function does before Lambda snapshots its initialized execution
environment, and after Lambda restores a new environment from that snapshot.

With SnapStart (``infra``: every function on a visitor's, a contact's or an operator's path),
Lambda runs a function's init — the imports, ``Settings``, the boto3 clients, the precompiled
content — once per published version, snapshots the memory, and starts every later environment of
that version from the snapshot. A cold start then runs only the after-restore hooks registered
here (``make bench``: ``restore_vs_boto3_ratio``). The hooks go through ``snapshot_restore_py``,
which Lambda's Python runtimes (3.12 and later) include; locally it is a dev dependency, and where
it is missing (a process Lambda never snapshots) registering does nothing.

Invariants:
- Nothing that must differ between environments is in the snapshot. ``random``'s state is
  reseeded after every restore: without it, every environment restored from one snapshot draws the
  same backoff jitter, and their retries of a throttled write arrive together. Ids and tokens come
  from ``os.urandom`` (``uuid4``, ``secrets``), which the kernel reseeds by itself.
- No cached secret or time-bound value outlives its age in a snapshot: the Powertools parameter
  caches (signing keys, CAPTCHA and webhook secrets) are cleared after every restore. No function
  fetches a secret or calls AWS during its init, so nothing is lost by it.
- Work an invocation would otherwise do lazily is done before the snapshot where it is known to be
  needed (``before_snapshot``: the X-Ray tracer, when tracing is on)."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

Hook = Callable[[], Any]


def _register(registration: str, hook: Hook) -> Hook:
    """``hook`` registered with ``snapshot_restore_py.<registration>``; outside Lambda's runtime
    (no library: a process Lambda never snapshots nor restores) nothing to register with."""
    try:
        import snapshot_restore_py
    except ImportError:
        return hook
    getattr(snapshot_restore_py, registration)(hook)
    return hook


def before_snapshot(hook: Hook) -> Hook:
    """Run ``hook`` before Lambda snapshots the initialized environment (SnapStart only)."""
    return _register("register_before_snapshot", hook)


def after_restore(hook: Hook) -> Hook:
    """Run ``hook`` in every environment Lambda restores from the snapshot (SnapStart only)."""
    return _register("register_after_restore", hook)


@after_restore
def reseed_random() -> None:
    """A restored environment's own ``random`` state (from ``os.urandom``)."""
    random.seed()


@after_restore
def forget_cached_parameters() -> None:
    """Secrets cached before the snapshot would be as old as the snapshot: fetch them again."""
    parameters = sys.modules.get("aws_lambda_powertools.utilities.parameters")
    if parameters is not None:  # only a function that reads secrets has loaded it
        parameters.clear_caches()
