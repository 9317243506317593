"""Models by boundary: API input (``*In``), domain (``Event``, ``Contact``), stream contracts
(``StoredEvent``) and the send step's contract (``SendRequest``/``SendResult``).

DynamoDB item shapes live next to the stores that write them (``store.py``)."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadflow import clock
from leadflow.contacts.normalize import normalize_country, normalize_email, normalize_phone

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

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def check_time_zone(value: str | None) -> str | None:
    """An IANA time zone name (None for blank); raises ``ValueError`` with a readable reason."""
    if not value:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone like Europe/Berlin") from exc
    return value


def is_e164(value: str | None) -> bool:
    return bool(value) and _E164.match(value or "") is not None


def truncate_ip(raw: str | None) -> str | None:
    """Anonymize an IP address: keep a /24 (IPv4) or /48 (IPv6) network."""
    if not raw:
        return None
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def utc_now() -> datetime:
    return clock.utc_now()


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class FormSubmission(BaseModel):
    """``POST /forms/{form_id}``: the fields of a sign-up form (browser or JSON)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: str = Field(max_length=254)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    consent: bool = False
    visitor_id: VisitorId | None = None
    page_url: str | None = Field(default=None, max_length=2048)
    country: str | None = Field(default=None, max_length=2)
    """ISO 3166-1 alpha-2; also the region a national phone number is read in (before ``phone``)."""
    phone: str | None = Field(default=None, max_length=32)
    sms_consent: bool = False
    locale: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")
    salutation: str | None = Field(default=None, max_length=20)
    timezone: str | None = Field(default=None, max_length=64)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_time_zone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else normalize_country(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else normalize_phone(value, info.data.get("country"))

    @field_validator("first_name", "last_name", "salutation")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = " ".join(value.split())
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
            raise ValueError("must not contain control characters")
        return cleaned or None

    @field_validator(
        "visitor_id", "page_url", "country", "phone", "locale", "salutation", "timezone", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("consent", "sms_consent", mode="before")
    @classmethod
    def _checkbox(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() in {"on", "true", "1", "yes"}
        return value


class FormAccepted(BaseModel):
    """The same answer whether the address was new or known: a form never tells who is a contact."""

    contact_id: str


class ClientError(BaseModel):
    """The JSON body of every 4xx answer."""

    error: str
    fields: list[dict[str, str]] = Field(default_factory=list)


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


ConsentState = Literal["granted", "revoked", "unknown", "pending"]
"""``pending``: signed up through a double opt-in form, not confirmed yet (only the confirmation
email may be sent)."""
SuppressionReason = Literal["bounce", "complaint"]


class Contact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    contact_id: str
    email: str
    merged_into: str | None = None
    """Set on the tombstone of a contact merged into another (its personal fields are gone, its
    ``email`` is empty): nothing is sent to it; readers follow ``merged_into`` to the survivor."""
    first_name: str | None = None
    last_name: str | None = None
    consent_email: ConsentState = "unknown"
    score: int = 0
    phone: str | None = None
    consent_sms: ConsentState = "unknown"
    suppressed: SuppressionReason | None = None
    """Set by SES feedback: the address hard-bounced or complained; no email is sent to it again."""
    do_not_contact: bool = False
    """Set by an operator: no message of any kind on any channel."""
    locale: str | None = None
    """BCP 47-ish (``de``, ``de-AT``): picks the template locale folder and the greeting."""
    salutation: str | None = None
    """Title for formal greetings (Ms, Mr, Dr, Frau, Herr, Madame, Monsieur...)."""
    timezone: str | None = None
    """IANA time zone: quiet hours, send windows and wait_until are in the contact's local time."""

    @model_validator(mode="before")
    @classmethod
    def _tombstone(cls, data: Any) -> Any:
        # a merged contact's tombstone has no email: checked before the fields are validated
        if isinstance(data, dict) and data.get("merged_into") and not data.get("email"):
            return {**data, "email": ""}
        return data

    @property
    def reachable_by_email(self) -> bool:
        return self.consent_email == "granted"


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
