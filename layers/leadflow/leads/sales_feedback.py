"""Sales feedback: what sales did with a handed-over lead closes the loop.

``accepted`` moves the contact to the stage after the hand-off stage (``sql``), ``won`` to the last
lifecycle stage (``customer``) with a ``deal_won`` event whose ``revenue`` the reports count,
``rejected`` back to the stage before the hand-off stage (``lead``) and holds it there for
``lifecycle.recycle_after`` (``stage_hold_until``: the lead engine promotes it no earlier), ``lost``
keeps the stage. Every outcome is a ``sales_feedback`` event (the MQL hand-off journey waits for
it); a stage change is a ``stage_changed`` event with source ``sales``; an ``owner`` other than the
contact's becomes its owner (a ``lead_assigned`` event with rule ``sales``).

One transaction: the profile change (guarded by the lead engine's optimistic lock ``lead_version``,
so the ``from`` of the stage change is the stage it replaced), the events and the idempotency
marker. Idempotency: a request with ``request_id`` is applied once (the marker); a request without
one is dropped when it repeats the contact's latest feedback exactly (same outcome, reason, owner,
value), so a client retry does not count a deal twice while a later, different verdict still applies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore, IdempotencyMarks
from leadflow.kernel import ids
from leadflow.kernel.clock import iso
from leadflow.kernel.errors import NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.model import LeadModel
from leadflow.platform.dynamo import Transaction, TransactionCancelled

Outcome = Literal["accepted", "rejected", "won", "lost"]
MAX_ATTEMPTS = 5
MARK_KIND = "SALESFB"


class SalesFeedbackIn(BaseModel):
    """``POST /admin/contacts/{contact_id}/sales-feedback``."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    owner: str | None = Field(default=None, min_length=1, max_length=256)
    deal_value: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    request_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="Idempotency key: a request with the same id is applied once.",
    )


class SalesFeedbackResult(BaseModel):
    contact_id: str
    outcome: Outcome
    stage: str | None
    previous_stage: str | None
    changed: bool
    """False when the request repeated an earlier one (nothing was written)."""


def target_stage(outcome: Outcome, current: str | None, model: LeadModel) -> str | None:
    """The stage an outcome moves the contact to (around the hand-off stage of the lifecycle)."""
    stages = model.lifecycle.stages
    hand_off = model.lifecycle.rank(model.routing.hand_off_stage)
    if outcome == "accepted":
        return stages[min(hand_off + 1, len(stages) - 1)]
    if outcome == "won":
        return stages[-1]
    if outcome == "rejected":
        return stages[max(hand_off - 1, 0)]
    return current


class _Conflict(Exception):
    """The profile changed since it was read (lead_version): read again."""


class SalesFeedbackService:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        events: EventStore,
        marks: IdempotencyMarks,
        transact: Callable[[Transaction], None],
        lead_model: Callable[[], LeadModel],
        now: Callable[[], datetime],
    ) -> None:
        self._contacts = contacts
        self._events = events
        self._marks = marks
        self._transact = transact
        self._lead_model = lead_model
        self._now = now

    def _resolve(self, contact_id: str) -> dict[str, Any]:
        """The contact's profile; a merged contact's survivor (followed once)."""
        resolved = self._contacts.resolve(contact_id)
        if resolved is None:
            raise NotFound("contact")
        return resolved[1]

    def record(self, contact_id: str, feedback: SalesFeedbackIn) -> SalesFeedbackResult:
        for _ in range(MAX_ATTEMPTS):
            try:
                return self._attempt(contact_id, feedback)
            except _Conflict:
                metrics.add_metric(name="SalesFeedbackRetries", unit="Count", value=1)
        raise RuntimeError("the contact kept changing while sales feedback was recorded")

    def _attempt(self, contact_id: str, feedback: SalesFeedbackIn) -> SalesFeedbackResult:
        profile = self._resolve(contact_id)
        cid = str(profile["contact_id"])
        model = self._lead_model()
        now = self._now()
        at = iso(now)
        current = profile.get("stage")
        target = target_stage(feedback.outcome, current, model)
        digest = _digest(feedback)
        version = profile.get("lead_version")
        unchanged = SalesFeedbackResult(
            contact_id=cid, outcome=feedback.outcome, stage=current, previous_stage=current, changed=False
        )
        if feedback.request_id is None and profile.get("sales_feedback_hash") == digest:
            return unchanged  # the latest feedback again: a client retry
        # the key of this application: the request id, or the body at this version of the contact
        key = feedback.request_id or f"{digest}@{version or 0}"

        def event(kind: str, properties: dict[str, Any]) -> Event:
            return Event(
                event_id=ids.deterministic_id("sales-feedback", cid, key, kind),
                type=kind,
                occurred_at=at,
                contact_id=cid,
                source="sales",
                properties=properties,
            )

        sets: dict[str, Any] = {
            "sales_outcome": feedback.outcome,
            "sales_feedback_at": at,
            "sales_feedback_hash": digest,
            "updated_at": at,
            "owner": feedback.owner or None,
        }
        removes: list[str] = []
        if target != current:
            sets |= {"stage": target, "stage_at": at}
        if feedback.outcome == "rejected":
            sets["stage_hold_until"] = iso(
                now + timedelta(seconds=model.lifecycle.recycle_after.total_seconds)
            )
        elif feedback.outcome in ("accepted", "won"):
            removes.append("stage_hold_until")
        txn = Transaction()
        txn.add(self._contacts.locked_update_op(cid, version, sets=sets, remove=removes), "profile")
        if feedback.request_id:
            txn.add(self._marks.put_op(MARK_KIND, f"{cid}#{key}"), "marker")
        if target != current:
            reason = f"sales: {feedback.outcome}"
            txn.add(
                self._events.put_op(
                    event("stage_changed", {"from": current or "", "to": target, "reason": reason})
                ),
                "stage_changed",
            )
        properties: dict[str, Any] = {"outcome": feedback.outcome}
        for name in ("owner", "reason", "deal_value", "currency"):
            if getattr(feedback, name) is not None:
                properties[name] = getattr(feedback, name)
        properties.setdefault("owner", profile.get("owner"))
        txn.add(self._events.put_op(event("sales_feedback", properties)), "sales_feedback")
        if feedback.owner and feedback.owner != profile.get("owner"):
            # sales names who took the lead: the owner changes with it
            txn.add(
                self._events.put_op(event("lead_assigned", {"owner": feedback.owner, "rule": "sales"})),
                "lead_assigned",
            )
        if feedback.outcome == "won":
            # revenue: the property the reports sum for conversion goals (deal_won is one)
            deal: dict[str, Any] = {"revenue": feedback.deal_value or 0}
            if feedback.currency:
                deal["currency"] = feedback.currency
            if properties.get("owner"):
                deal["owner"] = properties["owner"]
            txn.add(self._events.put_op(event("deal_won", deal)), "deal_won")
        try:
            self._transact(txn)
        except TransactionCancelled as exc:
            if exc.failed_condition("marker"):
                metrics.add_metric(name="DuplicateSalesFeedback", unit="Count", value=1)
                return unchanged
            if exc.failed_condition("profile"):
                raise _Conflict from exc
            raise
        metrics.add_metric(name="SalesFeedback", unit="Count", value=1)
        logger.info("sales feedback recorded", extra={"outcome": feedback.outcome, "stage": target})
        return SalesFeedbackResult(
            contact_id=cid, outcome=feedback.outcome, stage=target, previous_stage=current, changed=True
        )


def _digest(feedback: SalesFeedbackIn) -> str:
    body = feedback.model_dump(exclude={"request_id"}, exclude_none=True)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
