"""The DynamoDB tables: one definition used by the CDK app and by the local runtime.

Every table has a string partition key ``pk`` and sort key ``sk``; items say what they are by
their key prefixes (see ``keys``). Changing a spec here changes both the deployed and the local
system, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StreamView = Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES"]


@dataclass(frozen=True)
class TableSpec:
    """What a table is: its logical name, keys, stream and TTL attribute."""

    name: str
    """Logical name (CDK construct id suffix, local table name suffix, settings field stem)."""
    stream: StreamView | None = None
    ttl_attribute: str | None = None
    partition_key: str = "pk"
    sort_key: str = "sk"


CONTACTS = TableSpec(name="contacts")
"""Contact profiles (``C#<id>``/``PROFILE``), email index (``EMAIL#<email>``/``EMAIL``) and
visitor links (``V#<visitor id>``/``LINK``)."""

EVENTS = TableSpec(name="events", stream="NEW_AND_OLD_IMAGES", ttl_attribute="expires_at")
"""Immutable interaction events (``C#<id>`` or ``V#<visitor id>`` / ``EV#<event id>``): the source
of truth. Its stream feeds ``trigger`` and ``score``."""

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
    def message(message_id: str) -> str:
        return f"M#{message_id}"
