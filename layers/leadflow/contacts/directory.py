"""The admin API: what an integration or an operator may read about a contact, and the one thing it
may change: marking a contact do-not-contact (no message of any kind is sent to it any more).

Admin routes sit behind IAM authorization in AWS (a local dev credential in the local runtime);
identifiers travel in paths, personal data (an email to look up) only in request bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.contacts.normalize import normalize_email
from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.model import LeadModel, load_lead_model
from leadflow.platform.dynamo import Transaction, TransactionCancelled, deserialize, serialize
from leadflow.platform.tables import keys

TIMELINE_LIMIT = 100


class ContactLookup(BaseModel):
    """``POST /admin/contacts/lookup``: find a contact by email (in the body, never in a URL)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)

    @field_validator("email")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_email(value)


class ContactRef(BaseModel):
    contact_id: str


class TimelineEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_id: str
    type: str
    occurred_at: str
    source: str
    message_id: str | None = None
    journey_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class ContactView(BaseModel):
    """A contact's profile and its most recent events, newest first (the full history, with the
    merged contacts' and the visitor ids' events: ``GET /admin/contacts/{id}/timeline``)."""

    contact_id: str
    profile: dict[str, Any]
    score: int = 0
    """The behaviour score now (decayed since ``score_at``), rounded half up."""
    score_value: float = 0.0
    """The behaviour score now (decayed), exact."""
    events: list[TimelineEvent]
    events_truncated: bool


class DoNotContactIn(BaseModel):
    """``POST /admin/contacts/{contact_id}/do-not-contact``: why (kept on the profile and the event)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=500)

    @field_validator("reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must not contain control characters")
        return value


class DoNotContactResult(BaseModel):
    contact_id: str
    do_not_contact: bool
    changed: bool
    """False when the contact was already marked (the call is idempotent)."""


class EnrollmentIn(BaseModel):
    """``POST /admin/journeys/{journey_id}/enrollments``: enter a contact into a manual-entry journey."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    contact_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Idempotency key: the same request_id enrolls once however often it is sent.",
    )


class EnrollmentAccepted(BaseModel):
    journey_id: str
    contact_id: str
    event_id: str
    """The ``journey_enrollment_requested`` event; the trigger starts the execution from it."""


class ContactDirectory:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        ddb: Any,
        events_table: str,
        events: EventStore | None = None,
        transact: Callable[[Transaction], None] | None = None,
        lead_model: LeadModel | None = None,
    ) -> None:
        self._lead_model = lead_model
        self._contacts = contacts
        self._ddb = ddb
        self._events_table = events_table
        self._events = events
        self._transact = transact

    def do_not_contact(self, contact_id: str, body: DoNotContactIn, *, actor: str) -> DoNotContactResult:
        """Mark the contact do-not-contact and record ``do_not_contact_set``, in one transaction;
        every later send, on every channel and of every purpose, is skipped (``do_not_contact``)."""
        if self._events is None or self._transact is None:
            raise RuntimeError("ContactDirectory was built read-only")
        at = iso(utc_now())
        txn = Transaction()
        txn.add(self._contacts.do_not_contact_op(contact_id, body.reason, at), "profile")
        txn.add(
            self._contacts.consent_log_op(
                contact_id, channel="all", action="do_not_contact", source=f"admin:{actor[:200]}", at=at
            ),
            "consent_log",
        )
        txn.add(
            self._events.put_op(
                Event(
                    event_id=ids.new_event_id(),
                    type="do_not_contact_set",
                    occurred_at=at,
                    contact_id=contact_id,
                    source="admin",
                    properties={"reason": body.reason, "actor": actor[:256]},
                )
            ),
            "event",
        )
        try:
            self._transact(txn)
        except TransactionCancelled as exc:
            if exc.failed_condition("profile"):  # no such contact, or marked already
                if self._contacts.get(contact_id) is None:
                    raise NotFound("contact") from exc
                return DoNotContactResult(contact_id=contact_id, do_not_contact=True, changed=False)
            raise
        metrics.add_metric(name="DoNotContactSet", unit="Count", value=1)
        logger.info("contact marked do-not-contact", extra={"contact_id": contact_id})
        return DoNotContactResult(contact_id=contact_id, do_not_contact=True, changed=True)

    def enroll(self, journey_id: str, body: EnrollmentIn, *, manual_journeys: set[str]) -> EnrollmentAccepted:
        """Record the enrollment request as an event: the journey starts from the stream like any
        other entry (re-entry rules, one active execution), and a repeated request_id is one event."""
        if self._events is None:
            raise RuntimeError("ContactDirectory was built read-only")
        if journey_id not in manual_journeys:
            raise NotFound("journey with manual entry")
        if self._contacts.get(body.contact_id) is None:
            raise NotFound("contact")
        event_id = (
            ids.deterministic_id("enroll", journey_id, body.contact_id, body.request_id)
            if body.request_id
            else ids.new_event_id()
        )
        event = Event(
            event_id=event_id,
            type="journey_enrollment_requested",
            occurred_at=iso(utc_now()),
            contact_id=body.contact_id,
            journey_id=journey_id,
            source="admin",
            properties={"journey_id": journey_id},
        )
        try:
            self._events.record(event)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise  # anything but "this request was recorded before"
        metrics.add_metric(name="EnrollmentsRequested", unit="Count", value=1)
        return EnrollmentAccepted(journey_id=journey_id, contact_id=body.contact_id, event_id=event_id)

    def lookup(self, query: ContactLookup) -> ContactRef:
        contact_id = self._contacts.contact_id_for_email(query.email)
        if contact_id is None:
            raise NotFound("contact")
        return ContactRef(contact_id=contact_id)

    def _model(self) -> LeadModel:
        if self._lead_model is None:
            from leadflow.kernel.settings import get_settings

            self._lead_model = load_lead_model(get_settings().leads_file)
        return self._lead_model

    def view(self, contact_id: str) -> ContactView:
        """The profile (a merged contact's survivor, followed once) with the score now."""
        resolved = self._contacts.resolve(contact_id)
        if resolved is None:
            raise NotFound("contact")
        contact_id, item = resolved
        profile = {k: v for k, v in item.items() if k not in ("pk", "sk")}
        from leadflow.leads.scoring import current_score, display_score

        score_value = current_score(profile, utc_now(), self._model())
        profile["score"] = display_score(score_value)  # the score now, not as of score_at
        page = self._ddb.query(
            TableName=self._events_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": keys.contact(contact_id)}),
            ScanIndexForward=False,  # event ids are ULIDs: newest first
            Limit=TIMELINE_LIMIT,
        )
        events = [TimelineEvent.model_validate(deserialize(item)) for item in page["Items"]]
        return ContactView(
            contact_id=contact_id,
            profile=profile,
            score=display_score(score_value),
            score_value=round(score_value, 6),
            events=events,
            events_truncated="LastEvaluatedKey" in page,
        )
