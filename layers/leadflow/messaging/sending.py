"""The send step: deliver one journey message (email or SMS) exactly once, if the contact may
receive it.

Order of work for a step (execution, step) → message id:
1. claim the message item (conditional put). A retry of a step that already sent finds the claim
   and returns ``duplicate``: a message is never sent twice. Only a throttled attempt is re-claimable.
2. do-not-contact, suppression and consent are checked now, at send time; a skipped send is
   recorded on the message item with its reason (a contact merged into another one: ``merged``).
3. render the template version the step names (``SendRequest.template_version``: the layer's, or
   the template archive's; one found nowhere fails the send as a template error) with the full
   template context (``messaging.context``: the stored profile, the score now, the entry event
   ``SendRequest.entry_event_id`` names) and the step's own subject/preheader;
   a marketing email gets signed click links, the open pixel and one-click unsubscribe
   headers (transactional and confirmation emails none of them); a marketing SMS ends with the
   opt-out hint; the SMS encoding and segment count are measured (more than 10 is a template error).
4. send through SES with the configuration set and the ``leadflow_message_id`` tag (feedback links
   back through it) or through SNS; then mark the item sent and record ``email_sent``/``sms_sent``
   in one transaction.

Purposes (``SendRequest.purpose``): ``marketing`` needs granted consent on the channel;
``transactional`` needs none (suppression, do-not-contact and SMS opt-out still apply);
``confirmation`` is the double opt-in email, the only message a contact whose email consent is
``pending`` receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from leadflow.contacts.model import Contact
from leadflow.contacts.normalize import is_e164
from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import SendThrottled
from leadflow.kernel.observability import count_by, logger, metrics, pii_hash
from leadflow.leads.model import LeadModel
from leadflow.leads.scoring import current_score, display_score
from leadflow.messaging.compose import InvalidRecipient, SignedLinks, compose_email, template_context
from leadflow.messaging.model import SendRequest, SendResult
from leadflow.messaging.render import EmailRenderer, TemplateRenderError
from leadflow.messaging.sms import compose_sms
from leadflow.messaging.store import MessageStore
from leadflow.messaging.tags import MESSAGE_TAG
from leadflow.platform.dynamo import Transaction, TransactionCancelled
from leadflow.platform.tables import keys
from leadflow.platform.tokens import TokenSigner

RETRYABLE = "retryable"
"""Message status of an attempt that did not reach the provider: the step's retry may claim it again."""
THROTTLING_CODES = {
    "Throttling",
    "ThrottlingException",
    "Throttled",
    "ThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
}
THROTTLING_MESSAGES = ("Maximum sending rate exceeded", "Daily message quota exceeded")
OUTCOME_WRITE_ATTEMPTS = 4
"""Writes of what the provider answered (sent, or rejected) are retried in the invocation: a retry
of the step could not tell any more whether the message went out."""

Channel = Literal["email", "sms"]


class SendInDoubt(Exception):
    """The provider did not answer; the message may have gone out, so it is not sent again."""


