"""Contact input normalization and validation (no AWS): one person is one contact however the data
was typed, and every error names its field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadflow.capture.model import FormSubmission
from leadflow.contacts.model import (
    ContactIn,
    ContactInvalid,
    check_attributes,
    normalize_gender,
    parse_contact,
)
from leadflow.contacts.normalize import COUNTRY_CODES, NationalNumber, normalize_country, resolve_phone
from leadflow.events.model import EventIn
from leadflow.leads.model import AttributeSpec

SCHEMA = {
    "company_size": AttributeSpec(type="integer", min=1, max=100000),
    "budget": AttributeSpec(type="number", min=0),
    "newsletter": AttributeSpec(type="boolean"),
    "renewal": AttributeSpec(type="date"),
    "plan": AttributeSpec(type="enum", values=["free", "pro"]),
    "hq": AttributeSpec(type="country"),
    "industry": AttributeSpec(type="string", max_length=10),
}


def fields_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ContactInvalid) as caught:
        parse_contact(data, SCHEMA)
    return {f["field"]: f["message"] for f in caught.value.fields}


def with_address(**fields: object) -> ContactIn:
    """The contact parsed from these fields and a valid email address."""
    return parse_contact({"email": "a@example.com", **fields}, SCHEMA)


def test_email_is_trimmed_lower_cased_and_idn_becomes_punycode() -> None:
    assert parse_contact({"email": " Ada@Bücher.Example "}, SCHEMA).email == "ada@xn--bcher-kva.example"
    assert parse_contact({"email": "MIXED.Case@Example.COM"}, SCHEMA).email == "mixed.case@example.com"
    assert "email" in fields_of({"email": "no-at-sign"})
    assert fields_of({"email": " "})["email"] == "is required"


def test_phone_becomes_e164() -> None:
    assert (
        parse_contact({"email": "a@example.com", "phone": "0049 (30) 1234-567"}, SCHEMA).phone
        == "+49301234567"
    )
    assert (
        parse_contact({"email": "a@example.com", "phone": "+1 415.555.0123"}, SCHEMA).phone == "+14155550123"
    )
    assert "phone" in fields_of({"email": "a@example.com", "phone": "030 12", "country": "DE"})


def test_a_national_number_without_a_country_waits_for_the_stored_one() -> None:
    """The request model cannot know the stored contact: the number is kept unresolved, and only
    ``resolve_phone`` (the services') turns it into E.164 or the error naming the missing country."""
    kept = with_address(phone=" 030 7654321 ").phone
    assert isinstance(kept, NationalNumber)
    assert "7654321" not in repr(kept)  # personal data stays out of logs
    assert resolve_phone(kept, "DE") == "+49307654321"
    assert resolve_phone("+49307654321", None) == "+49307654321"  # resolved already: as it is
    assert resolve_phone(None, "DE") is None
    with pytest.raises(ValueError, match="international format"):
        resolve_phone(kept, None)
    with pytest.raises(ValueError, match="not a valid phone number"):
        resolve_phone(with_address(phone="030 12").phone, "DE")


def test_country_codes_are_the_249_assigned_ones() -> None:
    assert len(COUNTRY_CODES) == 249
    assert normalize_country(" de ") == "DE"
    assert {"AX", "BQ", "SS", "XK"} & COUNTRY_CODES == {"AX", "BQ", "SS"}  # XK is user-assigned
    for bad in ("UK", "EU", "XX", "DEU", "D"):
        assert "country" in fields_of({"email": "a@example.com", "country": bad})


def test_gender_synonyms() -> None:
    assert [normalize_gender(v) for v in ("F", "w", "Female", "weiblich")] == ["female"] * 4
    assert [normalize_gender(v) for v in ("m", "MALE", "Mann")] == ["male"] * 3
    assert [normalize_gender(v) for v in ("d", "X", "non-binary", "divers")] == ["diverse"] * 4
    assert normalize_gender("prefer not to say") == "undisclosed"
    assert "gender" in fields_of({"email": "a@example.com", "gender": "robot"})


def test_names_are_cleaned_and_blank_means_not_given() -> None:
    contact = with_address(first_name="  Ada \t  Maria ", last_name="", company=" ACME  GmbH ")
    assert (contact.first_name, contact.last_name, contact.company) == ("Ada Maria", None, "ACME GmbH")
    assert "first_name" in fields_of({"email": "a@example.com", "first_name": "bad\x00name"})
    assert "last_name" in fields_of({"email": "a@example.com", "last_name": "x" * 101})


def test_tags_locale_timezone_consent() -> None:
    contact = with_address(tags="VIP| webinar ;vip", locale="de_AT", timezone="Europe/Vienna")
    assert contact.tags == ["vip", "webinar"]
    assert contact.locale == "de-AT"
    assert "tags" in fields_of({"email": "a@example.com", "tags": ["has space"]})
    assert "timezone" in fields_of({"email": "a@example.com", "timezone": "Mars/Base"})
    assert "consent_source" in fields_of({"email": "a@example.com", "consent_email": "granted"})
    granted = with_address(consent_email="GRANTED", consent_source="fair 2026")
    assert granted.consent_email == "granted"
    assert "consent_email" in fields_of({"email": "a@example.com", "consent_email": "maybe"})
    assert fields_of({"email": "a@example.com", "password": "x"}) == {"password": "unknown field"}


def test_custom_attributes_are_typed_by_the_schema() -> None:
    values, errors = check_attributes(
        {
            "company_size": "250",
            "budget": "1200.50",
            "newsletter": "yes",
            "renewal": "2026-12-31",
            "plan": "PRO",
            "hq": "ch",
            "industry": "  retail ",
        },
        SCHEMA,
    )
    assert errors == []
    assert values == {
        "company_size": 250,
        "budget": 1200.5,
        "newsletter": True,
        "renewal": "2026-12-31",
        "plan": "pro",
        "hq": "CH",
        "industry": "retail",
    }
    bad = fields_of(
        {
            "email": "a@example.com",
            "attributes": {
                "company_size": "2.5",
                "budget": -1,
                "newsletter": "perhaps",
                "renewal": "31.12.2026",
                "plan": "gold",
                "hq": "XX",
                "industry": "x" * 11,
                "shoe_size": 42,
            },
        }
    )
    assert set(bad) == {
        "attributes.company_size",
        "attributes.budget",
        "attributes.newsletter",
        "attributes.renewal",
        "attributes.plan",
        "attributes.hq",
        "attributes.industry",
        "attributes.shoe_size",
    }
    assert bad["attributes.budget"] == "must be at least 0"
    assert "unknown attribute" in bad["attributes.shoe_size"]
    assert check_attributes({"company_size": True}, SCHEMA)[1][0]["field"] == "attributes.company_size"


def test_every_problem_of_a_contact_is_reported_at_once() -> None:
    bad = fields_of({"email": "x", "country": "ZZ", "attributes": {"plan": "gold"}})
    assert set(bad) == {"email", "country", "attributes.plan"}
    assert ContactIn.model_fields["email"].is_required()


# --- the libraries' rules, the way people really type contact data -------------------------------


def test_idn_domains_follow_idna_2008_not_2003() -> None:
    # IDNA 2003 mapped ß to ss: faß.de and fass.de are different domains (and different people)
    assert parse_contact({"email": "Max@Faß.de"}, SCHEMA).email == "max@xn--fa-hia.de"
    assert parse_contact({"email": "a@münchen.de"}, SCHEMA).email == "a@xn--mnchen-3ya.de"
    assert parse_contact({"email": "a@fass.de"}, SCHEMA).email == "a@fass.de"


@pytest.mark.parametrize(
    "raw",
    ["a@b.test", "a@host.invalid", "a@printer.local", "a@localhost", "a..b@example.com", "üser@example.com"],
)
def test_addresses_no_mailbox_can_have_are_refused(raw: str) -> None:
    assert "email" in fields_of({"email": raw})


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+49 (0)30 1234567", None, "+49301234567"),  # the German way: the trunk 0 in brackets goes
        ("+49 (0) 170 1234567", None, "+491701234567"),
        ("030 1234567", "DE", "+49301234567"),  # national format in the contact's country
        ("(030) 12345-67", "de", "+49301234567"),
        ("0049 30 1234567", None, "+49301234567"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "DE", "+442079460958"),  # international wins over the country
        ("(415) 555-0123", "US", "+14155550123"),
    ],
)
def test_phone_numbers_as_people_write_them(phone: str, country: str | None, expected: str) -> None:
    row: dict[str, object] = {"email": "a@example.com", "phone": phone}
    if country:
        row["country"] = country
    assert parse_contact(row, SCHEMA).phone == expected


