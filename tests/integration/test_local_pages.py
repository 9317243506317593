"""The operator pages under ``/_local/``, over real HTTP on the local system: a sign-up shows up as
a contact, an execution with its state-by-state history in virtual time, an outbox message and in
the dashboard figures. Each test gets a fresh system, so the figures are exact."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from leadflow.leads.model import load_lead_model
from leadflow.local.system import ROOT
from tests.e2e.conftest import Reply, Site, local_site

SIGN_UP_POINTS = next(
    r.points for r in load_lead_model(ROOT / "leads.yaml").scoring.rules if r.id == "newsletter-signup"
)
"""A newsletter sign-up's points in the shipped leads.yaml."""

TWO_DAYS = 2 * 86400


@pytest.fixture
def site() -> Iterator[Site]:
    with local_site(background_pump=False) as running:
        yield running


def sign_up(site: Site, email: str, first_name: str, visitor_id: str) -> None:
    reply = site.post_form(
        "/forms/newsletter",
        urlencode({"email": email, "first_name": first_name, "consent": "on", "visitor_id": visitor_id}),
    )
    assert reply.status == 303
    assert reply.headers["Location"] == "/thanks"


def html_page(site: Site, path: str) -> str:
    reply = site.get(path)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    return reply.body.decode()


def json_of(reply: Reply) -> Any:
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/json"
    return reply.json()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_sign_up_shows_on_every_page(site: Site) -> None:
    sign_up(site, "lin@example.com", "Lin", "v-lin-00000001")

    # contacts: the profile, in HTML and JSON
    contacts = json_of(site.get("/_local/contacts.json"))
    assert isinstance(contacts, list)
    [contact] = contacts
    assert (contact["email"], contact["first_name"], contact["consent_email"], contact["score"]) == (
        "lin@example.com",
        "Lin",
        "granted",
        SIGN_UP_POINTS,  # the score consumer has run: the page shows settled data
    )
    assert "pk" not in contact
    page = html_page(site, "/_local/contacts")
    assert "<td>lin@example.com</td>" in page
    assert "<td>Lin</td>" in page
    assert "<td>granted</td>" in page
    assert f"<td>{SIGN_UP_POINTS}</td>" in page
    assert f"<td>{contact['contact_id']}</td>" in page

    # executions: the list links to the execution, which is parked in its Wait state
    listing = html_page(site, "/_local/executions/page")
    links = re.findall(r'href="(/_local/execution\?arn=[^"]+)"', listing)
    assert len(links) == 1
    assert f"welcome-{contact['contact_id']}</a>" in listing
    assert '<td class="status-RUNNING">RUNNING</td><td>Wait 2 days</td>' in listing
    history = html_page(site, html.unescape(links[0]))
    for state in ("Send email: welcome", "Wait 2 days"):
        assert f"<td>{state}</td>" in history
    for event_type in ("ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskSucceeded"):
        assert f'data-type="{event_type}"' in history
    assert 'data-type="WaitStateEntered"' in history
    assert 'data-type="WaitStateExited"' not in history
    assert "lambda:invoke" in history

    # outbox: the welcome email
    outbox = html_page(site, "/_local/outbox/page")
    [welcome] = site.outbox()
    assert "<td>lin@example.com</td>" in outbox
    assert "Welcome to Northwind Analytics, Lin!" in outbox
    assert f"<td>{welcome['id']}</td>" in outbox

    # the dashboard shows the figures and links to every page
    dashboard = html_page(site, "/_local/")
    for link in ("/_local/executions/page", "/_local/outbox/page", "/_local/contacts", "/_local/figures"):
        assert f'href="{link}"' in dashboard
    assert '<td>form_submitted</td><td class="n">1</td>' in dashboard
    assert '<td>welcome</td><td class="status-RUNNING">RUNNING</td><td class="n">1</td>' in dashboard

    # two virtual days later the journey has finished; its times are virtual, not wall clock
    assert site.advance(TWO_DAYS).status == 200
    [arn] = parse_qs(urlsplit(html.unescape(links[0])).query)["arn"]
    assert arn.endswith(f":welcome-{contact['contact_id']}")
    execution = json_of(site.get(f"/_local/execution.json?{urlencode({'arn': arn})}"))
    assert isinstance(execution, dict)
    # one task decides the follow-up, sends it and leaves the journey: it ends the execution
    assert (execution["status"], execution["state"]) == (
        "SUCCEEDED",
        "Evaluate: Opened or clicked the welcome email?",
    )
    assert execution["start_source"] == "entry event"
    rows = execution["history"]
    states = [r["state"] for r in rows if r["type"].endswith("StateEntered")]
    assert states == [
        "Send email: welcome",
        "Wait 2 days",
        "Evaluate: Opened or clicked the welcome email?",
    ]
    entered = next(r for r in rows if r["type"] == "WaitStateEntered")
    exited = next(r for r in rows if r["type"] == "WaitStateExited")
    assert at(exited["time"]) - at(entered["time"]) == timedelta(seconds=TWO_DAYS)
    assert at(exited["recorded"]) - at(entered["recorded"]) < timedelta(minutes=5)  # moto's wall clock
    assert at(execution["started"]) == at(contact["created_at"])  # when the form was submitted
    assert at(execution["stopped"]) == at(exited["time"])
    follow_up = site.outbox()[1]
    assert follow_up["time"] is not None
    assert abs(at(str(follow_up["time"])) - at(exited["time"])) < timedelta(seconds=1)
    history = html_page(site, html.unescape(links[0]))
    assert "<td>Evaluate: Opened or clicked the welcome email?</td>" in history
    assert 'data-type="ExecutionSucceeded"' in history


