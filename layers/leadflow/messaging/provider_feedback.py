"""Feedback from the providers, delivered through SNS: SES event publishing (bounces, complaints,
deliveries, rejects) and inbound two-way SMS (STOP keywords).

- An SES notification is linked to our message by the ``leadflow_message_id`` tag set at send time,
  to the contact by the address (email index), falling back to the message's contact.
- Events (``email_bounced``, ``email_complained``, ``email_delivered``, ``email_rejected``,
  ``sms_opted_out``) get ids derived from the provider's message id and the event type, and are put
  conditionally: a notification delivered twice changes nothing.
- A permanent bounce or a complaint suppresses the address: the profile's ``suppressed`` and a
  suppression item keyed by a hash of the address (a later sign-up of the address stays
  suppressed). Transient bounces are recorded, never suppressed.
- A STOP keyword from a phone revokes the SMS consent of the contact owning that number.
- A malformed notification raises ``BadNotification`` (the handler logs and counts it, without
  personal data); anything else (DynamoDB unreachable) propagates so the delivery is retried.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.contacts.normalize import normalize_email, normalize_phone
from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso
from leadflow.kernel.observability import logger, metrics, pii_hash
from leadflow.messaging.store import MessageStore
from leadflow.messaging.tags import MESSAGE_TAG
from leadflow.platform.dynamo import Transaction, commit_once

STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
Outcome = Literal["recorded", "duplicate", "ignored", "unknown_recipient"]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class BadNotification(ValueError):
    """The notification is not one we understand; the message names fields, never values."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Recipient(_Lenient):
    emailAddress: str = Field(min_length=3, max_length=512)


class _Bounce(_Lenient):
    bounceType: str = Field(max_length=64)
    bounceSubType: str | None = Field(default=None, max_length=64)
    bouncedRecipients: list[_Recipient] = Field(min_length=1, max_length=50)
    timestamp: str | None = None


class _Complaint(_Lenient):
    complainedRecipients: list[_Recipient] = Field(min_length=1, max_length=50)
    complaintFeedbackType: str | None = Field(default=None, max_length=64)
    timestamp: str | None = None


class _Delivery(_Lenient):
    recipients: list[str] = Field(min_length=1, max_length=50)
    timestamp: str | None = None


class _Mail(_Lenient):
    messageId: str = Field(min_length=1, max_length=256)
    timestamp: str | None = None
    destination: list[str] = Field(default_factory=list, max_length=50)
    tags: dict[str, list[str]] = Field(default_factory=dict)


class SesNotification(_Lenient):
    """SES event publishing (``eventType``) or identity notifications (``notificationType``)."""

    eventType: str | None = None
    notificationType: str | None = None
    mail: _Mail
    bounce: _Bounce | None = None
    complaint: _Complaint | None = None
    delivery: _Delivery | None = None

    @property
    def kind(self) -> str:
        return self.eventType or self.notificationType or ""


class InboundSms(_Lenient):
    """An inbound two-way SMS (AWS End User Messaging SMS publishes these to an SNS topic)."""

    originationNumber: str = Field(min_length=3, max_length=32)
    destinationNumber: str | None = Field(default=None, max_length=32)
    messageKeyword: str | None = Field(default=None, max_length=64)
    messageBody: str = Field(default="", max_length=1600)
    inboundMessageId: str | None = Field(default=None, max_length=256)

    @property
    def is_stop(self) -> bool:
        words = {self.messageBody.strip().upper(), (self.messageKeyword or "").strip().upper()}
        return bool(words & STOP_KEYWORDS)


def _fields(exc: ValidationError) -> str:
    return ", ".join(".".join(str(p) for p in error["loc"]) or "(root)" for error in exc.errors()[:5])


def _epoch_ms(*candidates: str | None) -> int | None:
    for value in candidates:
        if not value:
            continue
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            continue
    return None


def feedback_event_id(at_ms: int, *parts: str) -> str:
    """A ULID whose time is the provider's event time and whose 80 "random" bits are a hash of the
    natural key: the same notification always gets the same id, and timelines stay in time order."""
    digest = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:10], "big")
    chars = []
    for _ in range(16):
        digest, rem = divmod(digest, 32)
        chars.append(_CROCKFORD[rem])
    return ids.ulid(at_ms)[:10] + "".join(reversed(chars))