def _is_throttled(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    return err.get("Code") in THROTTLING_CODES or any(
        m in str(err.get("Message", "")) for m in THROTTLING_MESSAGES
    )


@dataclass(frozen=True)
class _Recipient:
    contact: Contact
    profile: dict[str, Any]
    """The stored profile item: the template context is made from it."""


@dataclass(frozen=True)
class _Delivered:
    contact: Contact
    recipient: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Recorded on the message item with the ``sent`` status (provider message id, SMS segments)."""


def email_skip_reason(contact: Contact, purpose: str, suppression: str | None) -> str | None:
    """Why an email of this purpose may not go to the contact now, or None."""
    if contact.do_not_contact:
        return "do_not_contact"
    suppressed = contact.suppressed or suppression
    if suppressed:
        return f"suppressed_{suppressed}"
    consent = contact.consent_email
    if purpose == "confirmation":
        return {"pending": None, "revoked": "unsubscribed", "granted": "already_confirmed"}.get(
            consent, "no_consent"
        )
    if consent == "pending":
        return "consent_pending"
    if purpose == "transactional":
        return None
    if consent == "revoked":
        return "unsubscribed"
    return None if consent == "granted" else "no_consent"


def sms_skip_reason(contact: Contact, purpose: str) -> str | None:
    """Why an SMS of this purpose may not go to the contact now, or None."""
    if contact.do_not_contact:
        return "do_not_contact"
    if not is_e164(contact.phone):
        return "invalid_phone"
    if contact.consent_sms == "revoked":
        return "sms_opted_out"
    if purpose == "marketing" and contact.consent_sms != "granted":
        return "no_sms_consent"
    return None


class SendService:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        messages: MessageStore,
        events: EventStore,
        renderer: EmailRenderer,
        signer: TokenSigner,
        ses: Any,
        transact: Callable[[Transaction], None],
        public_base_url: str,
        sender: str,
        unsubscribe_mailto: str,
        configuration_set: str,
        sns: Any = None,
        sms_sender_id: str = "",
        sms_origination_number: str = "",
        sms_type: str = "Promotional",
        lead_model: LeadModel | None = None,
    ) -> None:
        """``lead_model``: its score decay gives a template's ``contact.score``."""
        self._lead_model = lead_model or LeadModel()
        self._contacts = contacts
        self._messages = messages
        self._events = events
        self._renderer = renderer
        self._signer = signer
        self._ses = ses
        self._transact = transact
        self._base_url = public_base_url
        self._sender = sender
        self._unsubscribe_mailto = unsubscribe_mailto
        self._configuration_set = configuration_set
        self._sns = sns
        self._sms_sender_id = sms_sender_id
        self._sms_origination_number = sms_origination_number
        self._sms_type = sms_type

    def send_email(self, request: SendRequest) -> SendResult:
        return self._send(request, "email")

    def send_sms(self, request: SendRequest) -> SendResult:
        return self._send(request, "sms")

    def _send(self, request: SendRequest, channel: Channel) -> SendResult:
        message_id = ids.deterministic_id(ids.lineage(request.execution_id), request.step_id)
        fields = {
            "contact_id": request.contact_id,
            "journey_id": request.journey_id,
            "step_id": request.step_id,
            "execution_id": request.execution_id,
            "template": request.template,
            "channel": channel,
            "purpose": request.purpose,
        }
        if request.template_version is not None:
            fields["template_version"] = request.template_version  # what this message rendered
        if not self._messages.claim(message_id, fields, iso(utc_now())):
            existing = self._messages.get(message_id) or {}
            metrics.add_metric(name="DuplicateSendsPrevented", unit="Count", value=1)
            logger.info(
                "step already handled", extra={"message_id": message_id, "status": existing.get("status")}
            )
            return SendResult(message_id=message_id, status="duplicate", reason=str(existing.get("status")))

        try:
            outcome = (
                self._deliver_email(message_id, request)
                if channel == "email"
                else self._deliver_sms(message_id, request)
            )
        except (SendThrottled, SendInDoubt, TemplateRenderError):
            raise  # the message item already says what happened
        except Exception:
            # Nothing reached the provider: release the claim so the state machine's retry can send.
            self._messages.finish(message_id, RETRYABLE, iso(utc_now()), reason="error before send")
            raise
        if isinstance(outcome, SendResult):
            return outcome
        at = iso(utc_now())
        txn = Transaction()
        txn.add(self._messages.finish_op(message_id, "sent", at, sent_at=at, **outcome.fields), "message")
        properties: dict[str, Any] = {"template": request.template, "step_id": request.step_id}
        if request.purpose != "marketing":
            properties["purpose"] = request.purpose
        if channel == "sms":
            properties["segments"] = outcome.fields["sms_segments"]
        txn.add(
            self._events.put_op(
                Event(
                    event_id=ids.new_event_id(),
                    type=f"{channel}_sent",
                    occurred_at=at,
                    contact_id=outcome.contact.contact_id,
                    message_id=message_id,
                    journey_id=request.journey_id,
                    source=f"journey:{request.journey_id}",
                    properties=properties,
                )
            ),
            "event",
        )
        self._record_outcome(message_id, txn)
        metrics.add_metric(name="EmailsSent" if channel == "email" else "SmsSent", unit="Count", value=1)
        logger.info(
            f"{channel} sent", extra={"message_id": message_id, "recipient": pii_hash(outcome.recipient)}
        )
        return SendResult(message_id=message_id, status="sent")

    # --- the recipient and the template context ----------------------------------------------------

    def _recipient(self, request: SendRequest, message_id: str) -> SendResult | _Recipient:
        """The contact (one read of its profile), or the skip when there is none to send to."""
        profile = self._contacts.profile(request.contact_id)
        if profile is None:
            return self._skip(request, message_id, "contact_not_found")
        contact = Contact.model_validate(profile)
        if contact.merged_into:  # a tombstone: the survivor gets its own messages
            return self._skip(request, message_id, "merged")
        return _Recipient(contact=contact, profile=profile)

    def _context(
        self,
        request: SendRequest,
        recipient: _Recipient,
        unsubscribe_url: str,
        confirm_url: str | None = None,
    ) -> dict[str, Any]:
        """The template context; the entry event is read only when the request names one (an
        erased or expired event leaves ``entry.properties`` empty: its values render as missing)."""
        entry = (
            self._events.get(keys.contact(request.contact_id), request.entry_event_id)
            if request.entry_event_id
            else None
        )
        score = display_score(current_score(recipient.profile, utc_now(), self._lead_model))
        return template_context(
            recipient.profile, unsubscribe_url, confirm_url=confirm_url, score=score, entry=entry
        )

    # --- email -----------------------------------------------------------------------------------

    def _deliver_email(self, message_id: str, request: SendRequest) -> SendResult | _Delivered:
        """Check the contact, compose and hand the email to SES. A SendResult means it was skipped."""
        found = self._recipient(request, message_id)
        if isinstance(found, SendResult):
            return found
        contact = found.contact
        suppression = None if contact.do_not_contact else self._contacts.suppression(contact.email)
        reason = email_skip_reason(contact, request.purpose, suppression)
        if reason is not None:
            return self._skip(request, message_id, reason)

        links = SignedLinks(self._signer, self._base_url, message_id, contact.contact_id)
        confirm_url = links.confirm_url if request.purpose == "confirmation" else None
        try:
            rendered = self._renderer.render(
                request.template,
                self._context(request, found, links.unsubscribe_url, confirm_url=confirm_url),
                locale=contact.locale,
                subject=request.subject,
                preheader=request.preheader,
                version=request.template_version,
            )
            email = compose_email(
                rendered=rendered,
                links=links,
                sender=self._sender,
                recipient=contact.email,
                unsubscribe_mailto=self._unsubscribe_mailto,
                configuration_set=self._configuration_set,
                message_id=message_id,
                tracked=request.purpose == "marketing",
            )
        except InvalidRecipient:
            return self._skip(request, message_id, "invalid_recipient")
        except TemplateRenderError as exc:
            self._fail(message_id, exc)
            raise

        self._handing_over(message_id)
        try:
            response = self._ses.send_raw_email(
                Source=self._sender,
                Destinations=[contact.email],
                RawMessage={"Data": email.raw},
                ConfigurationSetName=self._configuration_set,
                Tags=[{"Name": MESSAGE_TAG, "Value": message_id}],
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "MessageRejected":
                return self._rejected(request, message_id)
            self._provider_error(message_id, exc)
            raise  # the provider answered with an error: nothing was sent, the retry may send
        except Exception as exc:
            raise self._in_doubt(message_id, exc, "SES") from exc
        return _Delivered(
            contact=contact,
            recipient=contact.email,
            fields={"ses_message_id": str(response.get("MessageId", ""))},
        )

    # --- SMS -------------------------------------------------------------------------------------

    def _deliver_sms(self, message_id: str, request: SendRequest) -> SendResult | _Delivered:
        """Check the contact, render and measure the text and publish it through SNS."""
        found = self._recipient(request, message_id)
        if isinstance(found, SendResult):
            return found
        contact = found.contact
        reason = sms_skip_reason(contact, request.purpose)
        if reason is not None:
            return self._skip(request, message_id, reason)
        assert contact.phone is not None  # is_e164 checked it
        if self._sns is None:
            raise RuntimeError("SendService was built without an SNS client: it cannot send SMS")

        marketing = request.purpose == "marketing"
        links = SignedLinks(self._signer, self._base_url, message_id, contact.contact_id)
        try:
            text = self._renderer.render_sms(
                request.template,
                self._context(request, found, links.unsubscribe_url),
                locale=contact.locale,
                version=request.template_version,
            )
            sms = compose_sms(text, marketing=marketing)
        except TemplateRenderError as exc:
            self._fail(message_id, exc)
            raise

        attributes = {
            "AWS.SNS.SMS.SMSType": {
                "DataType": "String",
                "StringValue": self._sms_type if marketing else "Transactional",
            }
        }
        if self._sms_sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self._sms_sender_id}
        if self._sms_origination_number:
            attributes["AWS.MM.SMS.OriginationNumber"] = {
                "DataType": "String",
                "StringValue": self._sms_origination_number,
            }
        self._handing_over(message_id)
        try:
            response = self._sns.publish(
                PhoneNumber=contact.phone, Message=sms.text, MessageAttributes=attributes
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("InvalidParameter", "InvalidParameterValue") and not _is_throttled(exc):
                return self._rejected(request, message_id)
            self._provider_error(message_id, exc)
            raise
        except Exception as exc:
            raise self._in_doubt(message_id, exc, "SNS") from exc
        return _Delivered(
            contact=contact,
            recipient=contact.phone,
            fields={
                "sns_message_id": str(response.get("MessageId", "")),
                "sms_segments": sms.segments,
                "sms_encoding": sms.encoding,
            },
        )

    # --- outcomes --------------------------------------------------------------------------------

    def _provider_error(self, message_id: str, exc: ClientError) -> None:
        """The provider answered with an error: throttling becomes ``SendThrottled`` (retried with
        back-off by the state machine); any other error leaves the claim retryable."""
        if _is_throttled(exc):
            self._messages.finish(message_id, RETRYABLE, iso(utc_now()), reason="throttled")
            metrics.add_metric(name="SendThrottled", unit="Count", value=1)
            raise SendThrottled(str(exc)) from exc

    def _in_doubt(self, message_id: str, exc: Exception, provider: str) -> SendInDoubt:
        # No answer (timeout, connection lost): it may have sent. Never risk a second copy.
        self._messages.finish(message_id, "in_doubt", iso(utc_now()), reason=type(exc).__name__)
        metrics.add_metric(name="SendsInDoubt", unit="Count", value=1)
        return SendInDoubt(f"no answer from {provider} for message {message_id}")

    def _handing_over(self, message_id: str) -> None:
        if not self._messages.hand_over(message_id, iso(utc_now())):
            raise RuntimeError(f"message {message_id} was taken over by another attempt")

    def _fail(self, message_id: str, exc: TemplateRenderError) -> None:
        self._messages.finish(message_id, "failed", iso(utc_now()), reason=f"template: {exc}"[:500])
        metrics.add_metric(name="SendFailures", unit="Count", value=1)

    def _rejected(self, request: SendRequest, message_id: str) -> SendResult:
        """The provider refused the message for good (SES ``MessageRejected``): nothing was sent and
        a retry would be refused again. Recorded as a skip (reason ``rejected_by_provider``, which
        reports show) whatever a write error in between, and counted (``SendsRejected``, alarmed)."""
        metrics.add_metric(name="SendsRejected", unit="Count", value=1)
        return self._skip(request, message_id, "rejected_by_provider", after_provider=True)

    def _record_outcome(self, message_id: str, txn: Transaction) -> None:
        """Write what the provider answered, retried with back-off: after the hand-over the claim
        can no longer be released for a retry (the message may be out), so a lost write would
        leave the message ``handing_over`` with no record of being sent or refused. If every
        attempt fails the message stays ``handing_over`` (in doubt, counted and alarmed)."""
        for attempt in range(OUTCOME_WRITE_ATTEMPTS):
            try:
                self._transact(txn)
                return
            except ClientError as exc:
                refused = isinstance(exc, TransactionCancelled) and exc.failed_condition()
                if refused or attempt == OUTCOME_WRITE_ATTEMPTS - 1:
                    metrics.add_metric(name="SendOutcomesNotRecorded", unit="Count", value=1)
                    raise SendInDoubt(f"outcome of message {message_id} not recorded: {exc}") from exc
                time.sleep(0.05 * 2**attempt)

    def _skip(
        self, request: SendRequest, message_id: str, reason: str, *, after_provider: bool = False
    ) -> SendResult:
        """Record the skip on the message item and as an ``<channel>_skipped`` event (reports count
        skips by step and reason from the stream; erasure finds the message through it).
        ``after_provider``: the provider answered already (the write is retried, never released)."""
        at = iso(utc_now())
        channel = "sms" if request.action == "send_sms" else "email"
        txn = Transaction()
        txn.add(self._messages.finish_op(message_id, "skipped", at, reason=reason), "message")
        txn.add(
            self._events.put_op(
                Event(
                    event_id=ids.deterministic_id(message_id, "skipped"),
                    type=f"{channel}_skipped",
                    occurred_at=at,
                    contact_id=request.contact_id,
                    message_id=message_id,
                    journey_id=request.journey_id,
                    source=f"journey:{request.journey_id}",
                    properties={"step_id": request.step_id, "template": request.template, "reason": reason},
                )
            ),
            "event",
        )
        if after_provider:
            self._record_outcome(message_id, txn)
        else:
            self._transact(txn)
        metrics.add_metric(name="SendsSkipped", unit="Count", value=1)
        count_by("SendsSkippedByReason", "reason", reason)
        logger.info("send skipped", extra={"message_id": message_id, "reason": reason})
        return SendResult(message_id=message_id, status="skipped", reason=reason)