def test_figures_count_what_happened(site: Site) -> None:
    empty = json_of(site.get("/_local/figures"))
    assert isinstance(empty, dict)
    assert empty["contacts"] == 0
    assert empty["events"] == {"total": 0, "by_type": {}}
    journeys = {"welcome", "double-opt-in", "trial-nurture", "mql-handoff", "win-back", "webinar"}
    assert empty["executions"] == {j: {} for j in journeys}
    assert empty["messages"] == {"total": 0, "by_status": {}, "by_reason": {}}

    sign_up(site, "mo@example.com", "Mo", "v-mo-000000001")
    sign_up(site, "kai@example.com", "Kai", "v-kai-00000001")
    # Mo unsubscribes with the one-click link of the welcome email
    [to_mo] = [m for m in site.outbox() if "mo@example.com" in m["to"]]
    headers = to_mo["headers"]
    assert isinstance(headers, dict)
    target = re.match(r"<([^>]+)>", headers["List-Unsubscribe"])
    assert target is not None
    done = site.request(
        "POST",
        urlsplit(target.group(1)).path,
        b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status == 200
    assert site.advance(TWO_DAYS).status == 200

    figures = json_of(site.get("/_local/figures"))
    assert isinstance(figures, dict)
    assert figures["contacts"] == 2
    assert figures["events"]["by_type"] == {
        "email_sent": 3,
        "form_submitted": 2,
        "unsubscribed": 1,
        "journey_entered": 2,
        "journey_completed": 1,
        "journey_exited": 1,
        # the lead engine: +10 per sign-up, -20 for Mo's unsubscribe; both became subscribers
        "score_changed": 3,
        "stage_changed": 2,
        "contact_identified": 2,  # each sign-up came with its visitor id
    }
    assert figures["events"]["total"] == 17
    # Mo's unsubscribe ended Mo's execution at once, in its 2-day wait (stopped on purpose: ABORTED)
    assert figures["executions"] == {
        j: {"ABORTED": 1, "SUCCEEDED": 1} if j == "welcome" else {} for j in journeys
    }
    # two welcomes and Kai's follow-up sent; Mo left the journey when unsubscribed: no follow-up
    assert figures["messages"] == {"total": 3, "by_status": {"sent": 3}, "by_reason": {}}
    for name in ("trigger", "score", "report"):  # every event reached every stream consumer
        assert figures["consumers"][name] == {
            "function": f"leadflow-local-{name}",
            "delivered": 17,
            "dead_lettered": 0,
            "pending": 0,
        }
    assert figures["dead_letter_queues"] == {"trigger": 0, "score": 0, "report": 0}
    assert at(figures["now"]) - at(empty["now"]) == timedelta(seconds=TWO_DAYS)

    # a record in an on-failure queue shows as that queue's depth
    site.system.client("sqs").send_message(QueueUrl=site.system.dlq_urls["score"], MessageBody="{}")
    assert json_of(site.get("/_local/figures"))["dead_letter_queues"] == {
        "trigger": 0,
        "score": 1,
        "report": 0,
    }

    dashboard = html_page(site, "/_local/")
    assert '<td>welcome</td><td class="status-SUCCEEDED">SUCCEEDED</td><td class="n">1</td>' in dashboard
    assert '<td>welcome</td><td class="status-ABORTED">ABORTED</td><td class="n">1</td>' in dashboard
    assert '<td>journey_exited</td><td class="n">1</td>' in dashboard
    assert '<a href="/_local/contacts">2 contacts</a>' in dashboard


def test_hostile_contact_fields_are_escaped(site: Site) -> None:
    hostile = "<script>alert(1)</script>"
    sign_up(site, "eve@example.com", hostile, "v-eve-00000001")
    [contact] = json_of(site.get("/_local/contacts.json"))
    assert contact["first_name"] == hostile  # stored as given: the page must escape it
    for path in ("/_local/contacts", "/_local/outbox/page"):
        page = html_page(site, path)
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the outbox subject carries the name too (escaped above); the dashboard and lists stay clean
    for path in ("/_local/", "/_local/executions/page"):
        assert "<script>" not in html_page(site, path)


def test_execution_page_answers_for_a_missing_or_unknown_arn(site: Site) -> None:
    missing = site.get("/_local/execution")
    assert missing.status == 400
    assert b"arn is required" in missing.body
    unknown_arn = "arn:aws:states:us-east-1:123456789012:execution:leadflow-local-welcome:<b>nope</b>"
    unknown = site.get(f"/_local/execution?{urlencode({'arn': unknown_arn})}")
    assert unknown.status == 404
    assert b"<b>" not in unknown.body
    assert b"&lt;b&gt;nope&lt;/b&gt;" in unknown.body
    assert site.get("/_local/nothing-here").status == 404
    # the JSON routes are unchanged
    assert json_of(site.get("/_local/outbox")) == []
    assert json_of(site.get("/_local/executions")) == []
