"""The DynamoDB tables: one definition used by the CDK app and by the local runtime.

Every table has a string partition key ``pk`` and sort key ``sk``; items say what they are by
their key prefixes (see ``keys``). Changing a spec here changes both the deployed and the local
system, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

StreamView = Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES"]


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index (string keys, every attribute projected). A GSI can be added to a
    deployed table; a local secondary index cannot."""

    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableSpec:
    """What a table is: its logical name, keys, stream, TTL attribute and global indexes."""

    name: str
    """Logical name (CDK construct id suffix, local table name suffix, settings field stem)."""
    stream: StreamView | None = None
    ttl_attribute: str | None = None
    partition_key: str = "pk"
    sort_key: str = "sk"
    indexes: tuple[IndexSpec, ...] = ()


CONTACTS = TableSpec(name="contacts")
"""Contact profiles (``C#<id>``/``PROFILE``), email index (``EMAIL#<email>``/``EMAIL``) and
visitor links (``V#<visitor id>``/``LINK``)."""

EVENTS_BY_TIME = IndexSpec(name="by_time", partition_key="pk", sort_key="at")
"""A subject's events in the order they happened: ``at`` = ``<occurred_at, fixed-width UTC ISO with
milliseconds>#<event id>`` (``keys.event_time``). Event ids are not time-ordered (hash ids of
journey events, client ids), so every "since"/"within" read goes through this index."""

EVENTS = TableSpec(
    name="events", stream="NEW_AND_OLD_IMAGES", ttl_attribute="expires_at", indexes=(EVENTS_BY_TIME,)
)
"""Immutable interaction events (``C#<id>`` or ``V#<visitor id>`` / ``EV#<event id>``): the source
of truth. Its stream feeds ``trigger`` and ``score``; ``by_time`` reads them in time order."""

MESSAGES = TableSpec(name="messages", ttl_attribute="expires_at")
"""One item per message a journey step sends (``M#<message id>``/``MSG``), keyed by a
deterministic id per (execution, step): the send's idempotency record and its engagement."""

IDEMPOTENCY = TableSpec(name="idempotency", ttl_attribute="expires_at")
"""Markers that make effects exactly-once: client event ids, applied score points."""

REPORTS = TableSpec(name="reports", ttl_attribute="expires_at")
"""Reporting counters (``J#<journey>``, ``T#<template>``, ``ATTR``, ``DAY#<date>`` / ``COUNTS``),
maintained from the events stream by ``report``, and its per-message, per-membership and per-touch
state (``S#...``). A report reads a fixed number of counter items, never one per contact."""

ALL_TABLES: tuple[TableSpec, ...] = (CONTACTS, EVENTS, MESSAGES, IDEMPOTENCY, REPORTS)


class keys:
    """Key builders: the only place that knows the key layout."""

    PROFILE = "PROFILE"
    EMAIL = "EMAIL"
    LINK = "LINK"
    MSG = "MSG"
    MARK = "MARK"

    @staticmethod
    def contact(contact_id: str) -> str:
        return f"C#{contact_id}"

    @staticmethod
    def email(email: str) -> str:
        return f"EMAIL#{email}"

    @staticmethod
    def visitor(visitor_id: str) -> str:
        return f"V#{visitor_id}"

    @staticmethod
    def event(event_id: str) -> str:
        return f"EV#{event_id}"

    @staticmethod
    def event_time(occurred_at: datetime, event_id: str) -> str:
        """The ``by_time`` sort key: fixed-width UTC ISO with milliseconds, then the id (ties)."""
        return f"{time_key(occurred_at)}#{event_id}"

    @staticmethod
    def message(message_id: str) -> str:
        return f"M#{message_id}"


def time_key(moment: datetime) -> str:
    """``2026-01-05T07:00:00.000Z``: sorts as time does (a naive moment is taken as UTC). A bound
    of a ``by_time`` read: every ``at`` of that millisecond sorts after it (``#`` follows), and
    before ``time_key(moment) + "$"``."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{aware.microsecond // 1000:03d}Z"
