"""The public surface against the running local server (``make run``), as a bot, a mail-bomber, a
forger and an integration meet it: the honeypot, the per-network sign-up budget, the visitor
cookie on a plain form, public vs server events, the refusals on the dashboard figures."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import urlencode

from tests.e2e.conftest import Site

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def contact_id_of(site: Site, email: str) -> str | None:
    item = (
        site.system.client("dynamodb")
        .get_item(
            TableName="leadflow-local-contacts", Key={"pk": {"S": f"EMAIL#{email}"}, "sk": {"S": "EMAIL"}}
        )
        .get("Item")
    )
    return str(item["contact_id"]["S"]) if item else None


def test_the_demo_form_and_the_snippet_carry_the_honeypot_and_the_stamp(site: Site) -> None:
    html = site.get("/").body.decode()
    assert 'name="website_url"' in html
    assert 'tabindex="-1"' in html
    snippet = site.get("/t/lf.js").body.decode()
    assert "website_url" in snippet
    assert "/t/stamp" in snippet
    stamp = site.get("/t/stamp")
    assert stamp.status == 200
    assert stamp.json()["stamp"].count(".") == 1


def test_a_bot_filling_the_honeypot_is_answered_like_a_person(site: Site) -> None:
    person = site.post_form(
        "/forms/newsletter", urlencode({"email": "e2e-person@hp.example", "consent": "on", "website_url": ""})
    )
    bot = site.post_form(
        "/forms/newsletter",
        urlencode({"email": "e2e-victim@hp.example", "consent": "on", "website_url": "https://spam.example"}),
    )
    assert (
        (bot.status, bot.headers["Location"])
        == (person.status, person.headers["Location"])
        == (303, "/thanks")
    )
    assert contact_id_of(site, "e2e-victim@hp.example") is None
    assert not [m for m in site.outbox() if "e2e-victim@hp.example" in m["to"]]
    assert site.get("/_local/figures").json()["refusals"]["honeypot"] >= 1


def test_thirty_sign_ups_from_one_network_send_at_most_ten_confirmations(site: Site) -> None:
    answers = Counter(
        f"{r.status} {r.headers.get('Location')}"
        for r in (
            site.post_form(
                "/forms/whitepaper", urlencode({"email": f"bombed{i}@e2e-victim.example", "consent": "on"})
            )
            for i in range(30)
        )
    )
    # every request comes from 127.0.0.1; the newsletter sign-up of the test before spent none of
    # the whitepaper form's budget (budgets are per form)
    assert answers == {"303 /thanks": 10, "303 /?error=rate_limited": 20}
    confirmations = [m for m in site.outbox() if any("e2e-victim.example" in to for to in m["to"])]
    assert len(confirmations) == 10
    assert site.get("/_local/figures").json()["refusals"]["rate_limited"] == 20
    # the demo page says what happened
    page = site.get("/?error=rate_limited").body.decode()
    assert "Too many sign-ups from your network" in page


def test_a_plain_form_links_the_visitor_from_the_cookie(site: Site) -> None:
    pixel = site.get("/t/p.gif?" + urlencode({"url": "https://www.example.com/pricing"}))
    cookie = pixel.headers["Set-Cookie"].split(";")[0]
    vid = cookie.removeprefix("lf_vid=")
    reply = site.request(
        "POST",
        "/forms/newsletter",
        urlencode({"email": "cookie@e2e.example", "consent": "on"}).encode(),
        FORM | {"Cookie": f"other=1; {cookie}"},
    )
    assert reply.status == 303
    link = site.system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"V#{vid}"}, "sk": {"S": "LINK"}}
    )
    assert link["Item"]["contact_id"]["S"] == contact_id_of(site, "cookie@e2e.example")


def test_business_events_come_from_servers_only(site: Site) -> None:
    for kind in ("purchase", "deal_won", "trial_started"):
        event = {"type": kind, "email": f"{kind}@e2e-forger.example", "properties": {"revenue": 100000}}
        public = site.post_json("/events", event)
        assert public.status == 403
        assert "must come from a server" in public.json()["error"]
        assert site.post_json("/admin/events", event).status == 403
        admin = site.request(
            "POST",
            "/admin/events",
            json.dumps(event).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {site.system.admin_key}"},
        )
        assert admin.status == 202, admin.body
        assert admin.json()["status"] == "accepted"
    assert site.post_json("/events", {"type": "video_played", "visitor_id": "v-e2e-video-01"}).status == 202
