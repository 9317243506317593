"""The send step's contract (state machine or broadcast -> ``send``): ``SendRequest`` in,
``SendResult`` out, and what a message's purpose allows (``MessagePurpose``)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

# --- send step contract (state machine -> send) ------------------------------------------------


MessagePurpose = Literal["marketing", "transactional", "confirmation"]
"""marketing: needs consent, tracked, List-Unsubscribe, frequency caps. transactional: no consent
needed and no tracking, suppression still applies. confirmation: the double opt-in email, the only
message a contact with pending consent receives."""


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["send_email", "send_sms"]
    purpose: MessagePurpose = "marketing"
    journey_id: str = Field(min_length=1, max_length=64)
    step_id: str = Field(min_length=1, max_length=64)
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    template_version: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    """The template's content hash the journey definition names (``messaging.template_versions``);
    None (definitions compiled before versions, broadcasts): the deployed template."""
    contact_id: str = Field(min_length=1, max_length=64)
    execution_id: str = Field(min_length=1, max_length=2048)
    # step-level overrides of the template's subject.txt / preheader (Jinja2, the same context)
    subject: str | None = Field(default=None, max_length=300)
    preheader: str | None = Field(default=None, max_length=300)
    # the event that entered the contact (its properties are the template's ``entry.properties``)
    entry_event_id: str | None = Field(default=None, min_length=1, max_length=128)


SendStatus = Literal["sent", "skipped", "duplicate"]


class SendResult(BaseModel):
    message_id: str
    status: SendStatus
    reason: str | None = None
