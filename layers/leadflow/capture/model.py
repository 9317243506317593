"""What the public capture surface takes in: a sign-up form's fields (``FormSubmission``), the
answer a form gets (``FormAccepted``, the same whether the address was new or known) and the
anonymized client IP (``truncate_ip``: a /24 or /48 network, never the address). A form's contact
fields are normalized by the same field types as the admin API's (``leadflow.contacts.normalize``);
an empty field is "not given"."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.contacts.normalize import Blank, Country, Email, Name, Phone, Salutation, TimeZone
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

    email: Email
    first_name: Name | None = None
    last_name: Name | None = None
    consent: bool = False
    visitor_id: Annotated[VisitorId | None, Blank] = None
    page_url: Annotated[str | None, Blank] = Field(default=None, max_length=2048)
    country: Annotated[Country | None, Blank] = None
    """ISO 3166-1 alpha-2; also the region a national phone number is read in (before ``phone``);
    without it, the stored contact's (``plan_signup``)."""
    phone: Annotated[Phone | None, Blank] = None
    sms_consent: bool = False
    locale: Annotated[str | None, Blank] = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
    )
    salutation: Annotated[Salutation | None, Blank] = None
    timezone: Annotated[TimeZone | None, Blank] = None

    @field_validator("consent", "sms_consent", mode="before")
    @classmethod
    def _checkbox(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() in {"on", "true", "1", "yes"}
        return value


class FormAccepted(BaseModel):
    """The same answer whether the address was new or known: a form never tells who is a contact."""

    contact_id: str
