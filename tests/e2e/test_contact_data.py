"""Contact data over HTTP, as a browser and an operator meet the running local system: a phone
number typed the national way on the sign-up form is read in the contact's stored country, the
form's own country wins, and without any country the browser is sent back to fix ``phone``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.e2e.conftest import Reply, Site

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def upsert(site: Site, contact: dict[str, Any]) -> Reply:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {site.system.admin_key}"}
    return site.request("POST", "/admin/contacts", json.dumps(contact).encode(), headers)


def stored_profile(site: Site, contact_id: str) -> dict[str, Any]:
    reply = site.request(
        "GET", f"/admin/contacts/{contact_id}", headers={"Authorization": f"Bearer {site.system.admin_key}"}
    )
    assert reply.status == 200, reply
    profile: dict[str, Any] = reply.json()["profile"]
    return profile


def sign_up(site: Site, **fields: str) -> Reply:
    return site.post_form("/forms/newsletter", urlencode({"consent": "on", **fields}))


def test_a_browser_sign_up_reads_a_national_number_in_the_stored_country(site: Site) -> None:
    known = upsert(site, {"email": "anna@e2e-phone.example", "country": "DE"})
    assert known.status == 201, known
    contact_id = known.json()["contact_id"]
    reply = sign_up(site, email="Anna@E2E-Phone.example", phone="(030) 765 43 21")
    assert reply.status == 303, reply
    assert reply.headers["Location"].endswith("/thanks")
    assert stored_profile(site, contact_id)["phone"] == "+49307654321"
    # the form's own country wins over the stored one
    moved = sign_up(site, email="anna@e2e-phone.example", country="GB", phone="020 7946 0958")
    assert moved.status == 303, moved
    now = stored_profile(site, contact_id)
    assert (now["country"], now["phone"]) == ("GB", "+442079460958")


def test_without_any_country_the_browser_is_sent_back_to_fix_the_phone(site: Site) -> None:
    reply = sign_up(site, email="nobody-knows@e2e-phone.example", phone="030 7654321")
    assert reply.status == 303, reply
    assert parse_qs(urlsplit(reply.headers["Location"]).query)["error"] == ["phone"]
    json_client = site.post_json(
        "/forms/newsletter",
        {"email": "nobody-knows@e2e-phone.example", "consent": True, "phone": "030 7654321"},
    )
    assert json_client.status == 400
    assert json_client.json()["fields"] == [
        {
            "field": "phone",
            "message": "must be a phone number in international format, e.g. +14155550123 "
            "(or give the contact's country)",
        }
    ]
    lookup = site.request(
        "POST",
        "/admin/contacts/lookup",
        json.dumps({"email": "nobody-knows@e2e-phone.example"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {site.system.admin_key}"},
    )
    assert lookup.status == 404  # nothing was stored
