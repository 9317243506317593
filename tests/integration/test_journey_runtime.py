"""Journeys run on the local runtime with virtual time: every step type, timing rules, exits,
re-entry, proportions of splits and holdouts over many contacts, hand-offs and webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from leadflow.local.system import LocalSystem
from leadflow.platform.tables import keys
from tests.integration.conftest import JSON, MONDAY_0700_UTC, events_of, sign_up

DAY = 86400


def contact(system: LocalSystem, email: str, **attributes: Any) -> str:
    contact_id = sign_up(system, email, first_name="Test", visitor_id=None)
    if attributes:
        set_attributes(system, contact_id, **attributes)
    return contact_id


def set_attributes(system: LocalSystem, contact_id: str, **attributes: Any) -> None:
    names = {f"#a{i}": k for i, k in enumerate(attributes)}
    vals = {f":v{i}": _ddb(v) for i, v in enumerate(attributes.values())}
    system.client("dynamodb").update_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=vals,
    )


def _ddb(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"SS": value}
    return {"S": str(value)}


def event(system: LocalSystem, email: str, kind: str, **properties: Any) -> None:
    """A server event (trial_started, product_used...): POST /admin/events with the admin credential."""
    reply = system.invoke_http(
        "POST",
        "/admin/events",
        headers=JSON | {"authorization": f"Bearer {system.admin_key}"},
        body=json.dumps({"type": kind, "email": email, "properties": properties}),
    )
    assert reply["statusCode"] == 202, reply


def sent(system: LocalSystem, email: str) -> list[tuple[str, datetime]]:
    """(subject, virtual send time) of every email to the address, in order."""
    out = []
    for message in system.outbox():
        if email in message["to"]:
            out.append((message["subject"], datetime.fromisoformat(message["time"])))
    return sorted(out, key=lambda m: m[1])


def send_times(system: LocalSystem, email: str) -> list[datetime]:
    """The virtual send time of every email to the address, in order."""
    return [t for _, t in sent(system, email)]


def started_trial(system: LocalSystem, email: str, days: int) -> LocalSystem:
    """A new contact starts a trial; then ``days`` of virtual time pass. The system, for chaining."""
    contact(system, email)
    event(system, email, "trial_started")
    system.advance(days * DAY)
    return system


def executions(system: LocalSystem, journey: str) -> list[dict[str, Any]]:
    return [e for e in system.executions() if e["journey"] == journey]


def profile(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    from leadflow.platform.dynamo import deserialize

    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
    )["Item"]
    return deserialize(item)


def enrollment(system: LocalSystem, contact_id: str, journey_id: str) -> dict[str, Any]:
    from leadflow.platform.dynamo import deserialize

    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": f"J#{journey_id}"}},
    )["Item"]
    return deserialize(item)


QUIET = """
id: quiet
name: Quiet hours
entry: {event: trial_started}
settings:
  timezone: Europe/Berlin
  quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - wait: {hours: 14}
  - send_email: {id: hello, template: welcome}
"""


def test_a_send_in_quiet_hours_is_deferred_to_the_morning_not_dropped(run: Any) -> None:
    """Given quiet hours 21:00-08:00 Berlin, a send due at 23:00 Berlin goes out at 08:00 next day,
    and a contact whose own timezone is New York gets it at 08:00 New York time."""
    system = run(quiet=QUIET)
    contact(system, "berlin@example.com")
    contact(system, "newyork@example.com", timezone="America/New_York")
    event(system, "berlin@example.com", "trial_started")
    event(system, "newyork@example.com", "trial_started")
    system.advance(3 * DAY)
    [(_, berlin)] = [m for m in sent(system, "berlin@example.com") if m[0].startswith("Welcome")]
    # entered Monday 08:00 Berlin; due 22:00 Berlin (quiet) -> Tuesday 08:00 Berlin = 07:00 UTC
    assert berlin == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)
    [(_, new_york)] = [m for m in sent(system, "newyork@example.com") if m[0].startswith("Welcome")]
    # due 21:00 UTC = 16:00 New York: not quiet there, sent at once
    assert new_york == datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    assert {e["status"] for e in executions(system, "quiet")} <= {"SUCCEEDED"}


CAPPED = """
id: capped
name: Frequency cap
entry: {event: trial_started}
settings:
  timezone: UTC
  frequency_cap: {per_day: 1, per_week: 2}
