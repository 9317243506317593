"""What the public capture surface takes in: a sign-up form's fields (``FormSubmission``), the
answer a form gets (``FormAccepted``, the same whether the address was new or known) and the
anonymized client IP (``truncate_ip``: a /24 or /48 network, never the address)."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from leadflow.contacts.normalize import check_time_zone, normalize_country, normalize_email, normalize_phone
from leadflow.events.model import VisitorId


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