class FeedbackService:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        events: EventStore,
        messages: MessageStore,
        transact: Callable[[Transaction], None],
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._contacts = contacts
        self._events = events
        self._messages = messages
        self._transact = transact
        self._now_ms = now_ms

    def process(self, message: str, *, sns_message_id: str = "", sns_timestamp: str | None = None) -> Outcome:
        """One SNS message's ``Message``: an SES notification or an inbound SMS."""
        try:
            document = json.loads(message)
        except (TypeError, ValueError) as exc:
            raise BadNotification("the message is not JSON") from exc
        if not isinstance(document, dict):
            raise BadNotification("the message is not a JSON object")
        if "mail" in document and ("eventType" in document or "notificationType" in document):
            try:
                notification = SesNotification.model_validate(document)
            except ValidationError as exc:
                raise BadNotification(f"SES notification: invalid {_fields(exc)}") from exc
            return self.ses_event(notification, sns_timestamp=sns_timestamp)
        if "originationNumber" in document:
            try:
                sms = InboundSms.model_validate(document)
            except ValidationError as exc:
                raise BadNotification(f"inbound SMS: invalid {_fields(exc)}") from exc
            return self.inbound_sms(sms, sns_message_id=sns_message_id, sns_timestamp=sns_timestamp)
        raise BadNotification("neither an SES notification nor an inbound SMS")

    # --- SES -------------------------------------------------------------------------------------

    def ses_event(self, note: SesNotification, *, sns_timestamp: str | None = None) -> Outcome:
        kind = note.kind
        properties: dict[str, Any] = {"ses_message_id": note.mail.messageId}
        suppress: str | None = None
        if kind == "Bounce" and note.bounce is not None:
            event_type, engaged, metric = "email_bounced", "bounced_at", "EmailsBounced"
            recipients = [r.emailAddress for r in note.bounce.bouncedRecipients]
            event_time = note.bounce.timestamp
            properties["bounce_type"] = note.bounce.bounceType
            if note.bounce.bounceSubType:
                properties["bounce_subtype"] = note.bounce.bounceSubType
            suppress = "bounce" if note.bounce.bounceType == "Permanent" else None
        elif kind == "Complaint" and note.complaint is not None:
            event_type, engaged, metric = "email_complained", "complained_at", "EmailsComplained"
            recipients = [r.emailAddress for r in note.complaint.complainedRecipients]
            event_time = note.complaint.timestamp
            if note.complaint.complaintFeedbackType:
                properties["feedback_type"] = note.complaint.complaintFeedbackType
            suppress = "complaint"
        elif kind == "Delivery" and note.delivery is not None:
            event_type, engaged, metric = "email_delivered", "delivered_at", "EmailsDelivered"
            recipients, event_time = list(note.delivery.recipients), note.delivery.timestamp
        elif kind == "Reject":
            event_type, engaged, metric = "email_rejected", "rejected_at", "EmailsRejected"
            recipients, event_time = list(note.mail.destination), None
        elif kind in ("Bounce", "Complaint", "Delivery"):
            raise BadNotification(f"{kind} notification without its {kind.lower()} object")
        else:
            metrics.add_metric(name="FeedbackIgnored", unit="Count", value=1)
            return "ignored"

        tagged = note.mail.tags.get(MESSAGE_TAG) or []
        message_id = tagged[0] if tagged and tagged[0] else None
        message = self._messages.get(message_id) if message_id else None
        at_ms = _epoch_ms(event_time, sns_timestamp, note.mail.timestamp)
        occurred_at = iso(datetime.fromtimestamp((self._now_ms() if at_ms is None else at_ms) / 1000, tz=UTC))
        outcome: Outcome = "unknown_recipient"
        for raw in recipients:
            try:
                address = normalize_email(parseaddr(raw)[1] or raw)
            except ValueError as exc:
                raise BadNotification(f"{kind}: a recipient is not an email address") from exc
            contact_id = self._contacts.contact_id_for_email(address) or (message or {}).get("contact_id")
            event = None
            if contact_id:
                event = Event(
                    event_id=feedback_event_id(
                        at_ms or 0,
                        note.mail.messageId,
                        event_type,
                        str(properties.get("bounce_type", "")),
                        address,
                    ),
                    type=event_type,
                    occurred_at=occurred_at,
                    contact_id=str(contact_id),
                    message_id=message_id if message else None,
                    source="ses",
                    properties=properties,
                )
            recorded = self._record_email_event(address, event, suppress, occurred_at)
            if recorded == "recorded":
                metrics.add_metric(name=metric, unit="Count", value=1)
                if suppress:
                    metrics.add_metric(name="AddressesSuppressed", unit="Count", value=1)
                outcome = "recorded"
            elif outcome != "recorded":
                outcome = recorded
            logger.info(
                "SES feedback",
                extra={
                    "event": event_type,
                    "outcome": recorded,
                    "recipient": pii_hash(address),
                    "message_id": message_id,
                    "suppressed": suppress,
                },
            )
        if message is not None and message_id and outcome == "recorded":
            self._messages.mark_engaged(message_id, engaged, occurred_at)
        return outcome

    def _record_email_event(
        self, address: str, event: Event | None, suppress: str | None, at: str
    ) -> Outcome:
        """The event (conditional put: a duplicate cancels the whole transaction) with the
        suppression of the profile and of the address. Without a contact only the address."""
        txn = Transaction()
        if event is not None:
            txn.add(self._events.put_op(event), "event")
            if suppress:
                assert event.contact_id is not None
                txn.add(self._contacts.suppress_profile_op(event.contact_id, suppress, at), "profile")
        if suppress:
            txn.add(self._contacts.suppression_op(address, suppress, at), "suppression")
        if not txn.items:
            return "unknown_recipient"
        if not commit_once(self._transact, txn, "event"):
            return "duplicate"
        return "recorded" if event is not None else "unknown_recipient"

    # --- inbound SMS -----------------------------------------------------------------------------

    def inbound_sms(
        self, sms: InboundSms, *, sns_message_id: str = "", sns_timestamp: str | None = None
    ) -> Outcome:
        try:
            phone = normalize_phone(sms.originationNumber)
        except ValueError as exc:
            raise BadNotification("inbound SMS: originationNumber is not an E.164 number") from exc
        if not sms.is_stop:
            metrics.add_metric(name="InboundSmsIgnored", unit="Count", value=1)
            return "ignored"
        contact_id = self._contacts.contact_id_for_phone(phone)
        if contact_id is None:
            metrics.add_metric(name="SmsOptOutsUnknownNumber", unit="Count", value=1)
            logger.info("STOP from an unknown number", extra={"phone": pii_hash(phone)})
            return "unknown_recipient"
        at_ms = _epoch_ms(sns_timestamp) or self._now_ms()
        inbound_id = sms.inboundMessageId or sns_message_id or str(at_ms)
        body = sms.messageBody.strip().upper()
        event = Event(
            event_id=feedback_event_id(at_ms, inbound_id, "sms_opted_out", phone),
            type="sms_opted_out",
            occurred_at=iso(datetime.fromtimestamp(at_ms / 1000, tz=UTC)),
            contact_id=contact_id,
            source="sms",
            properties={
                "keyword": body if body in STOP_KEYWORDS else (sms.messageKeyword or "").strip().upper(),
                "channel": "sms",
            },
        )
        txn = Transaction()
        txn.add(self._events.put_op(event), "event")
        txn.add(self._contacts.revoke_sms_consent_op(contact_id, event.occurred_at, "sms_stop"), "profile")
        txn.add(
            self._contacts.consent_log_op(
                contact_id, channel="sms", action="revoked", source="sms_stop", at=event.occurred_at
            ),
            "consent_log",
        )
        if not commit_once(self._transact, txn, "event"):
            return "duplicate"
        metrics.add_metric(name="SmsOptOuts", unit="Count", value=1)
        logger.info("SMS opt-out", extra={"phone": pii_hash(phone), "contact_id": contact_id})
        return "recorded"