@pytest.mark.parametrize(
    ("phone", "country", "message"),
    [
        ("+999 1234 5678", None, "is not a valid phone number"),  # no country has +999
        ("+49 12", None, "not a valid phone number"),
        ("call me maybe", "DE", "written in digits"),  # no keypad letters
        ("+49 30 CALL-ME", None, "written in digits"),
        ("+1 555 0123", None, "not a valid phone number"),
    ],
)
def test_phone_numbers_that_reach_nobody_are_refused(phone: str, country: str | None, message: str) -> None:
    row: dict[str, object] = {"email": "a@example.com", "phone": phone}
    if country:
        row["country"] = country
    errors = fields_of(row)
    assert message in errors["phone"]
    assert phone not in errors["phone"]  # the value itself is never echoed


def test_the_country_list_is_iso_3166_1() -> None:
    import pycountry  # a dev dependency: the list shipped in the layer is checked against it

    assert {c.alpha_2 for c in pycountry.countries} == COUNTRY_CODES


@pytest.mark.parametrize(
    ("field", "raw", "country"),
    [
        ("email", "  Max@Faß.DE ", None),
        ("phone", "030 1234567", "DE"),
        ("phone", "+49 (0)30 1234567", None),
        ("phone", "", None),
        ("country", " de ", None),
        ("country", "", None),
        ("first_name", "  Ada   Byron ", None),
        ("salutation", "Dr", None),
        ("timezone", "Europe/Berlin", None),
        ("timezone", "", None),
    ],
)
def test_a_form_and_the_admin_api_store_the_same_value(field: str, raw: str, country: str | None) -> None:
    """One normalization: a sign-up form and an admin upsert (or import row) of the same typed value
    store the same thing; ``POST /events`` takes the address the same way."""
    row = {"email": "a@example.com", field: raw} | ({"country": country} if country else {})
    stored = getattr(ContactIn.model_validate(row), field)
    assert getattr(FormSubmission.model_validate(row), field) == stored
    if field == "email":
        assert (
            EventIn.model_validate({"type": "identify", "email": raw}).email == stored == "max@xn--fa-hia.de"
        )


@pytest.mark.parametrize(
    ("field", "raw"),
    [("phone", "+999 1234 5678"), ("country", "XX"), ("first_name", "Ada\x00"), ("timezone", "Mars/Olympus")],
)
def test_a_form_and_the_admin_api_refuse_the_same_value(field: str, raw: str) -> None:
    row = {"email": "a@example.com", field: raw}
    for model in (ContactIn, FormSubmission):
        with pytest.raises(ValidationError) as caught:
            model.model_validate(row)
        assert [err["loc"] for err in caught.value.errors()] == [(field,)]
