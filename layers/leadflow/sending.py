"""The send step: deliver one journey email exactly once, if the contact may receive it.

Order of work for a step (execution, step) → message id:
1. claim the message item (conditional put). A retry of a step that already sent finds the claim
   and returns ``duplicate``: a message is never sent twice. Only a throttled attempt is re-claimable.
2. consent and suppression are checked now, at send time.
3. render, rewrite links to signed click links, add the open pixel and one-click unsubscribe headers.
4. send through SES with the configuration set; then mark the item sent and record ``email_sent``
   in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from leadflow import ids
from leadflow.errors import SendThrottled
from leadflow.messaging import (
    EmailRenderer,
    InvalidRecipient,
    SignedLinks,
    TemplateRenderError,
    compose_marketing_email,
    template_context,
)
from leadflow.models import Contact, Event, SendRequest, SendResult, iso, utc_now
from leadflow.observability import count_by, logger, metrics, pii_hash
from leadflow.store import ContactStore, EventStore, MessageStore, Transaction
from leadflow.tokens import TokenSigner

RETRYABLE = "retryable"
"""Message status of an attempt that did not reach SES: the step's retry may claim it again."""
THROTTLING_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
THROTTLING_MESSAGES = ("Maximum sending rate exceeded", "Daily message quota exceeded")


class SendInDoubt(Exception):
    """SES did not answer; the message may have gone out, so it is not sent again."""


def _is_throttled(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    return err.get("Code") in THROTTLING_CODES or any(
        m in str(err.get("Message", "")) for m in THROTTLING_MESSAGES
    )


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
    ) -> None:
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

    def send_email(self, request: SendRequest) -> SendResult:
        message_id = ids.deterministic_id(request.execution_id, request.step_id)
        fields = {
            "contact_id": request.contact_id,
            "journey_id": request.journey_id,
            "step_id": request.step_id,
            "execution_id": request.execution_id,
            "template": request.template,
            "channel": "email",
        }
        if not self._messages.claim(message_id, fields, iso(utc_now())):
            existing = self._messages.get(message_id) or {}
            metrics.add_metric(name="DuplicateSendsPrevented", unit="Count", value=1)
            logger.info(
                "step already handled", extra={"message_id": message_id, "status": existing.get("status")}
            )
            return SendResult(message_id=message_id, status="duplicate", reason=str(existing.get("status")))

        try:
            outcome = self._deliver(message_id, request)
        except (SendThrottled, SendInDoubt, TemplateRenderError):
            raise  # the message item already says what happened
        except Exception:
            # Nothing reached SES: release the claim so the state machine's retry can send.
            self._messages.finish(message_id, RETRYABLE, iso(utc_now()), reason="error before send")
            raise
        if isinstance(outcome, SendResult):
            return outcome
        contact, ses_message_id = outcome
        at = iso(utc_now())
        txn = Transaction()
        txn.add(self._messages.finish_op(message_id, "sent", at, ses_message_id=ses_message_id, sent_at=at))
        txn.add(
            self._events.put_op(
                Event(
                    event_id=ids.new_event_id(),
                    type="email_sent",
                    occurred_at=at,
                    contact_id=contact.contact_id,
                    message_id=message_id,
                    journey_id=request.journey_id,
                    source=f"journey:{request.journey_id}",
                    properties={"template": request.template, "step_id": request.step_id},
                )
            )
        )
        self._transact(txn)
        metrics.add_metric(name="EmailsSent", unit="Count", value=1)
        logger.info("email sent", extra={"message_id": message_id, "recipient": pii_hash(contact.email)})
        return SendResult(message_id=message_id, status="sent")

    def _deliver(self, message_id: str, request: SendRequest) -> SendResult | tuple[Contact, str]:
        """Check consent, compose and hand the email to SES. A SendResult means it was skipped."""
        contact = self._contacts.get(request.contact_id)
        if contact is None:
            return self._skip(message_id, "contact_not_found")
        if contact.consent_email == "revoked":
            return self._skip(message_id, "unsubscribed")
        if not contact.reachable_by_email:
            return self._skip(message_id, "no_consent")

        links = SignedLinks(self._signer, self._base_url, message_id, contact.contact_id)
        try:
            rendered = self._renderer.render(
                request.template, template_context(contact.model_dump(), links.unsubscribe_url)
            )
            email = compose_marketing_email(
                rendered=rendered,
                links=links,
                sender=self._sender,
                recipient=contact.email,
                unsubscribe_mailto=self._unsubscribe_mailto,
                configuration_set=self._configuration_set,
                message_id=message_id,
            )
        except InvalidRecipient:
            return self._skip(message_id, "invalid_recipient")
        except TemplateRenderError as exc:
            self._messages.finish(message_id, "failed", iso(utc_now()), reason=f"template: {exc}"[:500])
            metrics.add_metric(name="SendFailures", unit="Count", value=1)
            raise

        try:
            response = self._ses.send_raw_email(
                Source=self._sender,
                Destinations=[contact.email],
                RawMessage={"Data": email.raw},
                ConfigurationSetName=self._configuration_set,
            )
        except ClientError as exc:
            if _is_throttled(exc):
                self._messages.finish(message_id, RETRYABLE, iso(utc_now()), reason="throttled")
                metrics.add_metric(name="SendThrottled", unit="Count", value=1)
                raise SendThrottled(str(exc)) from exc
            if exc.response.get("Error", {}).get("Code") == "MessageRejected":
                return self._skip(message_id, "rejected_by_provider")
            raise  # SES answered with an error: nothing was sent, the retry may send
        except Exception as exc:
            # No answer from SES (timeout, connection lost): it may have sent. Never risk a second copy.
            self._messages.finish(message_id, "in_doubt", iso(utc_now()), reason=type(exc).__name__)
            metrics.add_metric(name="SendsInDoubt", unit="Count", value=1)
            raise SendInDoubt(f"no answer from SES for message {message_id}") from exc
        return contact, str(response.get("MessageId", ""))

    def _skip(self, message_id: str, reason: str) -> SendResult:
        self._messages.finish(message_id, "skipped", iso(utc_now()), reason=reason)
        metrics.add_metric(name="SendsSkipped", unit="Count", value=1)
        count_by("SendsSkippedByReason", "reason", reason)
        logger.info("send skipped", extra={"message_id": message_id, "reason": reason})
        return SendResult(message_id=message_id, status="skipped", reason=reason)
