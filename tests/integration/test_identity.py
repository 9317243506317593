"""Identity: anonymous browsing becomes a contact's history when the visitor is identified (form,
POST /events, email click with the visitor cookie); two contacts that are one person merge
without losing an event."""

from __future__ import annotations

import json
from typing import Any

from leadflow.local.system import LocalSystem, resource_name
from leadflow.platform.tokens import KeyRing, TokenClaims, TokenSigner
from tests.integration.conftest import profile, sign_up
from tests.integration.test_contacts_api import admin, body


def page_view(system: LocalSystem, vid: str, url: str) -> None:
    reply = system.invoke_http("GET", "/t/p.gif", query=f"vid={vid}&url={url}")
    assert reply["statusCode"] == 200


def post_event(system: LocalSystem, payload: dict[str, Any]) -> dict[str, Any]:
    return system.invoke_http(
        "POST", "/events", headers={"content-type": "application/json"}, body=json.dumps(payload)
    )


def timeline(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    reply = admin(system, "GET", f"/admin/contacts/{contact_id}/timeline", query="limit=500")
    assert reply["statusCode"] == 200, reply
    result: dict[str, Any] = body(reply)
    return result


def link_of(system: LocalSystem, vid: str) -> str | None:
    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"V#{vid}"}, "sk": {"S": "LINK"}}
    )
    return item["Item"]["contact_id"]["S"] if "Item" in item else None


def test_anonymous_pages_then_sign_up_then_second_device(system: LocalSystem) -> None:
    for path in ("/", "/pricing", "/features"):
        page_view(system, "v-ident-desk-01", f"https://www.example.com{path}")
    contact_id = sign_up(system, "ident.person@example.com", visitor_id="v-ident-desk-01")

    first = timeline(system, contact_id)
    urls = [e["properties"].get("url") for e in first["events"] if e["type"] == "page_viewed"]
    assert sorted(urls) == sorted(f"https://www.example.com{p}" for p in ("/", "/pricing", "/features"))
    identified = [e for e in first["events"] if e["type"] == "contact_identified"]
    assert [e["properties"] for e in identified] == [{"visitor_id": "v-ident-desk-01"}]
    assert link_of(system, "v-ident-desk-01") == contact_id

    # a second device browses, then identifies through the events API
    page_view(system, "v-ident-phone-1", "https://www.example.com/blog")
    reply = post_event(
        system, {"type": "identify", "email": "IDENT.person@example.com", "visitor_id": "v-ident-phone-1"}
    )
    assert reply["statusCode"] == 202, reply
    again = post_event(
        system, {"type": "identify", "email": "ident.person@example.com", "visitor_id": "v-ident-phone-1"}
    )
    assert again["statusCode"] == 202
    second = timeline(system, contact_id)
    assert second["visitor_ids"] == ["v-ident-desk-01", "v-ident-phone-1"]
    assert "https://www.example.com/blog" in [e["properties"].get("url") for e in second["events"]]
    assert (
        len([e for e in second["events"] if e["type"] == "contact_identified"]) == 2
    )  # not one per identify
    assert {e["type"] for e in second["events"]} >= {"form_submitted", "identify", "page_viewed"}

    # a shared device: someone else signs up on the first computer; the first link stays
    other = sign_up(system, "ident.colleague@example.com", visitor_id="v-ident-desk-01")
    assert link_of(system, "v-ident-desk-01") == contact_id
    assert "visitor_ids" not in profile(system, other)
    assert not [e for e in timeline(system, other)["events"] if e["type"] == "page_viewed"]


def test_a_click_with_the_visitor_cookie_links_the_visitor(system: LocalSystem) -> None:
    contact_id = sign_up(system, "ident.clicker@example.com", visitor_id="v-ident-clk-000")
    page_view(system, "v-ident-clk-new", "https://www.example.com/pricing")
    secret = system.client("secretsmanager").get_secret_value(SecretId=resource_name("signing-key"))
    signer = TokenSigner(lambda refresh: KeyRing.parse(secret["SecretString"]).keys)
    token = signer.sign(
        TokenClaims(k="click", m="m-ident-1", c=contact_id, u="https://www.example.com/offer")  # type: ignore[call-arg]
    )
    reply = system.invoke_http("GET", f"/t/c/{token}", headers={"cookie": "lf_vid=v-ident-clk-new"})
    assert reply["statusCode"] == 302, reply
    assert link_of(system, "v-ident-clk-new") == contact_id
    events = timeline(system, contact_id)["events"]
    assert {"email_clicked", "contact_identified"} <= {e["type"] for e in events}
    assert "https://www.example.com/pricing" in [e["properties"].get("url") for e in events]
    # a second click changes nothing about the link
    system.invoke_http("GET", f"/t/c/{token}", headers={"cookie": "lf_vid=v-ident-clk-new"})
    assert len([e for e in timeline(system, contact_id)["events"] if e["type"] == "contact_identified"]) == 2


