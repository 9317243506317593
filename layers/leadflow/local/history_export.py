"""The history of a stage as ``leadflow journeys simulate`` input: read-only, boto3.

``export_history`` reads the stage's events table (``leadflow-<stage>-events``; a paginated Scan
filtered on ``occurred_at``), keeps what a contact or a system outside leadflow did — the events
``simulate`` replays the way they arrived — and the profiles of those contacts
(``leadflow-<stage>-contacts``, BatchGetItem) as rows of the admin import shape. Consequences
leadflow recorded itself (journey steps, sends, scores, stages, segment changes) are left out: the
replay produces them again. Page views are left out too (counted in ``left_out``: their replay needs
the visitor's browser).

Email consent is exported as it stood when the window began: a contact whose first consent change
inside the window is a grant (a form, a confirmation) starts without consent, one whose first change
is a revocation starts with it; the changes themselves are replayed (form posts, confirmation links,
unsubscribes).

Invariants: only reads (Scan, BatchGetItem, GetItem); nothing is written anywhere but the output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadflow.contacts.model import PROFILE_FIELDS
from leadflow.events.model import RESERVED_EVENT_PREFIXES, RESERVED_EVENT_TYPES
from leadflow.kernel.clock import iso
from leadflow.leads.model import LeadModel
from leadflow.platform.dynamo import deserialize
from leadflow.platform.tables import keys

REPLAYED = (
    "form_submitted",
    "email_opened",
    "email_clicked",
    "consent_confirmed",
    "unsubscribed",
    "journey_enrollment_requested",
    "sales_feedback",
)
"""System events ``simulate`` replays through the route that records them (a form post, a tracking
link, ...): the only system events a history to replay may hold."""
SALES_FEEDBACK_FIELDS = ("outcome", "reason", "owner", "deal_value", "currency")
GRANTS = frozenset({"form_submitted", "consent_confirmed", "consent_granted"})
REVOCATIONS = frozenset({"unsubscribed", "consent_revoked"})


@dataclass
class ExportedHistory:
    events: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)
    """Event types not replayable, by count (leadflow's own records are not counted)."""


def table_name(stage: str, logical: str) -> str:
    """The deployed table's name (the CDK app names tables ``leadflow-<stage>-<name>``)."""
    return f"leadflow-{stage}-{logical}"


def _replayable(
    item: Mapping[str, Any], messages: dict[str, str | None], ddb: Any, stage: str
) -> dict[str, Any] | None:
    kind = str(item.get("type", ""))
    properties = dict(item.get("properties") or {})
    if kind in REPLAYED:
        if kind == "form_submitted":
            properties = {"form_id": properties.get("form_id")} if properties.get("form_id") else {}
            if not properties:
                return None
        elif kind in ("email_opened", "email_clicked"):
            message_id = item.get("message_id")
            template = _template(ddb, stage, str(message_id), messages) if message_id else None
            properties = {"template": template} if template else {}
        elif kind == "journey_enrollment_requested":
            properties = {"journey_id": properties.get("journey_id")}
        elif kind == "sales_feedback":
            properties = {k: properties[k] for k in SALES_FEEDBACK_FIELDS if properties.get(k) is not None}
        else:
            properties = {}
        return {"type": kind, "properties": properties}
    if kind in RESERVED_EVENT_TYPES or kind.startswith(RESERVED_EVENT_PREFIXES):
        return None
    properties.pop("client_event_id", None)
    return {"type": kind, "properties": properties}


def _template(ddb: Any, stage: str, message_id: str, cache: dict[str, str | None]) -> str | None:
    if message_id not in cache:
        found = ddb.get_item(
            TableName=table_name(stage, "messages"),
            Key={"pk": {"S": keys.message(message_id)}, "sk": {"S": keys.MSG}},
            ProjectionExpression="#t",
            ExpressionAttributeNames={"#t": "template"},
        ).get("Item")
        cache[message_id] = str(deserialize(found)["template"]) if found and "template" in found else None
    return cache[message_id]


def export_history(
    ddb: Any, stage: str, since: datetime, lead_model: LeadModel | None = None
) -> ExportedHistory:
    """The stage's history since ``since``, oldest first, and its contacts (see the module docstring)."""
    exported = ExportedHistory()
    messages: dict[str, str | None] = {}
    found: list[tuple[str, str, dict[str, Any]]] = []  # (occurred at, contact id, event)
    first_change: dict[str, str] = {}
    pages = ddb.get_paginator("scan").paginate(
        TableName=table_name(stage, "events"),
        FilterExpression="occurred_at >= :since AND attribute_exists(contact_id)",
        ExpressionAttributeValues={":since": {"S": iso(since)}},
    )
    items = [deserialize(item) for page in pages for item in page.get("Items", [])]
    # the by_time key (time, then id); events from before that index have only their occurred_at
    for item in sorted(items, key=lambda i: str(i.get("at") or i.get("occurred_at"))):
        contact_id, kind = str(item["contact_id"]), str(item.get("type", ""))
        if kind in GRANTS | REVOCATIONS and contact_id not in first_change:
            first_change[contact_id] = kind
        event = _replayable(item, messages, ddb, stage)
        if event is None:
            if kind == "page_viewed":
                exported.left_out[kind] += 1
            continue
        found.append((str(item["occurred_at"]), contact_id, event))
    profiles = _profiles(ddb, stage, sorted({contact_id for _, contact_id, _ in found}))
    attributes = set((lead_model or LeadModel()).attributes)
    for contact_id, profile in profiles.items():
        row: dict[str, Any] = {"email": profile["email"]}
        row.update({k: profile[k] for k in PROFILE_FIELDS if profile.get(k) not in (None, "")})
        if profile.get("tags"):
            row["tags"] = sorted(profile["tags"])
        custom = {k: profile[k] for k in sorted(attributes) if profile.get(k) is not None}
        if custom:
            row["attributes"] = custom
        consent = profile.get("consent_email")
        change = first_change.get(contact_id)
        if change in GRANTS:
            consent = None  # granted inside the window: the replay grants it again
        elif change in REVOCATIONS:
            consent = "granted"  # revoked inside the window: the replay revokes it again
        if consent in ("granted", "revoked"):
            row["consent_email"] = consent
            if consent == "granted":
                row["consent_source"] = f"exported from stage {stage}"
        exported.contacts.append(row)
    for at, contact_id, event in found:
        owner = profiles.get(contact_id)
        if owner is not None:
            exported.events.append({**event, "email": owner["email"], "at": at})
    return exported


def _profiles(ddb: Any, stage: str, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Profiles with an email (merged or erased contacts are left out), by contact id."""
    profiles: dict[str, dict[str, Any]] = {}
    table = table_name(stage, "contacts")
    for start in range(0, len(contact_ids), 100):
        wanted = [
            {"pk": {"S": keys.contact(c)}, "sk": {"S": keys.PROFILE}}
            for c in contact_ids[start : start + 100]
        ]
        request: dict[str, Any] = {table: {"Keys": wanted}}
        while request:
            reply = ddb.batch_get_item(RequestItems=request)
            for item in reply.get("Responses", {}).get(table, []):
                profile = deserialize(item)
                if profile.get("email") and not profile.get("merged_into"):
                    profiles[str(profile["contact_id"])] = profile
            request = reply.get("UnprocessedKeys") or {}
    return profiles