steps:
  - send_email: {id: one, template: welcome}
  - send_email: {id: two, template: welcome-followup-nudge}
  - send_email: {id: three, template: welcome-followup-engaged}
"""


def test_frequency_cap_defers_sends_across_days_and_weeks(run: Any) -> None:
    """Given at most 1 email a day and 2 a week, three back-to-back sends go out Monday, Tuesday
    and the Monday after."""
    system = started_trial(run(capped=CAPPED), "capped@example.com", days=10)
    assert send_times(system, "capped@example.com") == [
        datetime(2026, 1, 5, 7, 0, tzinfo=UTC),
        datetime(2026, 1, 6, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 12, 0, 0, tzinfo=UTC),
    ]
    assert [e["status"] for e in executions(system, "capped")] == ["SUCCEEDED"]


def test_the_cap_counts_sends_of_every_journey(run: Any) -> None:
    """Two journeys with a 1-a-day cap entered at the same moment send on two different days."""
    other = CAPPED.replace("id: capped", "id: other").replace("per_week: 2", "per_week: 5")
    one = other.replace("id: other", "id: single")
    one = one.split("  - send_email: {id: two")[0]
    system = run(single=one, other2=one.replace("id: single", "id: second"))
    started_trial(system, "two-journeys@example.com", days=3)
    days = sorted(t.date().isoformat() for t in send_times(system, "two-journeys@example.com"))
    assert days == ["2026-01-05", "2026-01-06"]


SPLIT = """
id: split
name: Split and holdout
entry: {event: trial_started}
steps:
  - holdout: {percent: 20}
  - random_split:
      name: Subject test
      paths:
        - {name: a, weight: 3, steps: [{send_email: {id: a, template: welcome}}]}
        - {name: b, weight: 1, steps: [{send_email: {id: b, template: welcome-followup-nudge}}]}
"""


def test_holdout_and_random_split_proportions_over_many_contacts(run: Any) -> None:
    """Given 120 contacts, about 20% are held out (nothing sent, outcome recorded) and the treated
    split 3:1; a contact always lands in the same place."""
    system = run(split=SPLIT)
    emails = [f"p{i:03d}@example.com" for i in range(120)]
    ids = [contact(system, e) for e in emails]
    for i, e in enumerate(emails):
        event(system, e, "trial_started")
        if i % 20 == 19:
            system.settle(timeout=120)
    outcomes = {"held_out": 0, "a": 0, "b": 0}
    outbox = system.outbox()
    for e, cid in zip(emails, ids, strict=True):
        subjects = [m["subject"] for m in outbox if e in m["to"]]  # only this journey: all its emails
        kinds = {ev["type"] for ev in events_of(system, cid)}
        if "journey_held_out" in kinds:
            outcomes["held_out"] += 1
            assert subjects == []
        else:
            assert "journey_completed" in kinds
            [subject] = subjects
            outcomes["a" if subject.startswith("Welcome to Northwind") else "b"] += 1
    assert sum(outcomes.values()) == 120
    assert 12 <= outcomes["held_out"] <= 36  # 20% of 120 = 24
    treated = outcomes["a"] + outcomes["b"]
    assert 0.62 <= outcomes["a"] / treated <= 0.88  # 75%
    states = {e["state"] for e in executions(system, "split")}
    # the holdout and the split of single sends are folded into the final send task: it holds
    # out or picks the variant, sends, leaves the journey and ends the execution
    assert states == {"Holdout: 20%"}


WAIT_FOR = """
id: activation
name: Activation
entry: {event: trial_started}
steps:
  - wait_for:
      id: activated
      event: product_used
      where: {feature: reports}
      timeout: {days: 3}
      check_every: {hours: 1}
      on_event:
        - update_contact: {add_tags: [activated], add_points: 15, set: {plan_interest: reports}}
      on_timeout:
        - send_email: {id: nudge, template: welcome-followup-nudge}
