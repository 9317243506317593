"""Contact data as people type it, through the doors it comes in by: the admin API (upsert and
import) and the sign-up forms (JSON clients and browsers), as the local system serves them.

A national phone number (``030 7654321``) is read in the request's ``country``, else in the stored
contact's; without either it is a 400 naming ``phone`` and nothing is stored. Every door answers a
bad value with the same clean message."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from leadflow.local.system import LocalSystem
from leadflow.platform.dynamo import deserialize
from tests.integration.conftest import JSON, profile
from tests.integration.test_contacts_api import admin, body, profiles_with_email

BROWSER = {"content-type": "application/x-www-form-urlencoded"}
NO_COUNTRY = (
    "must be a phone number in international format, e.g. +14155550123 (or give the contact's country)"
)


def stored(system: LocalSystem, email: str) -> dict[str, Any]:
    [found] = profiles_with_email(system, email)
    return found


def known_in(system: LocalSystem, email: str, country: str | None, **fields: Any) -> str:
    """A contact created earlier through the admin API (with a ``country`` when given)."""
    payload = {"email": email, **({"country": country} if country else {}), **fields}
    reply = admin(system, "POST", "/admin/contacts", payload)
    assert reply["statusCode"] == 201, reply
    contact_id: str = body(reply)["contact_id"]
    return contact_id


def form(system: LocalSystem, fields: dict[str, Any], name: str = "newsletter") -> dict[str, Any]:
    """A JSON client's post of a sign-up form."""
    return system.invoke_http("POST", f"/forms/{name}", headers=JSON, body=json.dumps(fields))


def phone_owner(system: LocalSystem, phone: str) -> str | None:
    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"PHONE#{phone}"}, "sk": {"S": "PHONE"}}
    )
    return str(deserialize(item["Item"])["contact_id"]) if "Item" in item else None


def field_errors(reply: dict[str, Any]) -> dict[str, str]:
    assert reply["statusCode"] == 400, reply
    return {f["field"]: f["message"] for f in body(reply)["fields"]}


# --- the admin API ------------------------------------------------------------------------------


def test_an_update_with_a_national_number_is_read_in_the_stored_country(system: LocalSystem) -> None:
    contact_id = known_in(system, "lena.berlin@example.com", "DE", first_name="Lena")
    reply = admin(
        system, "POST", "/admin/contacts", {"email": "lena.berlin@example.com", "phone": "030 7654321"}
    )
    assert reply["statusCode"] == 200, reply
    assert body(reply)["changed"] == ["phone"]
    assert stored(system, "lena.berlin@example.com")["phone"] == "+49307654321"
    assert phone_owner(system, "+49307654321") == contact_id  # SMS replies find her
    # the same number typed again the international way changes nothing
    again = admin(
        system, "POST", "/admin/contacts", {"email": "lena.berlin@example.com", "phone": "+49 30 7654321"}
    )
    assert body(again)["changed"] == []


def test_the_country_sent_with_the_number_wins_over_the_stored_one(system: LocalSystem) -> None:
    known_in(system, "moved.to.london@example.com", "DE")
    reply = admin(
        system,
        "POST",
        "/admin/contacts",
        {"email": "moved.to.london@example.com", "country": "gb", "phone": "020 7946 0958"},
    )
    assert reply["statusCode"] == 200, reply
    assert sorted(body(reply)["changed"]) == ["country", "phone"]
    profile_now = stored(system, "moved.to.london@example.com")
    assert (profile_now["country"], profile_now["phone"]) == ("GB", "+442079460958")


