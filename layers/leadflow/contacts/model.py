"""Contact input: what an upsert or an import row may say about a contact, normalized and validated.

Normalization (so the same person is one contact however the data was typed):
- email: trimmed, lower-cased, IDN domains as punycode (``normalize_email``);
- names, company, job title: trimmed, inner whitespace collapsed, no control characters;
- phone: E.164 (``normalize_phone``), a national number read in the row's ``country`` or, without
  one, kept for ``ContactService`` to read in the stored contact's (``NationalNumber``);
  country: ISO 3166-1 alpha-2, upper case (only assigned codes);
- gender: ``female|male|diverse|undisclosed``, case-insensitive, with the usual short forms
  (``f``/``w``, ``m``, ``d``/``x``, ``u``) and German/English synonyms;
- tags: lower case; custom attributes: typed by the lead model's schema (``leads.yaml``).

The field types (``Email``, ``Phone``, ``Country``, ``Name``...) are ``leadflow.contacts.normalize``'s,
the same a form and ``POST /events`` use; the field names by owner are ``leadflow.contacts.fields``.
An empty value (``""`` or ``null``, an empty CSV cell) means "not given": the field is left as it
is. Errors name the field (``country``, ``attributes.company_size``, ``tags.2``) and nothing of an
invalid contact is stored.

``Contact`` is the other direction: the domain's read of a stored profile (consent states,
suppression, do-not-contact, locale, time zone) that sending and the journeys decide on; a merged
contact's tombstone reads with an empty email and ``merged_into``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadflow.contacts.fields import BUILT_IN_FIELDS
from leadflow.contacts.normalize import (
    Blank,
    Country,
    Email,
    Name,
    Phone,
    Required,
    Salutation,
    Text,
    TimeZone,
    clean_text,
    none_if_blank,
    normalize_country,
)
from leadflow.kernel.errors import InvalidFields, validation_fields
from leadflow.leads.model import AttributeSpec

Gender = Literal["female", "male", "diverse", "undisclosed"]
GENDER_SYNONYMS: dict[str, Gender] = {
    **dict.fromkeys(("female", "f", "w", "woman", "weiblich", "frau"), "female"),
    **dict.fromkeys(("male", "m", "man", "männlich", "maennlich", "mann"), "male"),
    **dict.fromkeys(
        ("diverse", "d", "x", "divers", "non-binary", "nonbinary", "non_binary", "other"), "diverse"
    ),
    **dict.fromkeys(
        ("undisclosed", "u", "n", "unknown", "not specified", "prefer not to say", "keine angabe"),
        "undisclosed",
    ),
}
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_:.-]{0,63}$")
MAX_TAGS = 50


def _given(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def normalize_gender(raw: str) -> Gender:
    found = GENDER_SYNONYMS.get(" ".join(raw.strip().lower().split()))
    if found is None:
        raise ValueError("must be one of female, male, diverse, undisclosed")
    return found


class ContactInvalid(InvalidFields):
    """A contact (an upsert body or an import row) failed validation: every problem, by field."""

    summary = "invalid contact"


class ContactIn(BaseModel):
    """``POST /admin/contacts`` and one row of ``POST /admin/contacts/import``.

    ``attributes`` are the custom attributes of ``leads.yaml`` (validated by ``parse_contact``,
    which knows the schema). ``consent_email: granted`` needs ``consent_source`` (where the consent
    was given: an import must be able to prove it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: Annotated[Email, Required]
    first_name: Name | None = None
    last_name: Name | None = None
    country: Annotated[Country | None, Blank] = None
    """Before ``phone``: a national number is read in this country (else in the stored one)."""
    phone: Annotated[Phone | None, Blank] = None
    salutation: Salutation | None = None
    gender: Gender | None = None
    locale: Annotated[str | None, Blank] = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
    )
    timezone: Annotated[TimeZone | None, Blank] = None
    company: Text | None = None
    job_title: Text | None = None
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    consent_email: Annotated[Literal["granted", "revoked", "unknown"] | None, Blank] = None
    consent_source: Text | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("gender", mode="before")
    @classmethod
    def _gender(cls, value: Any) -> Any:
        return normalize_gender(value) if _given(value) else none_if_blank(value)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return value.replace("_", "-") if value else value

    @field_validator("consent_email", mode="before")
    @classmethod
    def _consent(cls, value: Any) -> Any:
        return value.strip().lower() if _given(value) else value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):  # "a|b" or "a;b" (CSV cells)
            value = list(re.split(r"[|;]", value))
        if not isinstance(value, list):
            return value
        tags: list[Any] = []
        for tag in value:
            if isinstance(tag, str):
                tag = tag.strip().lower()
                if not tag:
                    continue
                if not TAG_PATTERN.match(tag):
                    raise ValueError(f"{tag[:70]!r} is not a tag (a-z, 0-9, _ : . -; 64 characters at most)")
            if tag not in tags:
                tags.append(tag)
        return tags

    @model_validator(mode="after")
    def _consent_source(self) -> ContactIn:
        if self.consent_email == "granted" and not self.consent_source:
            raise ValueError("consent_source: say where the consent was given when consent_email is granted")
        return self


def normalize_tags(raw: list[str], field: str) -> list[str]:
    """Tags as an upsert stores them; ``ContactInvalid`` naming ``<field>`` otherwise."""
    try:
        return ContactIn.model_validate({"email": "tags@example.com", "tags": raw}).tags
    except ValidationError as exc:
        raise ContactInvalid(
            [
                {"field": f["field"].replace("tags", field, 1), "message": f["message"]}
                for f in validation_fields(exc.errors())
            ]
        ) from exc