"""


def test_wait_for_takes_the_event_path_or_the_timeout_path(run: Any) -> None:
    system = run(activation=WAIT_FOR)
    active = contact(system, "active@example.com")
    idle = contact(system, "idle@example.com")
    for e in ("active@example.com", "idle@example.com"):
        event(system, e, "trial_started")
    system.advance(5 * 3600)
    event(system, "active@example.com", "product_used", feature="billing")  # not this one
    event(system, "active@example.com", "product_used", feature="reports")
    system.advance(3600)
    assert "activated" in profile(system, active).get("tags", [])
    assert profile(system, active)["plan_interest"] == "reports"
    system.advance(3 * DAY)
    assert [s for s, _ in sent(system, "active@example.com")] == []
    [(_, when)] = sent(system, "idle@example.com")
    assert when == datetime(2026, 1, 8, 7, 0, tzinfo=UTC)  # exactly 3 days after entry
    assert {e["status"] for e in executions(system, "activation")} == {"SUCCEEDED"}
    assert "activated" not in profile(system, idle).get("tags", [])


EXITS = """
id: nurture
name: Nurture with exits
entry: {event: trial_started}
exit:
  events: [{event: purchase}]
  stages: [customer]
steps:
  - send_email: {id: one, template: welcome}
  - wait: {days: 2}
  - send_email: {id: two, template: welcome-followup-nudge}
"""


def test_unsubscribe_purchase_and_stage_end_the_journey_mid_way(run: Any) -> None:
    """Given three contacts in a 2-day wait: the one who unsubscribes, the one who buys and the one
    who becomes a customer get no second email; a fourth one does."""
    system = run(nurture=EXITS)
    people = ["unsub@example.com", "buyer@example.com", "customer@example.com", "stays@example.com"]
    ids = {e: contact(system, e) for e in people}
    for e in people:
        event(system, e, "trial_started")
    system.advance(3600)
    [first] = [m for m in system.outbox() if "unsub@example.com" in m["to"]]
    [url] = re.findall(r"<(http[^>]+)>", first["headers"]["List-Unsubscribe"])
    path = url.split("127.0.0.1:8080", 1)[1]
    assert system.invoke_http("POST", path, body="List-Unsubscribe=One-Click")["statusCode"] == 200
    event(system, "buyer@example.com", "purchase", plan="pro")
    set_attributes(system, ids["customer@example.com"], stage="customer")
    system.advance(3 * DAY)
    for e in people[:3]:
        assert len(sent(system, e)) == 1, e
    assert len(sent(system, "stays@example.com")) == 2
    reasons = {}
    for e in people:
        kinds = {ev["type"]: ev for ev in events_of(system, ids[e])}
        if "journey_exited" in kinds:
            reasons[e] = kinds["journey_exited"]["properties"]["reason"]
    assert reasons == {
        "unsub@example.com": "unsubscribed",
        "buyer@example.com": "converted: purchase",
        "customer@example.com": "reached stage customer",
    }
    runs = {e["name"].split("-", 1)[1]: e for e in executions(system, "nurture")}
    assert (runs[ids["stays@example.com"]]["status"], runs[ids["stays@example.com"]]["state"]) == (
        "SUCCEEDED",
        "Send email: two",  # the last step leaves the journey itself
    )
    # the exit events ended the executions at once, in their 2-day wait (stopped on purpose, recorded
    # for redrive); the stage set behind the system's back is seen before the next step
    for e in ("unsub@example.com", "buyer@example.com"):
        assert (runs[ids[e]]["status"], runs[ids[e]]["state"]) == ("ABORTED", "Wait 2 days"), e
        assert enrollment(system, ids[e], "nurture")["stopped_reason"] == reasons[e]
    assert runs[ids["customer@example.com"]]["state"] == "Contact exited"


REENTRY = """
id: reentry
name: Re-entry after a cool-down
entry: {event: trial_started}
re_entry: {after: {days: 7}}
steps:
  - send_email: {id: hello, template: welcome}
  - wait: {days: 2}
