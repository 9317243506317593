"""Events: the one immutable record of every interaction (``Event``) and the public event input
(``EventIn``, ``POST /events``) with the rules a posted event must follow (type pattern, reserved
types leadflow records itself, property limits).

Invariant: a posted event can never forge a type leadflow records itself (``RESERVED_EVENT_TYPES``,
``RESERVED_EVENT_PREFIXES``); an ``Event`` belongs to a contact or a visitor."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from leadflow.contacts.normalize import normalize_email

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
VISITOR_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
CLIENT_EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
MAX_PROPERTIES = 50
MAX_PROPERTY_VALUE = 1024

EventType = Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
RESERVED_EVENT_TYPES = frozenset(
    {
        "form_submitted",
        "page_viewed",
        "unsubscribed",
        "stage_changed",
        "score_changed",
        "segment_entered",
        "segment_left",
        "sales_notified",
        "webhook_delivered",
        "do_not_contact_set",
        "contact_created",
        "contact_updated",
        "contact_identified",
        "contacts_merged",
        "points_awarded",
        "sales_feedback",
        "lead_assigned",
    }
)
RESERVED_EVENT_PREFIXES = ("email_", "sms_", "journey_", "consent_")
"""Event types leadflow records itself: ``POST /events`` may not forge them (a forged
``stage_changed`` would hand a lead to sales, a forged ``email_clicked`` would add points)."""
VisitorId = Annotated[str, StringConstraints(pattern=VISITOR_ID_PATTERN)]
PropertyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
PropertyValue = str | int | float | bool | None


def _check_properties(value: dict[str, PropertyValue]) -> dict[str, PropertyValue]:
    if len(value) > MAX_PROPERTIES:
        raise ValueError(f"at most {MAX_PROPERTIES} properties")
    for key, item in value.items():
        if isinstance(item, str) and len(item) > MAX_PROPERTY_VALUE:
            raise ValueError(f"property {key!r} is longer than {MAX_PROPERTY_VALUE} characters")
    return value


# --- API input ---------------------------------------------------------------------------------


class EventIn(BaseModel):
    """``POST /events``: an interaction reported by a website or a server."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: EventType
    visitor_id: VisitorId | None = None
    email: str | None = Field(default=None, max_length=254)
    properties: dict[PropertyKey, PropertyValue] = Field(default_factory=dict)
    event_id: Annotated[str, StringConstraints(pattern=CLIENT_EVENT_ID_PATTERN)] | None = Field(
        default=None, description="Client idempotency key: a repeated event_id is stored once."
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalize_email(value)

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_EVENT_TYPES or value.startswith(RESERVED_EVENT_PREFIXES):
            raise ValueError(f"{value!r} is recorded by leadflow itself and cannot be posted")
        return value

    @field_validator("properties")
    @classmethod
    def _props(cls, value: dict[str, PropertyValue]) -> dict[str, PropertyValue]:
        return _check_properties(value)

    @model_validator(mode="after")
    def _who(self) -> EventIn:
        if self.visitor_id is None and self.email is None:
            raise ValueError("one of visitor_id or email is required")
        return self


class EventAccepted(BaseModel):
    event_id: str
    duplicate: bool


# --- domain ------------------------------------------------------------------------------------


class Event(BaseModel):
    """One immutable interaction. Either a known contact's or an anonymous visitor's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    type: str
    occurred_at: str
    contact_id: str | None = None
    visitor_id: str | None = None
    message_id: str | None = None
    journey_id: str | None = None
    source: str
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _subject(self) -> Event:
        if self.contact_id is None and self.visitor_id is None:
            raise ValueError("an event belongs to a contact or a visitor")
        return self