# --- custom attributes ------------------------------------------------------------------------

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _number(value: Any, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number" if not integer else "must be a whole number")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = int(text) if integer and re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError as exc:
            raise ValueError("must be a whole number" if integer else "must be a number") from exc
    if not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError("must be a whole number" if integer else "must be a number")
    number: int | float = value
    if integer:
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError("must be a whole number")
            number = int(number)
        return number
    return (
        int(number) if isinstance(number, float) and number.is_integer() and abs(number) < 2**53 else number
    )


def attribute_value(spec: AttributeSpec, value: Any) -> Any:
    """The stored value of a custom attribute; ``ValueError`` with a reason a person understands."""
    if isinstance(value, list | dict):
        raise ValueError("must be a single value")
    if spec.type in ("integer", "number"):
        number = _number(value, spec.type == "integer")
        if spec.min is not None and number < spec.min:
            raise ValueError(f"must be at least {spec.min:g}")
        if spec.max is not None and number > spec.max:
            raise ValueError(f"must be at most {spec.max:g}")
        return number
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("must be true or false")
    if isinstance(value, bool):
        raise ValueError(f"must be a {spec.type}, not a boolean")
    text = str(value).strip()
    if spec.type == "date":
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError(text)
            return date.fromisoformat(text).isoformat()
        except ValueError as exc:
            raise ValueError("must be a date like 2026-03-31") from exc
    if spec.type == "country":
        return normalize_country(text)
    if spec.type == "enum":
        allowed = spec.values or []
        for candidate in allowed:
            if candidate.lower() == text.lower():
                return candidate
        raise ValueError(f"must be one of {', '.join(allowed)}")
    cleaned = clean_text(text)
    if cleaned is not None and len(cleaned) > spec.max_length:
        raise ValueError(f"must be at most {spec.max_length} characters")
    return cleaned


def check_attributes(
    raw: Any, schema: Mapping[str, AttributeSpec]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Validated custom attributes and the problems (``attributes.<name>``)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [{"field": "attributes", "message": "must be an object of attribute name -> value"}]
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, value in raw.items():
        field = f"attributes.{str(name)[:64]}"
        spec = schema.get(name) if isinstance(name, str) else None
        if spec is None:
            known = ", ".join(sorted(schema)) or "none are declared"
            errors.append({"field": field, "message": f"unknown attribute (declared in leads.yaml: {known})"})
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            stored = attribute_value(spec, value)
        except ValueError as exc:
            errors.append({"field": field, "message": str(exc)})
            continue
        if stored is not None:
            values[name] = stored
    return values, errors


def parse_contact(data: Any, schema: Mapping[str, AttributeSpec]) -> ContactIn:
    """A validated contact, or ``ContactInvalid`` naming every bad field."""
    if not isinstance(data, Mapping):
        raise ContactInvalid([{"field": "body", "message": "must be a JSON object"}])
    base = {k: v for k, v in data.items() if k != "attributes"}
    errors: list[dict[str, str]] = []
    contact: ContactIn | None = None
    try:
        contact = ContactIn.model_validate(base)
    except ValidationError as exc:
        errors += validation_fields(exc.errors())
    attributes, attribute_errors = check_attributes(data.get("attributes"), schema)
    errors += attribute_errors
    if errors or contact is None:
        raise ContactInvalid(errors)
    return contact.model_copy(update={"attributes": attributes})


# --- the schema, as GET /admin/attributes shows it ------------------------------------------------

BUILT_IN_SCHEMA: dict[str, dict[str, Any]] = {
    "contact_id": {"type": "string", "read_only": True},
    "email": {"type": "email", "description": "Normalized: trimmed, lower case, IDN as punycode"},
    "first_name": {"type": "string", "max_length": 100},
    "last_name": {"type": "string", "max_length": 100},
    "phone": {"type": "phone", "description": "E.164, e.g. +14155550123"},
    "salutation": {"type": "string", "max_length": 20},
    "gender": {"type": "enum", "values": ["female", "male", "diverse", "undisclosed"]},
    "locale": {"type": "string", "description": "BCP 47-ish: de, de-AT"},
    "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Berlin"},
    "country": {"type": "country", "description": "ISO 3166-1 alpha-2, upper case"},
    "company": {"type": "string", "max_length": 200},
    "job_title": {"type": "string", "max_length": 200},
    "consent_email": {"type": "enum", "values": ["granted", "revoked", "unknown", "pending"]},
    "consent_sms": {"type": "enum", "values": ["granted", "revoked", "unknown"], "read_only": True},
    "score": {"type": "integer", "read_only": True, "description": "Behaviour score (decays)"},
    "fit_score": {"type": "integer", "read_only": True},
    "stage": {"type": "string", "read_only": True, "description": "Lifecycle stage"},
    "tags": {"type": "string_set", "description": "a-z, 0-9, _ : . -"},
    "segments": {"type": "string_set", "read_only": True},
    "owner": {"type": "string", "read_only": True},
    "created_at": {"type": "datetime", "read_only": True},
    "updated_at": {"type": "datetime", "read_only": True},
}
assert set(BUILT_IN_SCHEMA) == set(BUILT_IN_FIELDS), "BUILT_IN_SCHEMA must describe every built-in field"


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