"""


def test_re_entry_rules_and_one_active_execution_per_contact(run: Any) -> None:
    system = run(
        reentry=REENTRY,
        never=REENTRY.replace("id: reentry", "id: never").replace(
            "re_entry: {after: {days: 7}}", "re_entry: never"
        ),
        always=REENTRY.replace("id: reentry", "id: always").replace(
            "re_entry: {after: {days: 7}}", "re_entry: always"
        ),
    )
    contact(system, "again@example.com")
    event(system, "again@example.com", "trial_started")
    event(system, "again@example.com", "trial_started")  # while active: no second execution anywhere
    system.settle()
    assert {j: len(executions(system, j)) for j in ("reentry", "never", "always")} == {
        "reentry": 1,
        "never": 1,
        "always": 1,
    }
    system.advance(3 * DAY)  # all finished (they left on day 2)
    event(system, "again@example.com", "trial_started")  # day 3: the 7-day cool-down is not over
    system.advance(7 * DAY)
    event(system, "again@example.com", "trial_started")  # day 10: cool-down over
    system.advance(3 * DAY)
    counts = {j: len(executions(system, j)) for j in ("reentry", "never", "always")}
    assert counts == {"reentry": 2, "never": 1, "always": 3}
    names = sorted(e["name"] for e in executions(system, "always"))
    assert [n.rsplit("-", 1)[-1] for n in names][-2:] == ["2", "3"]


BRANCHES = """
id: routing
name: Routing
entry: {event: trial_started}
steps:
  - branch:
      name: Which segment?
      cases:
        - if: {all: [{score: {gte: 50}}, {attribute: country, in: [DE, AT]}]}
          steps: [{update_contact: {stage: mql}}]
        - if: {tag: student}
          steps: [{update_contact: {add_tags: [edu]}}]
        - if: {did: pricing_viewed, at_least: 2, within: {days: 7}}
          steps: [{update_contact: {set: {intent: high}}}]
      default: [{update_contact: {set: {intent: low}}}]
  - send_email: {id: hello, template: welcome}
  - branch:
      name: Opened the hello email?
      if: {opened: hello}
      then: [{update_contact: {add_tags: [opener]}}]
      else: [{update_contact: {add_tags: [non_opener]}}]
"""
MQL = """
id: mql
name: MQL hand-off
entry: {stage: mql}
steps:
  - notify_sales: {reason: became MQL}
"""


def test_multi_way_branches_stage_entry_and_sales_hand_off(run: Any) -> None:
    system = run(routing=BRANCHES, mql=MQL)
    hot = contact(system, "hot@example.com", score=60, country="DE")
    student = contact(system, "student@example.com", tags=["student"])
    shopper = contact(system, "shopper@example.com")
    cold = contact(system, "cold@example.com", score=60, country="US")
    event(system, "shopper@example.com", "pricing_viewed")
    event(system, "shopper@example.com", "pricing_viewed")
    for e in ("hot@example.com", "student@example.com", "shopper@example.com", "cold@example.com"):
        event(system, e, "trial_started")
    system.settle()
    assert profile(system, hot)["stage"] == "mql"
    assert "edu" in profile(system, student)["tags"]
    assert profile(system, shopper)["intent"] == "high"
    assert profile(system, cold)["intent"] == "low"
    # the stage change entered the MQL journey: exactly one hand-off, with the history attached
    [handoff] = system.sales_handoffs()
    assert handoff["contact"]["contact_id"] == hot
    assert handoff["reason"] == "became MQL"
    assert {"stage_changed", "trial_started"} <= {e["type"] for e in handoff["events"]}
    assert "non_opener" in profile(system, cold)["tags"]


LOOP = """
id: digest
name: Weekly digest
entry: {event: trial_started}
steps:
  - send_email: {id: digest, template: welcome}
  - wait_until: {id: next_monday, time: "09:00", weekdays: [mon]}
  - branch:
      name: Still subscribed long enough?
      if: {did: email_sent, at_least: 3, within: {days: 30}}
      then: [{end: true}]
      else: [{goto: digest}]
