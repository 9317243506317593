"""The spine, end to end on the local system: a visitor signs up through the HTML form, gets the
welcome email, and two virtual days later exactly one follow-up — the branch their behaviour chose."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from tests.e2e.conftest import Site


def sign_up(site: Site, email: str, first_name: str, visitor_id: str) -> None:
    page = site.get(f"/t/p.gif?{urlencode({'vid': visitor_id, 'url': 'http://127.0.0.1/'})}")
    assert page.status == 200
    assert page.headers["Content-Type"] == "image/gif"
    reply = site.post_form(
        "/forms/newsletter",
        urlencode({"email": email, "first_name": first_name, "consent": "on", "visitor_id": visitor_id}),
    )
    assert reply.status == 303
    assert reply.headers["Location"] == "/thanks"


def mails_to(site: Site, address: str) -> list[dict[str, object]]:
    return [m for m in site.outbox() if address in m["to"]]  # type: ignore[operator]


def links_in(html: str, kind: str) -> list[str]:
    return re.findall(rf'(http://127\.0\.0\.1:\d+/t/{kind}/[^"]+)"', html)


def execution_of(site: Site, contact_hint: str) -> list[dict[str, object]]:
    return [e for e in site.executions() if e["journey"] == "welcome" and contact_hint in str(e["name"])]


def test_demo_page_carries_the_snippet_and_the_form(site: Site) -> None:
    page = site.get("/")
    assert page.status == 200
    html = page.body.decode()
    assert '<script async src="/t/lf.js"></script>' in html
    assert 'action="/forms/newsletter"' in html
    snippet = site.get("/t/lf.js")
    assert snippet.status == 200
    assert b"/t/p.gif?" in snippet.body


def test_engaged_subscriber_gets_welcome_then_the_engaged_follow_up(site: Site) -> None:
    sign_up(site, "ada@example.com", "Ada", "v-ada-0000001")
    [welcome] = mails_to(site, "ada@example.com")
    assert welcome["subject"] == "Welcome to Northwind Analytics, Ada!"
    headers = welcome["headers"]
    assert isinstance(headers, dict)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.match(r"<http://127\.0\.0\.1:\d+/unsubscribe/[\w.-]+>, <mailto:", headers["List-Unsubscribe"])
    html = str(welcome["html"])
    [pixel] = links_in(html, "o")
    clicks = links_in(html, "c")
    assert len(clicks) >= 4

    # the open pixel answers with the GIF; the click redirects to the sealed destination
    opened = site.get(urlsplit(pixel).path)
    assert (opened.status, opened.headers["Content-Type"], len(opened.body)) == (200, "image/gif", 43)
    click = site.get(urlsplit(clicks[-1]).path)
    assert click.status == 302
    assert click.headers["Location"].startswith("https://example.com/")
    again = site.get(urlsplit(clicks[-1]).path)
    assert again.status == 302
    assert again.headers["Location"] == click.headers["Location"]

    # a tampered link never redirects
    token = urlsplit(clicks[-1]).path.rsplit("/", 1)[1]
    body, mac = token.split(".")
    tampered = site.get(f"/t/c/{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{mac}")
    assert tampered.status == 400
    assert "Location" not in tampered.headers
    assert tampered.json()["error"] == "invalid or tampered link"

    # two days later: exactly one follow-up, the engaged branch
    advanced = site.advance(2 * 86400)
    assert advanced.status == 200
    mails = mails_to(site, "ada@example.com")
    assert [m["subject"] for m in mails] == [
        "Welcome to Northwind Analytics, Ada!",
        "Ada, your next step: the attribution workshop",
    ]
    [execution] = [
        e
        for e in site.executions()
        if e["status"] == "SUCCEEDED" and _contact_of(site, "ada@example.com") in str(e["name"])
    ]
    # one task decided the engaged path, sent its follow-up and ended the execution
    assert execution["state"] == "Evaluate: Opened or clicked the welcome email?"


def _contact_of(site: Site, email: str) -> str:
    contact_id = site.system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"EMAIL#{email}"}, "sk": {"S": "EMAIL"}}
    )["Item"]["contact_id"]["S"]
    return str(contact_id)


def test_unengaged_subscriber_gets_the_nudge_and_a_second_sign_up_does_not_re_enrol(site: Site) -> None:
    sign_up(site, "grace@example.com", "", "v-grace-000001")
    [welcome] = mails_to(site, "grace@example.com")
    assert welcome["subject"] == "Welcome to Northwind Analytics, there!"
    sign_up(site, "Grace@Example.com", "Grace", "v-grace-000002")  # same person again, on another device
    contact = _contact_of(site, "grace@example.com")
    assert len([e for e in site.executions() if contact in str(e["name"])]) == 1
    assert len(mails_to(site, "grace@example.com")) == 1
    site.advance(2 * 86400)
    subjects = [m["subject"] for m in mails_to(site, "grace@example.com")]
    assert subjects == [
        "Welcome to Northwind Analytics, there!",
        "In case you missed it, Grace: 3 playbooks in 5 minutes",
    ]


def test_one_click_unsubscribe_stops_further_marketing_email(site: Site) -> None:
    sign_up(site, "alan@example.com", "Alan", "v-alan-0000001")
    [welcome] = mails_to(site, "alan@example.com")
    headers = welcome["headers"]
    assert isinstance(headers, dict)
    target = re.match(r"<([^>]+)>", headers["List-Unsubscribe"])
    assert target is not None
    path = urlsplit(target.group(1)).path
    confirm = site.get(path)
    assert confirm.status == 200
    assert b"Unsubscribe" in confirm.body
    done = site.request(
        "POST", path, b"List-Unsubscribe=One-Click", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert done.status == 200
    assert b"You have been unsubscribed" in done.body
    site.advance(2 * 86400)
    assert len(mails_to(site, "alan@example.com")) == 1  # the follow-up was skipped: no consent
    contact = _contact_of(site, "alan@example.com")
    [execution] = [e for e in site.executions() if contact in str(e["name"])]
    # the unsubscribe ended the execution at once, in its 2-day wait (stopped on purpose)
    assert (execution["status"], execution["state"]) == ("ABORTED", "Wait 2 days")
    profile = site.system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    assert profile["consent_email"]["S"] == "revoked"


def test_invalid_sign_ups_store_nothing(site: Site) -> None:
    before = site.system.client("dynamodb").scan(TableName="leadflow-local-contacts")["Count"]
    browser = site.post_form("/forms/newsletter", urlencode({"email": "not-an-email", "consent": "on"}))
    assert browser.status == 303
    assert browser.headers["Location"] == "/?error=email"
    no_consent = site.post_json("/forms/newsletter", {"email": "x@example.com"})
    assert no_consent.status == 400
    assert no_consent.json()["fields"] == [{"field": "consent", "message": "consent is required to sign up"}]
    bad_json = site.post_json("/forms/newsletter", {"email": "nope"})
    assert bad_json.status == 400
    assert bad_json.json()["fields"][0]["field"] == "email"
    unknown_form = site.post_json("/forms/nope", {"email": "x@example.com", "consent": True})
    assert unknown_form.status == 404
    assert site.system.client("dynamodb").scan(TableName="leadflow-local-contacts")["Count"] == before


def test_clock_advance_validates_its_input(site: Site) -> None:
    for body in ({"seconds": -1}, {"seconds": "x"}, {}, [1]):
        reply = site.post_json("/_local/clock/advance", body)
        assert reply.status == 400
        assert reply.json()["fields"][0]["field"] == "seconds"
    assert site.request("POST", "/_local/clock/advance", b"{not json").status == 400
