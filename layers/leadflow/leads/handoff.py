"""The hand-off document a lead goes to sales with, and where it goes.

The document holds the complete profile (every attribute except the lead engine's internal
state, with the current decayed score), the owner routing picked, the reason and journey, and the
interaction history: the events of the contact, of every contact merged into it and of every
anonymous visitor id linked to it, newest first, up to ``HISTORY_LIMIT``. SNS and EventBridge take
at most 256 KB per message: a document over ``MAX_DOCUMENT_BYTES`` keeps the newest events that
fit and says so (``history_truncated``).

``handoff_id`` is deterministic per (execution, step): SNS and EventBridge deliver at least once,
and a hand-off published again after a crash carries the same id — subscribers drop repeats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from leadflow.events.store import event_history
from leadflow.kernel.clock import iso
from leadflow.kernel.errors import LeadflowError
from leadflow.leads.model import LeadModel
from leadflow.leads.routing import Assignment
from leadflow.leads.scoring import current_score, display_score
from leadflow.platform.tables import keys

HISTORY_LIMIT = 1000
"""Events at most in a hand-off document (the newest)."""
MAX_DOCUMENT_BYTES = 240_000
"""SNS messages and EventBridge entries are limited to 256 KB (with envelope and attributes)."""
INTERNAL_FIELDS = frozenset(
    {
        "pk",
        "sk",
        "rule_points",
        "activity",
        "lead_version",
        "score_value",
        "score_at",
        "score_event_id",
        "expires_at",
    }
)
"""Profile attributes that are the lead engine's bookkeeping, not the contact's data."""
EVENT_FIELDS = (
    "event_id",
    "type",
    "occurred_at",
    "source",
    "contact_id",
    "visitor_id",
    "journey_id",
    "message_id",
    "properties",
)
EVENT_SOURCE = "leadflow"
EVENT_DETAIL_TYPE = "Lead handed to sales"


class HandoffNotPublished(LeadflowError):
    """SNS or EventBridge did not take the hand-off: the journey step retries (error name matters)."""


class InteractionHistory:
    """A contact's events across its own, its merged contacts' and its visitors' partitions."""

    def __init__(self, client: Any, events_table: str) -> None:
        self._client = client
        self._table = events_table

    def partitions(self, profile: Mapping[str, Any]) -> list[str]:
        contact_id = str(profile["contact_id"])
        found = [keys.contact(contact_id)]
        found += [keys.contact(str(m)) for m in sorted(profile.get("merged_ids") or []) if m != contact_id]
        found += [keys.visitor(str(v)) for v in sorted(profile.get("visitor_ids") or [])]
        return list(dict.fromkeys(found))

    def of(self, profile: Mapping[str, Any], limit: int = HISTORY_LIMIT) -> tuple[list[dict[str, Any]], bool]:
        """The newest ``limit`` events, newest first, and whether older ones were left out. Each
        partition is read newest first in time order (``by_time``): the newest ``limit`` of every
        partition are enough to know the newest ``limit`` of all."""
        events: list[tuple[str, dict[str, Any]]] = []
        cut = False
        for pk in self.partitions(profile):
            history = event_history(self._client, self._table, pk, newest_first=True, limit=limit + 1)
            for read, item in enumerate(history, start=1):
                if read > limit:
                    cut = True
                    break
                events.append((str(item.get("at", "")), {k: item[k] for k in EVENT_FIELDS if k in item}))
        events.sort(key=lambda pair: pair[0], reverse=True)
        return [event for _, event in events[:limit]], cut or len(events) > limit


def contact_view(profile: Mapping[str, Any], now: datetime, model: LeadModel) -> dict[str, Any]:
    """The profile as sales sees it: every attribute but the engine's bookkeeping, score decayed."""
    view = {k: v for k, v in profile.items() if k not in INTERNAL_FIELDS}
    view["score"] = display_score(current_score(profile, now, model))
    return view


def build_document(
    *,
    handoff_id: str,
    reason: str,
    journey_id: str,
    step_id: str | None,
    profile: Mapping[str, Any],
    assignment: Assignment,
    history: list[dict[str, Any]],
    history_truncated: bool,
    now: datetime,
    model: LeadModel,
) -> dict[str, Any]:
    contact = contact_view(profile, now, model)
    if assignment.owner is not None:
        contact["owner"] = assignment.owner
    document = {
        "handoff_id": handoff_id,
        "reason": reason,
        "journey_id": journey_id,
        "step_id": step_id,
        "notified_at": iso(now),
        "owner": assignment.owner,
        "assignment_rule": assignment.rule,
        "contact": contact,
        "events": history,
        "history_count": len(history),
        "history_truncated": history_truncated,
    }
    return fit(document)


def encode(document: Mapping[str, Any]) -> str:
    return json.dumps(document, default=str, separators=(",", ":"), ensure_ascii=False)


def fit(document: dict[str, Any], max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """The document, its history cut to the newest events that keep it within ``max_bytes``."""
    if len(encode(document).encode()) <= max_bytes:
        return document
    events: list[dict[str, Any]] = document["events"]
    shell = {**document, "events": [], "history_count": len(events), "history_truncated": True}
    room = max_bytes - len(encode(shell).encode())
    kept = 0
    for event in events:
        size = len(encode(event).encode()) + 1  # the comma
        if size > room:
            break
        room -= size
        kept += 1
    return {**shell, "events": events[:kept], "history_count": kept}


class HandoffPublisher:
    """Publishes a hand-off to the sales SNS topic and the EventBridge bus (CRM integrations)."""

    def __init__(self, *, sns: Any, events: Any, topic_arn: str, event_bus_name: str) -> None:
        self._sns = sns
        self._events = events
        self._topic_arn = topic_arn
        self._bus = event_bus_name

    def publish(self, document: Mapping[str, Any]) -> None:
        body = encode(document)
        try:
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject="leadflow: lead handed to sales",
                Message=body,
                MessageAttributes={
                    "journey_id": {"DataType": "String", "StringValue": str(document["journey_id"])},
                    "handoff_id": {"DataType": "String", "StringValue": str(document["handoff_id"])},
                },
            )
            resp = self._events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": EVENT_DETAIL_TYPE,
                        "Detail": body,
                        "EventBusName": self._bus,
                    }
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise HandoffNotPublished(f"hand-off not published: {type(exc).__name__}") from exc
        if resp.get("FailedEntryCount"):
            codes = [e.get("ErrorCode") for e in resp.get("Entries", []) if e.get("ErrorCode")]
            raise HandoffNotPublished(f"EventBridge refused the hand-off: {', '.join(map(str, codes))}")