"""


def test_goto_loops_send_a_new_message_each_round(run: Any) -> None:
    """A loop back to a send sends again each round (new message ids), waiting until the next
    Monday 09:00 UTC each time (the first one is later the same Monday)."""
    system = started_trial(run(digest=LOOP), "digest@example.com", days=30)
    assert send_times(system, "digest@example.com") == [
        datetime(2026, 1, 5, 7, 0, tzinfo=UTC),
        datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        datetime(2026, 1, 12, 9, 0, tzinfo=UTC),
    ]
    ids = {m["headers"]["X-Leadflow-Message-Id"] for m in system.outbox() if "digest@example.com" in m["to"]}
    assert len(ids) == 3
    assert [e["status"] for e in executions(system, "digest")] == ["SUCCEEDED"]


DATE_WAIT = """
id: renewal
name: Renewal reminder
entry: {event: trial_started}
steps:
  - wait_until: {attribute: trial_ends_at, offset_days: -2, time: "10:00"}
  - send_email: {id: reminder, template: welcome-followup-nudge}
"""


def test_wait_until_a_date_attribute_in_the_contacts_timezone(run: Any) -> None:
    system = run(renewal=DATE_WAIT)
    contact(system, "renew@example.com", trial_ends_at="2026-01-20", timezone="Asia/Tokyo")
    contact(system, "past@example.com", trial_ends_at="2025-12-01")
    contact(system, "none@example.com")
    for e in ("renew@example.com", "past@example.com", "none@example.com"):
        event(system, e, "trial_started")
    system.advance(20 * DAY)
    [(_, renew)] = sent(system, "renew@example.com")
    assert renew == datetime(2026, 1, 18, 1, 0, tzinfo=UTC)  # 10:00 Tokyo on the 18th
    assert send_times(system, "past@example.com") == [datetime(2026, 1, 5, 7, 0, tzinfo=UTC)]
    assert send_times(system, "none@example.com") == [datetime(2026, 1, 5, 7, 0, tzinfo=UTC)]


class Receiver(BaseHTTPRequestHandler):
    deliveries: list[tuple[dict[str, str], bytes]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        Receiver.deliveries.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_webhooks_are_signed_retried_and_delivered_once(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LEADFLOW_LOCAL_WEBHOOK_KEY", "k" * 40)
    Receiver.deliveries = []
    Receiver.fail_first = 2  # the CRM is down for the first two attempts
    hook = f"""
id: crm
name: CRM sync
entry: {{event: trial_started}}
steps:
  - webhook: {{url: "http://127.0.0.1:{server.server_port}/hooks/leads", secret: default, payload: {{list: trials}}}}
"""
    try:
        system = run(crm=hook)
        contact_id = contact(system, "hook@example.com")
        event(system, "hook@example.com", "trial_started")
        system.settle()
    finally:
        server.shutdown()
    [(headers, body)] = Receiver.deliveries
    document = json.loads(body)
    assert document["contact_id"] == contact_id
    assert document["payload"] == {"list": "trials"}
    assert "hook@example.com" not in body.decode()  # ids only: no personal data leaves unasked
    stamp, signature = (part.split("=", 1)[1] for part in headers["X-Leadflow-Signature"].split(","))
    expected = hmac.new(b"k" * 40, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert headers["X-Leadflow-Delivery"] == document["delivery_id"]
    assert [e["status"] for e in executions(system, "crm")] == ["SUCCEEDED"]


def test_manual_enrollment_and_score_threshold_entries(run: Any, tmp_path: Path) -> None:
    manual = """
