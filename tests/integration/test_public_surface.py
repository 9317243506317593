"""The public surface under abuse, through the real ``track`` and ``admin`` handlers on moto (HTTP
API v2 events): the forms' honeypot, render stamp, budgets and CAPTCHA; events split by trust
(browser types on ``POST /events``, server facts on ``POST /admin/events``); the visitor linked
from the ``lf_vid`` cookie; every refusal counted and logged without personal data."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest

from leadflow import wiring
from leadflow.capture import protection
from leadflow.local import system as local_system
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem
from leadflow.platform.tables import keys

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}
TABLES = ("contacts", "events", "messages", "idempotency")
CAPTCHA_SECRET = "0x-captcha-secret-for-tests"
GOOD_RESPONSE = "solved-by-a-person"

EXTRA_FORMS = {
    # no journey enters on it and it has no double opt-in: its sign-ups send no email
    "contact": {
        "thank_you_url": "/thanks",
        "error_url": "/contact",
        "consent_required": False,
        "consent_text": "We answer your question by email; no newsletter unless you tick the box.",
    },
    # a stage's own settings for a form: a small domain budget, a minimum fill time, a CAPTCHA
    "webinar": {
        "thank_you_url": "/thanks",
        "error_url": "/webinar",
        "consent_required": True,
        "double_opt_in": True,
        "consent_text": "Yes, register me for the webinar and send me the newsletter.",
        "budget": {"per_source_per_hour": 3, "per_recipient_domain_per_hour": 4},
    },
    "guarded": {
        "thank_you_url": "/thanks",
        "error_url": "/guarded",
        "consent_required": True,
        "double_opt_in": True,
        "consent_text": "Yes, send me the guide and the Northwind Analytics newsletter.",
        "min_fill_seconds": 3,
        "budget": {"per_source_per_hour": 2},
        "captcha": {
            "provider": "turnstile",
            "site_key": "0x-site-key",
            "secret_id": "leadflow-local-captcha",
        },
    },
}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    base_env = local_system.settings_env

    def stage_env(*args: Any, **kwargs: Any) -> dict[str, str]:
        env = base_env(*args, **kwargs)
        env["LEADFLOW_FORMS"] = json.dumps(json.loads(env["LEADFLOW_FORMS"]) | EXTRA_FORMS)
        return env

    local_system.settings_env = stage_env  # type: ignore[assignment]
    try:
        with LocalSystem(background_pump=False) as local:
            local.client("secretsmanager").create_secret(
                Name="leadflow-local-captcha", SecretString=CAPTCHA_SECRET
            )
            yield local
    finally:
        local_system.settings_env = base_env  # type: ignore[assignment]


class FakeSiteverify(BaseHTTPRequestHandler):
    """A CAPTCHA provider's siteverify endpoint on loopback: success only for the right secret and
    the response a person's widget produced."""

    calls: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        fields = dict(parse_qsl(self.rfile.read(length).decode()))
        FakeSiteverify.calls.append(fields)
        ok = fields.get("secret") == CAPTCHA_SECRET and fields.get("response") == GOOD_RESPONSE
        body = json.dumps({"success": ok, "error-codes": [] if ok else ["invalid-input-response"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def siteverify(system: LocalSystem) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSiteverify)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/turnstile/v0/siteverify"
    service = system.modules["track"].service
    production = service.captcha
    service.captcha = wiring.captcha_verifier(endpoints={"turnstile": url})
    try:
        yield url
    finally:
        service.captcha = production
        server.shutdown()
        server.server_close()


def counts(system: LocalSystem) -> dict[str, int]:
    ddb = system.client("dynamodb")
    return {
        t: int(ddb.scan(TableName=f"leadflow-local-{t}", Select="COUNT")["Count"])
        for t in ("contacts", "events", "messages")
    }


def contact_by_email(system: LocalSystem, email: str) -> str | None:
    item = (
        system.client("dynamodb")
        .get_item(
            TableName="leadflow-local-contacts", Key={"pk": {"S": keys.email(email)}, "sk": {"S": "EMAIL"}}
        )
        .get("Item")
    )
    return str(item["contact_id"]["S"]) if item else None


def mails_to(system: LocalSystem, domain: str) -> list[dict[str, Any]]:
    system.settle()
    return [m for m in system.outbox() if any(domain in to for to in m["to"])]


def post_form(system: LocalSystem, form: str, source_ip: str, **fields: str) -> dict[str, Any]:
    fields.setdefault("consent", "on")
    return system.invoke_http(
        "POST", f"/forms/{form}", headers=FORM, body=urlencode(fields), source_ip=source_ip
    )


def admin_events(system: LocalSystem, payload: Any, *, key: str | None = None) -> dict[str, Any]:
    headers = JSON | ({"authorization": f"Bearer {key}"} if key else {})
    return system.invoke_http("POST", "/admin/events", headers=headers, body=json.dumps(payload))


# --- honeypot ---------------------------------------------------------------------------------------


def test_a_bot_filling_the_honeypot_gets_the_same_answer_and_nothing_is_stored_or_sent(
    system: LocalSystem,
) -> None:
    before, refused = counts(system), protection.refusals["honeypot"]
    person = post_form(system, "newsletter", "203.0.113.10", email="person@honeypot.example", website_url="")
    after_person = counts(system)
    bot = post_form(
        system,
        "newsletter",
        "203.0.113.11",
        email="victim@honeypot.example",
        website_url="http://spam.example",
    )
    assert (bot["statusCode"], bot["headers"]["Location"]) == (
        person["statusCode"],
        person["headers"]["Location"],
    )
    assert bot["headers"]["Location"] == "/thanks"
    assert counts(system) == after_person != before
    assert contact_by_email(system, "victim@honeypot.example") is None
    [mail] = mails_to(system, "honeypot.example")
    assert set(mail["to"]) == {"person@honeypot.example"}
    assert protection.refusals["honeypot"] == refused + 1
    # a JSON client filling it gets a 201 with a contact id, as a person does, and nothing is stored
    reply = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers=JSON,
        body=json.dumps({"email": "victim2@honeypot.example", "consent": True, "website_url": "x"}),
    )
    assert reply["statusCode"] == 201
    assert json.loads(reply["body"])["contact_id"]
    assert contact_by_email(system, "victim2@honeypot.example") is None


# --- budgets ----------------------------------------------------------------------------------------


def test_thirty_double_opt_in_sign_ups_from_one_source_send_at_most_ten_emails(system: LocalSystem) -> None:
    before = counts(system)
    replies = [
        post_form(system, "whitepaper", "198.51.100.23", email=f"stranger{i}@bomb.example", first_name="X")
        for i in range(30)
    ]
    locations = [r["headers"]["Location"] for r in replies]
    assert all(r["statusCode"] == 303 for r in replies)
    assert locations[:10] == ["/thanks"] * 10
    assert locations[10:] == ["/?error=rate_limited"] * 20
    # the same network, another address in it: the budget is the network's (/24, as IPs are stored)
    assert (
        post_form(system, "whitepaper", "198.51.100.99", email="more@bomb.example")["headers"]["Location"]
        == "/?error=rate_limited"
    )
    confirmations = mails_to(system, "bomb.example")
    assert len(confirmations) == 10
    assert {m["subject"] for m in confirmations} == {confirmations[0]["subject"]}
    # nothing half-done: no contact, consent, event or message of a refused post
    for i in range(10, 30):
        assert contact_by_email(system, f"stranger{i}@bomb.example") is None
    profiles = [i for i in system.contacts() if str(i.get("email", "")).endswith("@bomb.example")]
    assert len(profiles) == 10
    assert {p["consent_email"] for p in profiles} == {"pending"}
    accepted = {str(contact_by_email(system, f"stranger{i}@bomb.example")) for i in range(10)}
    items = system.client("dynamodb").scan(TableName="leadflow-local-contacts")["Items"]
    bomb_items = [i for i in items if "bomb.example" in i["pk"]["S"] or i["pk"]["S"][2:] in accepted]
    assert {i["pk"]["S"][2:] for i in bomb_items if i["pk"]["S"].startswith("C#")} == accepted
    assert sum(1 for i in bomb_items if i["sk"]["S"].startswith("CONSENT")) == 10
    assert not [i for i in items if any(f"stranger{n}@" in json.dumps(i) for n in range(10, 30))]
    forms = [
        e
        for e in system.client("dynamodb").scan(TableName="leadflow-local-events")["Items"]
        if e["type"]["S"] == "form_submitted"
        and e.get("properties", {}).get("M", {}).get("form_id", {}).get("S") == "whitepaper"
    ]
    assert len(forms) == 10
    assert counts(system)["messages"] - before["messages"] == 10  # one confirmation each, nothing else
    # another network still signs up; a JSON client over budget gets 429 with Retry-After
    assert (
        post_form(system, "whitepaper", "192.0.2.1", email="other@bomb.example")["headers"]["Location"]
        == "/thanks"
    )
    reply = system.invoke_http(
        "POST",
        "/forms/whitepaper",
        headers=JSON,
        body=json.dumps({"email": "json@bomb.example", "consent": True}),
        source_ip="198.51.100.23",
    )
    assert reply["statusCode"] == 429, reply
    assert json.loads(reply["body"])["reason"] == "rate_limited"
    assert 0 < int(reply["headers"]["Retry-After"]) <= 3600
    # the next hour the network has its budget again
    system.advance(int(reply["headers"]["Retry-After"]) + 1)
    later = post_form(system, "whitepaper", "198.51.100.23", email="next-hour@bomb.example")
    assert later["headers"]["Location"] == "/thanks"


def test_the_recipient_domain_budget_holds_across_sources(system: LocalSystem) -> None:
    """The ``webinar`` form: at most 4 sign-ups per hour to one domain, from however many networks."""
    locations = [
        post_form(system, "webinar", f"203.0.{i}.5", email=f"staff{i}@victim-corp.example")["headers"][
            "Location"
        ]
        for i in range(7)
    ]
    assert locations == ["/thanks"] * 4 + ["/webinar?error=rate_limited"] * 3
    assert len(mails_to(system, "victim-corp.example")) == 4
    # the key holds no domain in clear
    items = system.client("dynamodb").scan(TableName="leadflow-local-idempotency")["Items"]
    budget_keys = [i["pk"]["S"] for i in items if i["pk"]["S"].startswith("BUDGET#webinar#")]
    assert budget_keys
    assert not any("victim-corp" in k for k in budget_keys)
    assert all("expires_at" in i for i in items if i["pk"]["S"].startswith("BUDGET#"))


def test_forms_whose_sign_ups_send_no_email_spend_no_budget(system: LocalSystem) -> None:
    track = system.modules["track"].service
    assert track.sends_email("newsletter")  # the welcome journey enters on it
    assert track.sends_email("whitepaper")  # double opt-in: the confirmation
    assert not track.sends_email("contact")
    locations = [
        post_form(system, "contact", "100.64.50.1", email=f"asker{i}@questions.example")["headers"][
            "Location"
        ]
        for i in range(12)
    ]
    assert locations == ["/thanks"] * 12
    assert mails_to(system, "questions.example") == []


# --- render stamp, CAPTCHA ---------------------------------------------------------------------------


def stamp(system: LocalSystem) -> str:
    reply = system.invoke_http("GET", "/t/stamp")
    assert reply["statusCode"] == 200
    assert reply["headers"]["Cache-Control"] == "no-store"
    value: str = json.loads(reply["body"])["stamp"]
    return value


def test_a_form_sent_faster_than_a_person_types_is_dropped_and_an_expired_one_refused(
    system: LocalSystem, siteverify: str
) -> None:
    rendered = stamp(system)
    fast = post_form(system, "guarded", "192.0.2.50", email="fast@stamp.example", lf_stamp=rendered)
    assert fast["headers"]["Location"] == "/thanks"  # answered like a person, nothing stored
    assert contact_by_email(system, "fast@stamp.example") is None
    system.advance(4)
    slow = post_form(system, "guarded", "192.0.2.50", email="slow@stamp.example", lf_stamp=rendered)
    assert slow["headers"]["Location"] == "/thanks"
    assert contact_by_email(system, "slow@stamp.example") is not None
    at, mac = rendered.split(".")
    for bad in ("", f"{int(at) - 10}.{mac}", f"{at}.{mac[:-2]}AA", "1.2.3"):
        reply = post_form(system, "guarded", "192.0.2.51", email="forged@stamp.example", lf_stamp=bad)
        assert reply["headers"]["Location"] == "/guarded?error=form_expired", bad
    assert contact_by_email(system, "forged@stamp.example") is None


def test_over_budget_a_form_with_a_captcha_asks_for_it_and_a_solved_one_lets_a_person_in(
    system: LocalSystem, siteverify: str
) -> None:
    rendered = stamp(system)
    system.advance(5)
    ip = "100.64.7.77"  # a network of its own (192.0.2.0/24 signed up in the test before)
    first = [
        post_form(system, "guarded", ip, email=f"p{i}@captcha.example", lf_stamp=rendered)["headers"][
            "Location"
        ]
        for i in range(2)
    ]
    assert first == ["/thanks", "/thanks"]
    asked = post_form(system, "guarded", ip, email="p2@captcha.example", lf_stamp=rendered)
    query = parse_qs(urlsplit(asked["headers"]["Location"]).query)
    assert query == {"error": ["captcha_required"], "captcha": ["turnstile"], "site_key": ["0x-site-key"]}
    calls = len(FakeSiteverify.calls)
    wrong = post_form(
        system,
        "guarded",
        ip,
        email="p2@captcha.example",
        lf_stamp=rendered,
        **{"cf-turnstile-response": "bot"},
    )
    assert urlsplit(wrong["headers"]["Location"]).query.startswith("error=captcha_failed")
    assert contact_by_email(system, "p2@captcha.example") is None
    solved = post_form(
        system,
        "guarded",
        ip,
        email="p2@captcha.example",
        lf_stamp=rendered,
        **{"cf-turnstile-response": GOOD_RESPONSE},
    )
    assert solved["headers"]["Location"] == "/thanks"
    assert contact_by_email(system, "p2@captcha.example") is not None
    # the provider got the secret from Secrets Manager and the token, never the visitor's IP
    assert FakeSiteverify.calls[calls:] == [
        {"secret": CAPTCHA_SECRET, "response": "bot"},
        {"secret": CAPTCHA_SECRET, "response": GOOD_RESPONSE},
    ]
    # a JSON client over budget learns the same: 429, the provider and the site key
    reply = system.invoke_http(
        "POST",
        "/forms/guarded",
        headers=JSON,
        body=json.dumps({"email": "p3@captcha.example", "consent": True, "lf_stamp": rendered}),
        source_ip=ip,
    )
    assert reply["statusCode"] == 429
    assert json.loads(reply["body"]) | {"error": ""} == {
        "error": "",
        "reason": "captcha_required",
        "captcha": "turnstile",
        "site_key": "0x-site-key",
    }


def test_a_provider_that_does_not_answer_fails_closed(system: LocalSystem) -> None:
    from leadflow.kernel.settings import CaptchaConfig

    verifier = wiring.captcha_verifier(endpoints={"turnstile": "http://127.0.0.1:9/siteverify"})
    config = CaptchaConfig(provider="turnstile", site_key="k", secret_id="leadflow-local-captcha")
    assert verifier.verify(config, GOOD_RESPONSE) is False


# --- identity from the cookie ------------------------------------------------------------------------


def test_a_plain_html_form_links_the_visitor_from_the_cookie(system: LocalSystem) -> None:
    pixel = system.invoke_http("GET", "/t/p.gif", query=urlencode({"url": "https://www.example.com/pricing"}))
    cookie = pixel["cookies"][0].split(";")[0]
    assert cookie.startswith("lf_vid=")
    vid = cookie.removeprefix("lf_vid=")
    # API Gateway's v2 event: the cookies array, and a base64 body (as a browser's post may arrive)
    body = urlencode({"email": "cookie.person@example.com", "consent": "on"}).encode()
    event = {
        "version": "2.0",
        "routeKey": "POST /forms/{form_id}",
        "rawPath": "/forms/newsletter",
        "rawQueryString": "",
        "cookies": ["theme=dark", cookie],
        "headers": {"content-type": "application/x-www-form-urlencoded", "user-agent": "Mozilla/5.0"},
        "pathParameters": {"form_id": "newsletter"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {
                "method": "POST",
                "path": "/forms/newsletter",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.200",
                "userAgent": "Mozilla/5.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "POST /forms/{form_id}",
            "stage": "$default",
            "time": "03/Dec/2026:18:00:00 +0000",
            "timeEpoch": 1796320800000,
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    reply = system.handlers["leadflow-local-track"](event, lambda_context("leadflow-local-track"))
    assert (reply["statusCode"], reply["headers"]["Location"]) == (303, "/thanks")
    contact_id = contact_by_email(system, "cookie.person@example.com")
    link = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": keys.visitor(vid)}, "sk": {"S": "LINK"}}
    )
    assert link["Item"]["contact_id"]["S"] == contact_id
    events = system.client("dynamodb").query(
        TableName="leadflow-local-events",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.contact(str(contact_id))}},
    )["Items"]
    assert {"form_submitted", "contact_identified"} <= {e["type"]["S"] for e in events}


# --- events split by trust ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["purchase", "deal_won", "trial_started", "webinar_attended"])
def test_business_events_posted_publicly_are_refused_with_403(system: LocalSystem, kind: str) -> None:
    system.settle()
    before = counts(system)
    body = {"type": kind, "email": "forger@example.com", "properties": {"revenue": 100000}}
    reply = system.invoke_http("POST", "/events", headers=JSON, body=json.dumps(body))
    assert reply["statusCode"] == 403
    answer = json.loads(reply["body"])
    assert "must come from a server" in answer["error"]
    assert answer["fields"][0]["field"] == "type"
    system.settle()
    assert counts(system) == before
    assert contact_by_email(system, "forger@example.com") is None
    assert not [e for e in system.executions() if e["journey"] == "trial-nurture" and "forger" in e["name"]]


def test_browser_events_stay_public(system: LocalSystem) -> None:
    for kind in ("identify", "video_played"):  # the snippet's own, and the stage's public list
        body = {"type": kind, "visitor_id": "v-browser-000001", "email": "browser@example.com"}
        reply = system.invoke_http("POST", "/events", headers=JSON, body=json.dumps(body))
        assert reply["statusCode"] == 202, reply


def test_server_events_need_credentials(system: LocalSystem) -> None:
    event = {"type": "purchase", "email": "buyer@server.example", "properties": {"revenue": 490}}
    for key in (None, "wrong-key"):
        assert admin_events(system, event, key=key)["statusCode"] == 403
    assert contact_by_email(system, "buyer@server.example") is None
    reply = admin_events(system, event, key=system.admin_key)
    assert reply["statusCode"] == 202, reply
    answer = json.loads(reply["body"])
    assert answer["status"] == "accepted"
    assert answer["event_id"]
    contact_id = contact_by_email(system, "buyer@server.example")
    events = system.client("dynamodb").query(
        TableName="leadflow-local-events",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.contact(str(contact_id))}},
    )["Items"]
    assert [(e["type"]["S"], e["source"]["S"]) for e in events] == [("purchase", "server")]
    # a bad single event: 400 naming the field
    bad = admin_events(system, {"type": "purchase"}, key=system.admin_key)
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"] == "invalid request"


