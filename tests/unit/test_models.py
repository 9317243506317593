"""Input normalization and validation at the API boundary."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadflow.capture.model import FormSubmission, truncate_ip
from leadflow.contacts.normalize import normalize_email
from leadflow.events.model import EventIn


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("max@bücher.de", "max@xn--bcher-kva.de"),
        ("o'brien+news@sub.example.org", "o'brien+news@sub.example.org"),
    ],
)
def test_valid_addresses_are_normalized(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "a@example.com\r\nBcc: x@evil.com",
        ".a@example.com",
        "a..b@example.com",
        "a@-example.com",
        "a@example.123",
        "x" * 250 + "@example.com",
    ],
)
def test_invalid_addresses_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match=r"email|domain"):
        normalize_email(raw)


def test_form_checkbox_and_blank_fields() -> None:
    sub = FormSubmission.model_validate(
        {"email": "A@Example.com", "consent": "on", "visitor_id": "", "first_name": "  Ada  "}
    )
    assert (sub.email, sub.consent, sub.visitor_id, sub.first_name) == ("a@example.com", True, None, "Ada")
    assert FormSubmission.model_validate({"email": "a@example.com"}).consent is False


def test_form_rejects_control_characters_in_names() -> None:
    with pytest.raises(ValidationError) as info:
        FormSubmission.model_validate({"email": "a@example.com", "first_name": "Ada\x00"})
    assert info.value.errors()[0]["loc"] == ("first_name",)


def test_event_needs_a_subject_and_a_well_formed_type() -> None:
    with pytest.raises(ValidationError, match="visitor_id or email"):
        EventIn.model_validate({"type": "purchase"})
    with pytest.raises(ValidationError) as info:
        EventIn.model_validate({"type": "Bad Type!", "visitor_id": "v1234567890"})
    assert info.value.errors()[0]["loc"] == ("type",)
    ok = EventIn.model_validate(
        {"type": "purchase", "email": "B@example.com", "properties": {"amount": 10.5}}
    )
    assert ok.email == "b@example.com"


def test_event_properties_are_bounded() -> None:
    with pytest.raises(ValidationError, match="at most 50"):
        EventIn.model_validate(
            {"type": "x", "visitor_id": "v1234567890", "properties": {f"p{i}": i for i in range(51)}}
        )
    with pytest.raises(ValidationError, match="longer than"):
        EventIn.model_validate({"type": "x", "visitor_id": "v1234567890", "properties": {"p": "y" * 2000}})


def test_ip_addresses_are_truncated() -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:abcd:12::1") == "2001:db8:abcd::"
    assert truncate_ip("not-an-ip") is None
