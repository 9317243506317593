"""Identifiers: time-ordered random ids and deterministic ids derived from natural keys."""

from __future__ import annotations

import hashlib
import os
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    """A ULID: 26 characters, sortable by creation time, 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _b32(ms, 10) + _b32(int.from_bytes(os.urandom(10), "big"), 16)


def new_contact_id() -> str:
    return "c" + ulid().lower()


def new_visitor_id() -> str:
    return "v" + ulid().lower()


def new_event_id() -> str:
    return ulid()


def deterministic_id(*parts: str, length: int = 32) -> str:
    """A stable hex id for a tuple of natural-key parts (same parts, same id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:length]


MOVED_SUFFIX = re.compile(r"\.v\d+$")
"""How the execution a deploy moved onto a journey's live version is named: the original
execution's name plus ``.v<live version>`` (``leadflow.ops.changes``)."""


def moved_execution_name(name: str, version: int) -> str:
    """The name of an execution moved onto ``version`` of its journey: the lineage's name plus
    ``.v<version>`` (deterministic: a retried move starts no second execution)."""
    return f"{lineage(name)}.v{version}"


def lineage(execution_id: str) -> str:
    """The execution a (possibly moved) execution continues: its ARN or name without the move
    suffix. Every id derived from an execution (message ids, step markers, decisions, hand-offs,
    webhook deliveries, leave events) is derived from this, so a step an execution did before a
    deploy moved it onto a new version is "already handled" after the move: never sent twice."""
    return MOVED_SUFFIX.sub("", execution_id)