def test_merging_two_contacts_keeps_every_event(system: LocalSystem) -> None:
    page_view(system, "v-merge-a-0001", "https://www.example.com/a")
    survivor = sign_up(system, "merge.work@example.com", first_name="Kim", visitor_id="v-merge-a-0001")
    page_view(system, "v-merge-b-0001", "https://www.example.com/b")
    duplicate = sign_up(system, "merge.home@example.com", first_name="Kimberly", visitor_id="v-merge-b-0001")
    admin(
        system,
        "POST",
        "/admin/contacts",
        {"email": "merge.home@example.com", "company": "Acme", "tags": ["home"]},
    )
    reply = system.invoke_http(  # a server event: the admin route
        "POST",
        "/admin/events",
        headers={"content-type": "application/json", "authorization": f"Bearer {system.admin_key}"},
        body=json.dumps({"type": "webinar_attended", "email": "merge.home@example.com"}),
    )
    assert reply["statusCode"] == 202, reply
    before = {e["event_id"] for c in (survivor, duplicate) for e in timeline(system, c)["events"]}

    reply = admin(system, "POST", f"/admin/contacts/{survivor}/merge", {"duplicate_id": duplicate})
    assert reply["statusCode"] == 200, reply
    assert body(reply)["changed"] is True
    assert "company" in body(reply)["filled"]

    merged = timeline(system, survivor)
    after = {e["event_id"] for e in merged["events"]}
    assert before <= after
    assert "contacts_merged" in {e["type"] for e in merged["events"]}
    assert merged["merged_ids"] == [duplicate]
    assert merged["visitor_ids"] == ["v-merge-a-0001", "v-merge-b-0001"]
    assert merged["profile"]["first_name"] == "Kim"
    assert merged["profile"]["company"] == "Acme"
    assert merged["profile"]["alt_emails"] == ["merge.home@example.com"]
    assert link_of(system, "v-merge-b-0001") == survivor

    tomb = profile(system, duplicate)
    assert tomb["merged_into"]["S"] == survivor
    assert "email" not in tomb
    assert "first_name" not in tomb
    lookup = admin(system, "POST", "/admin/contacts/lookup", {"email": "merge.home@example.com"})
    assert body(lookup) == {"contact_id": survivor}
    # a later sign-up with the duplicate's address lands on the survivor
    assert sign_up(system, "merge.home@example.com", visitor_id="v-merge-b-0001") == survivor
    # reading the duplicate shows the survivor
    assert body(admin(system, "GET", f"/admin/contacts/{duplicate}"))["contact_id"] == survivor

    replay = admin(system, "POST", f"/admin/contacts/{survivor}/merge", {"duplicate_id": duplicate})
    assert replay["statusCode"] == 200
    assert body(replay)["changed"] is False
    backwards = admin(system, "POST", f"/admin/contacts/{duplicate}/merge", {"duplicate_id": survivor})
    assert backwards["statusCode"] == 409
    itself = admin(system, "POST", f"/admin/contacts/{survivor}/merge", {"duplicate_id": survivor})
    assert itself["statusCode"] == 400
    assert body(itself)["fields"][0]["field"] == "duplicate_id"
    unknown = admin(system, "POST", f"/admin/contacts/{survivor}/merge", {"duplicate_id": "c0000nobody"})
    assert unknown["statusCode"] == 404
    assert len([e for e in timeline(system, survivor)["events"] if e["type"] == "contacts_merged"]) == 1

    # the privacy export of the survivor holds the merged contact's events too
    export = body(admin(system, "GET", f"/admin/contacts/{survivor}/export"))
    assert {e["event_id"] for e in export["events"] + export["anonymous_events"]} >= before