id: vip
name: VIP programme
entry: {manual: true}
steps: [{update_contact: {add_tags: [vip]}}]
"""
    threshold = """
id: hot
name: Hot lead
entry: {score_reaches: 30}
steps: [{update_contact: {add_tags: [hot]}}]
"""
    points = """
id: points
name: Points
entry: {event: webinar_attended}
steps: [{update_contact: {add_points: 25}}]
"""
    (tmp_path / "leads.yaml").write_text(
        "scoring:\n  rules:\n    - {id: forms, event: form_submitted, points: 10}\n"
    )  # the lead engine scores the sign-up; the journey's points come as points_awarded
    system = run(vip=manual, hot=threshold, points=points)
    vip = contact(system, "vip@example.com")
    lead = contact(system, "lead@example.com")
    headers = {**JSON, "authorization": f"Bearer {system.admin_key}"}
    body = json.dumps({"contact_id": vip})
    enrolled = system.invoke_http("POST", "/admin/journeys/vip/enrollments", headers=headers, body=body)
    assert enrolled["statusCode"] == 202, enrolled
    event(system, "lead@example.com", "webinar_attended")  # 10 (form) + 25 crosses 30
    system.settle()
    assert "vip" in profile(system, vip)["tags"]
    assert "hot" in profile(system, lead)["tags"]
    assert "hot" not in profile(system, vip).get("tags", [])


def test_double_opt_in_contacts_get_only_the_confirmation_until_they_confirm() -> None:
    """With the shipped journeys: a whitepaper (double opt-in) sign-up gets the confirmation email and
    nothing else; the one who clicks the signed link is confirmed and gets no reminder, the other one
    gets one reminder two days later. Neither enters the newsletter welcome series."""
    with LocalSystem(background_pump=False, clock_start=MONDAY_0700_UTC) as system:
        for email in ("confirms@example.com", "silent@example.com"):
            sign_up(system, email, first_name="Dee", visitor_id=None, form="whitepaper")
        system.settle()
        [confirmation] = [m for m in system.outbox() if "confirms@example.com" in m["to"]]
        assert confirmation["subject"] == "Please confirm your subscription to Northwind Analytics"
        [link] = re.findall(r"http://127\.0\.0\.1:8080(/confirm/[^\s<>\"]+)", confirmation["text"])
        assert "/t/o/" not in (confirmation["html"] or "")  # a confirmation carries no tracking pixel
        system.advance(3600)
        reply = system.invoke_http("GET", link)
        assert reply["statusCode"] == 200
        system.advance(3 * DAY)
        assert len(sent(system, "confirms@example.com")) == 1
        assert [s for s, _ in sent(system, "silent@example.com")] == [
            "Please confirm your subscription to Northwind Analytics"
        ] * 2
        states = {e["name"]: e["state"] for e in executions(system, "double-opt-in")}
        # confirmed: the wait's event path is empty (the leave task); silent: the reminder ends it
        assert sorted(states.values()) == ["Journey complete", "Send email: confirmation reminder"]
        assert executions(system, "welcome") == []


def test_manual_enrollment_through_the_admin_api() -> None:
    with LocalSystem(background_pump=False, clock_start=MONDAY_0700_UTC) as system:
        contact_id = contact(system, "lost-deal@example.com")
        headers = {**JSON, "authorization": f"Bearer {system.admin_key}"}
        body = json.dumps({"contact_id": contact_id, "request_id": "crm-4711"})
        for _ in range(2):  # a retried request enrolls once
            reply = system.invoke_http(
                "POST", "/admin/journeys/win-back/enrollments", headers=headers, body=body
            )
            assert reply["statusCode"] == 202, reply
        system.settle()
        assert [e["name"] for e in executions(system, "win-back")] == [f"win-back-{contact_id}"]
        refused = system.invoke_http(
            "POST", "/admin/journeys/welcome/enrollments", headers=headers, body=body
        )
        assert refused["statusCode"] == 404  # not a manual-entry journey
        assert json.loads(refused["body"])["error"] == "journey with manual entry not found"
        unknown = system.invoke_http(
            "POST",
            "/admin/journeys/win-back/enrollments",
            headers=headers,
            body=json.dumps({"contact_id": "c0nobody"}),
        )
        assert unknown["statusCode"] == 404
        anonymous = system.invoke_http(
            "POST", "/admin/journeys/win-back/enrollments", headers=JSON, body=body
        )
        assert anonymous["statusCode"] == 403


def test_the_welcome_email_speaks_the_contacts_language() -> None:
    with LocalSystem(background_pump=False, clock_start=MONDAY_0700_UTC) as system:
        reply = system.invoke_http(
            "POST",
            "/forms/newsletter",
            headers=JSON,
            body=json.dumps(
                {
                    "email": "eva@example.de",
                    "first_name": "Eva",
                    "last_name": "Müller",
                    "salutation": "Frau",
                    "locale": "de_AT",
                    "timezone": "Europe/Vienna",
                    "consent": True,
                }
            ),
        )
        assert reply["statusCode"] == 201, reply
        contact_id = json.loads(reply["body"])["contact_id"]
        system.settle()
        [welcome] = [m for m in system.outbox() if "eva@example.de" in m["to"]]
        assert welcome["subject"] == "Willkommen bei Northwind Analytics, Eva!"
        assert welcome["text"].startswith("Sehr geehrte Frau Müller,")
        assert profile(system, contact_id)["timezone"] == "Europe/Vienna"
        bad = system.invoke_http(
            "POST",
            "/forms/newsletter",
            headers=JSON,
            body=json.dumps({"email": "x@example.de", "timezone": "Mars/Base", "consent": True}),
        )
        assert bad["statusCode"] == 400
        assert json.loads(bad["body"])["fields"][0]["field"] == "timezone"


PROFILE_CHANGES = """
id: requalify
name: Requalify
entry: {event: demo_booked}
steps:
  - update_contact: {set: {plan_interest: pro, seats: 25}, unset: [trial_source], add_tags: [demo]}
  - wait: {hours: 2}
  - update_contact: {remove_tags: [cold]}
