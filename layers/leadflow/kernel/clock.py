"""The domain's time source. Lambda uses the wall clock; the local runtime installs its virtual
clock here so events, messages and email Date headers carry virtual time.

``iso`` is the one timestamp format stored in items (UTC, milliseconds, ``Z``); ``parse_iso`` reads
it back (and any ISO 8601 with an offset)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], float] = time.time


def now() -> float:
    return _source()


def utc_now() -> datetime:
    return datetime.fromtimestamp(_source(), UTC)


def set_source(source: Callable[[], float]) -> None:
    global _source
    _source = source


def reset_source() -> None:
    set_source(time.time)


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 timestamp as stored in items (``...Z`` or with an offset), or None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