def test_a_batch_is_validated_per_event_with_per_event_results(system: LocalSystem) -> None:
    batch = {
        "events": [
            {"type": "trial_started", "email": "batch1@server.example", "event_id": "b-1"},
            {"type": "purchase", "email": "not-an-email"},
            {"type": "email_clicked", "email": "batch2@server.example"},
            {
                "type": "deal_won",
                "email": "batch2@server.example",
                "event_id": "b-2",
                "properties": {"amount": 9},
            },
            {"type": "trial_started", "email": "batch1@server.example", "event_id": "b-1"},
        ]
    }
    reply = admin_events(system, batch, key=system.admin_key)
    assert reply["statusCode"] == 202, reply
    answer = json.loads(reply["body"])
    assert (answer["accepted"], answer["rejected"]) == (3, 2)
    results = answer["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "accepted", "accepted"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[1]["fields"][0]["field"] == "events.1.email"
    assert results[2]["fields"][0]["field"] == "events.2.type"
    assert (results[0]["duplicate"], results[4]["duplicate"]) == (False, True)
    too_many = {"events": [{"type": "product_used", "email": "x@server.example"}] * 501}
    reply = admin_events(system, too_many, key=system.admin_key)
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["fields"] == [
        {"field": "events", "message": "at most 500 events per request"}
    ]
    assert contact_by_email(system, "x@server.example") is None
    full = {
        "events": [
            {"type": "product_used", "email": "many@server.example", "event_id": f"u-{i}"} for i in range(500)
        ]
    }
    reply = admin_events(system, full, key=system.admin_key)
    assert reply["statusCode"] == 202
    assert json.loads(reply["body"])["accepted"] == 500


# --- counted and logged without personal data -------------------------------------------------------


def test_refusals_are_counted_on_the_dashboard_and_logged_without_personal_data(
    system: LocalSystem, log_lines: list[str]
) -> None:
    before = system.figures()["refusals"]
    post_form(system, "newsletter", "203.0.113.60", email="secret.person@private.example", website_url="x")
    system.invoke_http(
        "POST",
        "/events",
        headers=JSON,
        body=json.dumps({"type": "purchase", "email": "secret.person@private.example"}),
        source_ip="203.0.113.61",
    )
    after = system.figures()["refusals"]
    assert after["honeypot"] == before.get("honeypot", 0) + 1
    assert after["server_event_type"] == before.get("server_event_type", 0) + 1
    refusals = [json.loads(line) for line in log_lines if "public request refused" in line]
    assert {(r["reason"], r["route"]) for r in refusals} == {
        ("honeypot", "POST /forms"),
        ("server_event_type", "POST /events"),
    }
    text = "\n".join(log_lines)
    for secret in ("secret.person", "private.example", "203.0.113"):
        assert secret not in text


# --- the signed public variant -------------------------------------------------------------------------


def signed_post(
    system: LocalSystem,
    body: str,
    *,
    source: str = "default",
    key: str | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    from leadflow.capture.server_events import SignedEvents

    # a sender signs with its own wall clock (the window is real time, whatever the virtual clock says)
    timestamp = str(int(time.time() if at is None else at))
    headers = JSON | {
        "x-leadflow-source": source,
        "x-leadflow-timestamp": timestamp,
        "x-leadflow-signature": SignedEvents.signature(key or system.event_source_key, timestamp, body),
    }
    return system.invoke_http("POST", "/events/signed", headers=headers, body=body)


def test_signed_server_events_from_systems_without_sigv4(system: LocalSystem) -> None:
    body = json.dumps({"type": "purchase", "email": "signed@server.example", "event_id": "order-77"})
    signed_at = int(time.time())  # one timestamp: a replay is the very same bytes, whenever it comes
    reply = signed_post(system, body, at=signed_at)
    assert reply["statusCode"] == 202, reply
    assert json.loads(reply["body"])["status"] == "accepted"
    assert contact_by_email(system, "signed@server.example") is not None
    assert (
        signed_post(system, body, at=signed_at)["statusCode"] == 409
    )  # the very same request again: a replay
    # re-signed a second later: a new request, and order-77 is still stored once
    timestamp = str(signed_at + 1)
    from leadflow.capture.server_events import SignedEvents

    headers = JSON | {
        "x-leadflow-source": "default",
        "x-leadflow-timestamp": timestamp,
        "x-leadflow-signature": SignedEvents.signature(system.event_source_key, timestamp, body),
    }
    first = system.invoke_http(
        "POST",
        "/events/signed",
        headers=headers,
        body=json.dumps({"type": "deal_won", "email": "signed@server.example"}),
    )
    assert first["statusCode"] == 401  # the signature is the other body's
    again = [system.invoke_http("POST", "/events/signed", headers=headers, body=body) for _ in range(2)]
    assert [r["statusCode"] for r in again] == [202, 409]
    assert json.loads(again[0]["body"])["duplicate"] is True  # order-77 was stored once
    # stale, forged, unknown source
    before = counts(system)
    assert signed_post(system, body, at=time.time() - 301)["statusCode"] == 401
    assert signed_post(system, body, key="not-the-key-of-default")["statusCode"] == 401
    assert signed_post(system, body, source="crm")["statusCode"] == 401
    unsigned = system.invoke_http("POST", "/events/signed", headers=JSON, body=body)
    assert unsigned["statusCode"] == 401
    assert counts(system) == before
    figures = system.figures()["refusals"]
    assert {"stale_signature", "bad_signature", "unknown_source", "replayed_signature"} <= set(figures)


def test_a_sign_up_that_meets_a_concurrent_one_on_a_budget_counter_is_tried_again(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB cancels a transaction with ``TransactionConflict`` when a concurrent one holds an
    item it writes (here: the shared budget counter); moto never does, so the first commit is
    answered the way DynamoDB answers it, and the sign-up must go through once."""
    from botocore.exceptions import ClientError

    from leadflow.capture.model import FormSubmission

    ddb = wiring.client("dynamodb")  # the process's client: the one the track function commits with
    commit = ddb.transact_write_items
    commits: list[int] = []

    def held_by_a_concurrent_sign_up(**params: Any) -> Any:
        """What DynamoDB answers the first time: another transaction holds the last item."""
        items = params["TransactItems"]
        commits.append(len(items))
        if len(commits) > 1:
            return commit(**params)
        reasons = [{"Code": "None"}] * (len(items) - 1) + [{"Code": "TransactionConflict"}]
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                "CancellationReasons": reasons,
            },
            "TransactWriteItems",
        )

    monkeypatch.setattr(ddb, "transact_write_items", held_by_a_concurrent_sign_up)
    track = system.modules["track"].service
    assert track.sends_email("whitepaper")  # its sign-ups spend the budget counters
    submission = FormSubmission.model_validate({"email": "conflict@example.com", "consent": True})
    accepted = track.submit_form("whitepaper", submission, source_ip="100.64.99.1", user_agent="x")
    monkeypatch.undo()
    assert contact_by_email(system, "conflict@example.com") == accepted.contact_id
    assert len(commits) == 2
    assert commits[0] == commits[1]  # the same sign-up, budget counters included, once committed


def test_the_signature_window_is_wall_clock_time_while_the_local_clock_runs_ahead(
    system: LocalSystem,
) -> None:
    """Weeks of virtual time later, a request signed just now is fresh, one signed 6 minutes ago stale."""
    system.advance(14 * 86400)
    body = json.dumps({"type": "purchase", "email": "later@server.example", "event_id": "order-78"})
    assert signed_post(system, body, at=time.time() - 360)["statusCode"] == 401
    assert signed_post(system, body)["statusCode"] == 202


# --- answers to malformed posts -------------------------------------------------------------------


def test_an_oversized_form_post_is_413_for_clients_and_the_error_page_for_browsers(
    system: LocalSystem,
) -> None:
    before = counts(system)
    padding = "a" * 20_000
    browser = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers=FORM,
        body=urlencode({"email": "big@example.com", "consent": "on", "pad": padding}),
        source_ip="100.64.9.9",
    )
    assert browser["statusCode"] == 303
    assert browser["headers"]["Location"].endswith("error=too_large")
    client = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers=JSON,
        body=json.dumps({"email": "big@example.com", "consent": True, "pad": padding}),
        source_ip="100.64.9.9",
    )
    assert client["statusCode"] == 413
    assert json.loads(client["body"])["fields"] == [{"field": "body", "message": "larger than 16384 bytes"}]
    assert counts(system) == before
    assert contact_by_email(system, "big@example.com") is None


def test_an_error_answer_never_echoes_what_was_posted(system: LocalSystem) -> None:
    """A JSON document posted without its content type reads as one odd form field: the answer names
    the problem, never the document (it holds an email address)."""
    document = json.dumps(
        {"type": "identify", "email": "jane.doe@example.com", "visitor_id": "vabcdefgh1234"}
    )
    reply = system.invoke_http("POST", "/events", headers=FORM, body=document)  # as `curl -d` sends it
    assert reply["statusCode"] == 400
    assert "jane.doe" not in reply["body"]
    fields = json.loads(reply["body"])["fields"]
    assert {"field": "?", "message": "unknown field"} in fields  # as the admin API says it