@pytest.mark.parametrize(
    ("email", "country", "phone", "message"),
    [
        # a contact without a stored country, and a new one: no region to read the number in
        ("no.country@example.com", None, "030 7654321", NO_COUNTRY),
        # not a number in the stored country (too short for Berlin)
        ("short.number@example.com", "DE", "030 12", "is not a valid phone number for its country"),
    ],
)
def test_a_national_number_that_cannot_be_read_is_a_400_naming_phone(
    system: LocalSystem, email: str, country: str | None, phone: str, message: str
) -> None:
    known_in(system, email, country, first_name="Kim")
    before = stored(system, email)
    reply = admin(system, "POST", "/admin/contacts", {"email": email, "phone": phone, "job_title": "CTO"})
    assert field_errors(reply) == {"phone": message}
    assert body(reply)["error"] == "invalid contact"
    assert stored(system, email) == before  # nothing of the request is stored, not even job_title
    new = admin(system, "POST", "/admin/contacts", {"email": f"new.{email}", "phone": "030 7654321"})
    assert field_errors(new) == {"phone": NO_COUNTRY}
    assert profiles_with_email(system, f"new.{email}") == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "phone",
            "+49 30 CALL-ME",
            "must be a phone number written in digits (letters are not read as keypad digits)",
        ),
        (
            "phone",
            "030 CALL-ME",
            "must be a phone number written in digits (letters are not read as keypad digits)",
        ),
        ("email", "@x.de", "is missing the part before the @ (the mailbox name)"),
        ("email", "max@", "is missing the domain after the @"),
        ("email", "max@example", "has an invalid domain"),
        ("country", "XX", "must be an ISO 3166-1 alpha-2 country code like DE or US"),
    ],
)
def test_a_form_and_the_admin_api_refuse_a_bad_value_with_the_same_message(
    system: LocalSystem, field: str, value: str, message: str
) -> None:
    """One formatter: no ``Value error, `` of pydantic's in any answer; ``POST /events`` too."""
    row = {"email": "same.message@example.com", field: value}
    via_form = field_errors(form(system, row | {"consent": True}))
    via_admin = field_errors(admin(system, "POST", "/admin/contacts", row))
    assert via_form[field] == via_admin[field] == message
    if field == "email":
        event = system.invoke_http(
            "POST", "/events", headers=JSON, body=json.dumps({"type": "identify", "email": value})
        )
        assert field_errors(event)["email"] == message
    assert profiles_with_email(system, "same.message@example.com") == []


def test_an_extension_is_accepted_as_before_and_not_stored(system: LocalSystem) -> None:
    reply = admin(
        system, "POST", "/admin/contacts", {"email": "ext@example.com", "phone": "+1 415 555 0123 ext. 12"}
    )
    assert reply["statusCode"] == 201, reply
    assert stored(system, "ext@example.com")["phone"] == "+14155550123"


def test_an_import_reads_a_national_number_in_the_row_s_country_else_the_stored_one(
    system: LocalSystem,
) -> None:
    known_in(system, "imp.known@example.com", "DE")
    known_in(system, "imp.nocountry@example.com", None)
    csv = (
        "email,country,phone\n"
        "imp.known@example.com,,030 7654321\n"  # the stored DE
        "imp.vienna@example.com,AT,01 5124567\n"  # a new contact: its row's country
        "imp.nocountry@example.com,,030 7654322\n"  # known, but no country anywhere
        "imp.new@example.com,,030 7654323\n"  # new, no country
        "imp.later@example.com,DE,\n"  # created by this row,
        "imp.later@example.com,,0170 1234567\n"  # then read in the country the row before stored
    )
    reply = admin(system, "POST", "/admin/contacts/import", raw=csv, content_type="text/csv")
    assert reply["statusCode"] == 200, reply
    report = body(reply)
    assert report["errors"] == [
        {"row": 3, "field": "phone", "message": NO_COUNTRY},
        {"row": 4, "field": "phone", "message": NO_COUNTRY},
    ]
    assert (report["created"], report["updated"], report["failed"]) == (2, 2, 2)
    assert stored(system, "imp.known@example.com")["phone"] == "+49307654321"
    assert stored(system, "imp.vienna@example.com")["phone"] == "+4315124567"
    assert "phone" not in stored(system, "imp.nocountry@example.com")
    assert profiles_with_email(system, "imp.new@example.com") == []
    assert stored(system, "imp.later@example.com")["phone"] == "+491701234567"


# --- the sign-up forms ----------------------------------------------------------------------------


