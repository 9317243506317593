"""Reporting on the local runtime: independently written traffic (website visits, sign-ups, a
holdout journey, Apple MPP prefetches, Gmail proxy opens, scanner clicks, people, feedback,
purchases) gives exact funnel, rates, attribution and lift figures; a replayed batch changes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from leadflow.local.system import LocalSystem, resource_name
from leadflow.platform.dynamo import deserialize
from leadflow.reporting.stats import newcombe
from tests.integration.conftest import content

JSON = {"content-type": "application/json"}
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
HOUR = 3600
PROMO = """
id: promo
name: Promo
entry: {event: promo_started}
exit: {events: [{event: purchase}]}
steps:
  - holdout: {percent: 50}
  - send_email: {id: offer, template: welcome}
  - wait: {days: 1}
  - send_email: {id: followup, template: welcome-followup-nudge}
"""
APPLE_MPP_UA = "Mozilla/5.0"
APPLE_PROXY_IP = "17.58.63.12"
GMAIL_PROXY_UA = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
DESKTOP_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
BARRACUDA_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel; +https://barracuda.com)"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[LocalSystem]:
    with LocalSystem(content_dir=content(tmp_path, promo=PROMO), clock_start=START) as local:
        yield local


def visit(system: LocalSystem, vid: str, url: str, ref: str = "") -> None:
    query = urlencode({"vid": vid, "url": url, "ref": ref})
    assert system.invoke_http("GET", "/t/p.gif", query=query)["statusCode"] == 200


def sign_up(system: LocalSystem, email: str, vid: str | None) -> str:
    body: dict[str, Any] = {"email": email, "consent": True}
    if vid:
        body["visitor_id"] = vid
    reply = system.invoke_http("POST", "/forms/newsletter", headers=JSON, body=json.dumps(body))
    assert reply["statusCode"] == 201, reply
    return str(json.loads(reply["body"])["contact_id"])


def event(system: LocalSystem, email: str, kind: str, **properties: Any) -> None:
    """A server event (purchase, deal_won...): POST /admin/events with the admin credential."""
    body = json.dumps({"type": kind, "email": email, "properties": properties})
    headers = JSON | {"authorization": f"Bearer {system.admin_key}"}
    assert system.invoke_http("POST", "/admin/events", headers=headers, body=body)["statusCode"] == 202


def admin(system: LocalSystem, path: str) -> dict[str, Any]:
    """The admin route's answer (the admin function's reporting router) on the local system's
    counters, called with the admin credential; without it the IAM gate answers."""
    assert system.invoke_http("GET", path)["statusCode"] == 403
    headers = {"authorization": f"Bearer {system.admin_key}"}
    answer = system.invoke_http("GET", path, headers=headers)
    assert answer["statusCode"] == 200, answer
    return dict(json.loads(answer["body"]))


def step(system: LocalSystem, seconds: float) -> None:
    system.advance(seconds)
    system.settle()


def emails_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if address in m["to"]]


def tracking(mail: dict[str, Any]) -> tuple[str, list[str]]:
    html = mail["html"] or ""
    pixel = re.findall(r"/t/o/([^\"'>]+)", html)[0]
    clicks = list(dict.fromkeys(re.findall(r"/t/c/([^\"'>&]+)", html)))
    return pixel.removesuffix(".gif"), clicks


def test_report_figures_from_independent_traffic(system: LocalSystem) -> None:
    # --- website: four visitors arrive through different channels, then sign up -----------------
    visit(system, "visitor-search-0", "https://northwind.example/pricing", "https://www.google.com/")
    visit(system, "visitor-paid-001", "https://northwind.example/?utm_source=google&utm_medium=cpc&gclid=abc")
    visit(system, "visitor-paid-001", "https://northwind.example/blog", "https://www.facebook.com/")
    visit(system, "visitor-paid-001", "https://northwind.example/pricing", "https://northwind.example/blog")
    visit(system, "visitor-direct-2", "https://northwind.example/")
    visit(system, "visitor-social-3", "https://northwind.example/", "https://t.co/xyz")
    emails = [f"buyer{i}@example.com" for i in range(16)]
    visitors = ["visitor-search-0", "visitor-paid-001", "visitor-direct-2", "visitor-social-3"]
    [sign_up(system, e, visitors[i] if i < 4 else None) for i, e in enumerate(emails)]
    system.settle()
    for address in emails:
        event(system, address, "promo_started")
    system.settle()

    # the hold-out draws on each contact's random id: more buyers enter until the roles below can be
    # played — three readers and a scanned message among the buyers without a website visit (their
    # first touch is the email), and at least one buyer held out
    offers = {a: emails_to(system, a) for a in emails}
    while len([a for a in emails[4:] if offers[a]]) < 4 or all(offers.values()):
        address = f"buyer{len(emails)}@example.com"
        sign_up(system, address, None)
        system.settle()
        event(system, address, "promo_started")
        system.settle()
        emails.append(address)
        offers[address] = emails_to(system, address)
    treated = [a for a in emails if offers[a]]
    held = [a for a in emails if not offers[a]]

    # --- on delivery (virtual time frozen: 0 s after the send): machines --------------------------
    for address in treated:
        system.deliver_feedback(system.ses_event(offers[address][0], "Delivery"))
    apple = treated[0]
    pixel, _ = tracking(offers[apple][0])
    system.invoke_http(
        "GET", f"/t/o/{pixel}.gif", headers={"user-agent": APPLE_MPP_UA}, source_ip=APPLE_PROXY_IP
    )
    scanned = treated[-1]
    _, links = tracking(offers[scanned][0])
    for token in links:  # a link scanner follows every link on delivery
        system.invoke_http("GET", f"/t/c/{token}", headers={"user-agent": DESKTOP_UA})
    system.settle()

    # --- an hour later: people ------------------------------------------------------------------
    step(system, HOUR)
    readers = [a for a in treated if emails.index(a) >= 4][:3]
    assert scanned not in readers
    for address in readers:
        pixel, links = tracking(offers[address][0])
        system.invoke_http(
            "GET", f"/t/o/{pixel}.gif", headers={"user-agent": GMAIL_PROXY_UA}, source_ip="66.249.84.1"
        )
        system.invoke_http(
            "GET", f"/t/o/{pixel}.gif", headers={"user-agent": PHONE_UA}, source_ip="203.0.113.9"
        )
        system.invoke_http("GET", f"/t/c/{links[0]}", headers={"user-agent": PHONE_UA})
    # the first reader clicks the first link again, and a scanner checks it
    _, links = tracking(offers[readers[0]][0])
    system.invoke_http("GET", f"/t/c/{links[0]}", headers={"user-agent": PHONE_UA})
    system.invoke_http("GET", f"/t/c/{links[0]}", headers={"user-agent": BARRACUDA_UA})
    system.settle()

    # --- purchases (two hours in): three of the website visitors ----------------------------------
    step(system, HOUR)
    event(system, emails[0], "purchase", revenue=100)
    event(system, emails[1], "purchase", amount="50.5")
    event(system, emails[3], "purchase", revenue=20)
    system.settle()
    step(system, 2 * 86400)  # the followup goes out; purchasers in the journey leave first

    buyers = {emails[0], emails[1], emails[3]}
    treated_buyers = [a for a in treated if a in buyers]
    held_buyers = [a for a in held if a in buyers]

    # --- journey ---------------------------------------------------------------------------------
    report = admin(system, "/admin/reports/journeys/promo")
    assert report["entered"] == len(emails)
    assert report["held_out"] == len(held)
    assert report["exited"] == len(treated_buyers)
    assert report["exited_by_reason"] == (
        {"converted: purchase": len(treated_buyers)} if treated_buyers else {}
    )
    assert report["completed"] == len(treated) - len(treated_buyers)
    assert report["active"] == 0
    steps = {s["step_id"]: s for s in report["steps"]}
    assert steps["offer"]["sent"] == len(treated)
    assert steps["followup"]["sent"] == len(treated) - len(treated_buyers)
    funnel = {s["stage"]: s["contacts"] for s in report["funnel"]}
    assert funnel == {
        "entered": len(emails),
        "sent": len(treated),
        "opened": len(readers),  # the Apple prefetch is not a reader
        "clicked": len(readers),  # the scanned message is not a click
        "converted (purchase)": 3,
    }
    assert report["revenue"] == 170.5
    lift = report["lift"]
    assert (lift["treated"], lift["treated_conversions"]) == (len(treated), len(treated_buyers))
    assert (lift["held_out"], lift["held_out_conversions"]) == (len(held), len(held_buyers))
    low, high = newcombe(len(treated_buyers), len(treated), len(held_buyers), len(held))
    assert lift["difference_ci95"] == [round(low, 4), round(high, 4)]
    assert lift["difference"] == round(len(treated_buyers) / len(treated) - len(held_buyers) / len(held), 4)

    # --- message ---------------------------------------------------------------------------------
    offer = admin(system, "/admin/reports/messages/welcome")
    assert offer["sent"] == len(treated)
    assert offer["delivered"] == len(treated)
    assert offer["opens_human"] == 2 * len(readers)  # Gmail's proxy is a person reading
    assert offer["unique_opens_human"] == len(readers)
    assert (offer["opens_privacy_proxy"], offer["unique_opens_privacy_proxy"]) == (1, 1)
    assert offer["clicks_human"] == len(readers) + 1
    assert offer["unique_clicks_human"] == len(readers)
    assert offer["clicks_scanner"] == len(links) + 1
    assert offer["unique_clicks_scanner"] == 2  # the scanned message and the reader's
    assert offer["open_rate"] == round(len(readers) / len(treated), 4)
    assert offer["click_rate"] == round(len(readers) / len(treated), 4)
    top = max(offer["links"], key=lambda link: link["clicks"])
    assert top["clicks"] == len(readers) + 1
    assert top["unique_clicks"] == len(readers)

    # --- attribution -----------------------------------------------------------------------------
    attribution = admin(system, "/admin/reports/attribution")
    channels = {c["channel"]: c for c in attribution["channels"]}
    assert channels["search"] | {} == {
        "channel": "search",
        "contacts_first_touch": 1,
        "conversions_first_touch": 1,
        "revenue_first_touch": 100.0,
        "conversions_last_touch": 1,
        "revenue_last_touch": 100.0,
    }
    assert (channels["paid"]["contacts_first_touch"], channels["paid"]["revenue_first_touch"]) == (1, 50.5)
    assert channels["paid"]["conversions_last_touch"] == 0  # its last touch was social
    assert (channels["social"]["conversions_last_touch"], channels["social"]["revenue_last_touch"]) == (
        2,
        70.5,
    )
    assert (channels["social"]["contacts_first_touch"], channels["social"]["revenue_first_touch"]) == (
        1,
        20.0,
    )
    assert (channels["direct"]["contacts_first_touch"], channels["direct"]["conversions_first_touch"]) == (
        1,
        0,
    )
    assert channels["email"]["contacts_first_touch"] == len(readers)  # their first touch: a human click
    assert attribution["journeys"] == [{"journey_id": "promo", "conversions": 3, "revenue": 170.5}]
    assert attribution["revenue_by_goal"] == {"purchase": 170.5}

    # --- a replayed stream batch changes no counter ----------------------------------------------
    before = counters(system)
    replay(system)
    assert counters(system) == before


def counters(system: LocalSystem) -> list[dict[str, Any]]:
    items = system.client("dynamodb").scan(TableName=resource_name("reports"))["Items"]
    return sorted((deserialize(i) for i in items), key=lambda i: (i["pk"], i["sk"]))


def replay(system: LocalSystem) -> None:
    """Feed every record of the events stream to ``report`` again, as a retried batch would."""
    from leadflow.events.streams import lambda_stream_record
    from leadflow.local.moto_patches import lambda_context

    streams = system.client("dynamodbstreams")
    arn = system.client("dynamodb").describe_table(TableName=resource_name("events"))["Table"][
        "LatestStreamArn"
    ]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records += [lambda_stream_record(r, arn) for r in page["Records"] if r["eventName"] == "INSERT"]
    assert len(records) > 100
    name = resource_name("report")
    for i in range(0, len(records), 100):
        answer = system.handlers[name]({"Records": records[i : i + 100]}, lambda_context(name))
        assert answer == {"batchItemFailures": []}