"""


def test_update_contact_sets_unsets_and_tags_the_profile_once(run: Any) -> None:
    """A contact with attributes and tags from before books a demo at an odd minute, after other
    activity: the first step sets two attributes, drops one and adds a tag, the second (after a
    wait) takes a tag away; nothing else on the profile changes."""
    system = run(requalify=PROFILE_CHANGES)
    contact_id = contact(
        system, "requalify@example.com", plan_interest="basic", trial_source="ads", city="Köln"
    )
    system.client("dynamodb").update_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
        UpdateExpression="ADD tags :tags",
        ExpressionAttributeValues={":tags": {"SS": ["cold", "newsletter"]}},
    )
    event(system, "requalify@example.com", "product_used", feature="billing")
    system.advance(37 * 60 + 13)
    event(system, "requalify@example.com", "demo_booked")
    system.advance(600)
    after_first = profile(system, contact_id)
    assert (after_first["plan_interest"], after_first["seats"]) == ("pro", 25)
    assert "trial_source" not in after_first
    assert sorted(after_first["tags"]) == ["cold", "demo", "newsletter"]
    assert after_first["city"] == "Köln"
    system.advance(3 * 3600)
    after_second = profile(system, contact_id)
    assert sorted(after_second["tags"]) == ["demo", "newsletter"]
    assert (after_second["plan_interest"], after_second["seats"], after_second["city"]) == ("pro", 25, "Köln")
    assert after_second.get("stage") == after_first.get("stage")
    assert {e["status"] for e in executions(system, "requalify")} == {"SUCCEEDED"}