def test_a_form_reads_a_national_number_in_the_stored_country(system: LocalSystem) -> None:
    contact_id = known_in(system, "form.known@example.com", "DE")
    reply = form(
        system,
        {"email": "form.known@example.com", "consent": True, "phone": "030 7654324", "sms_consent": True},
    )
    assert reply["statusCode"] == 201, reply
    assert body(reply)["contact_id"] == contact_id
    profile_now = stored(system, "form.known@example.com")
    assert (profile_now["phone"], profile_now["consent_sms"]) == ("+49307654324", "granted")
    assert phone_owner(system, "+49307654324") == contact_id


def test_a_double_opt_in_form_reads_consent_and_country_of_a_confirmed_contact(system: LocalSystem) -> None:
    """The whitepaper form asks a new subscriber to confirm; a contact who granted consent before is
    not asked again, and its national number is read in its stored country."""
    contact_id = known_in(
        system, "confirmed@example.com", "AT", consent_email="granted", consent_source="webinar 2026-02"
    )
    reply = form(
        system, {"email": "confirmed@example.com", "consent": True, "phone": "0664 1234567"}, "whitepaper"
    )
    assert reply["statusCode"] == 201, reply
    item = deserialize(profile(system, contact_id))
    assert (item["consent_email"], item["phone"]) == ("granted", "+436641234567")


def test_the_form_s_country_wins_over_the_stored_one(system: LocalSystem) -> None:
    known_in(system, "form.moved@example.com", "DE")
    reply = form(
        system,
        {"email": "form.moved@example.com", "consent": True, "country": "GB", "phone": "020 7946 0958"},
    )
    assert reply["statusCode"] == 201, reply
    profile_now = stored(system, "form.moved@example.com")
    assert (profile_now["country"], profile_now["phone"]) == ("GB", "+442079460958")


def test_a_form_without_any_country_refuses_a_national_number(system: LocalSystem) -> None:
    known_in(system, "form.nocountry@example.com", None, first_name="Ole")
    before = stored(system, "form.nocountry@example.com")
    for email in ("form.nocountry@example.com", "form.new@example.com"):
        reply = form(system, {"email": email, "consent": True, "phone": "030 7654325", "first_name": "Jo"})
        assert field_errors(reply) == {"phone": NO_COUNTRY}
        assert body(reply)["error"] == "invalid form submission"
    assert stored(system, "form.nocountry@example.com") == before
    assert profiles_with_email(system, "form.new@example.com") == []
    # a browser is sent back to the form, told which field to fix
    browser = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers=BROWSER,
        body=urlencode({"email": "form.new@example.com", "consent": "on", "phone": "030 7654325"}),
    )
    assert browser["statusCode"] == 303
    assert parse_qs(urlsplit(browser["headers"]["Location"]).query)["error"] == ["phone"]
    assert profiles_with_email(system, "form.new@example.com") == []


def test_a_form_refuses_a_number_that_is_not_valid_in_the_stored_country(system: LocalSystem) -> None:
    known_in(system, "form.short@example.com", "DE")
    reply = form(system, {"email": "form.short@example.com", "consent": True, "phone": "030 12"})
    assert field_errors(reply) == {"phone": "is not a valid phone number for its country"}
    assert "phone" not in stored(system, "form.short@example.com")


def test_a_search_finds_an_internationalized_domain_as_typed_or_as_stored(system: LocalSystem) -> None:
    """``max@faß.de`` is stored as ``max@xn--fa-hia.de``; an operator searches the way people write it."""
    created = admin(system, "POST", "/admin/contacts", {"email": "idn-search@faß.de", "first_name": "Max"})
    assert created["statusCode"] in (200, 201), created
    for q in ("faß", "FAß.DE", "idn-search@faß.de", "xn--fa-hia", "idn-search"):
        found = body(admin(system, "GET", "/admin/contacts", query=urlencode({"q": q, "limit": 500})))
        assert "idn-search@xn--fa-hia.de" in [c["email"] for c in found["contacts"]], q
    fass = body(admin(system, "GET", "/admin/contacts", query=urlencode({"q": "idn-search@fass.de"})))
    assert fass["contacts"] == []  # another domain
