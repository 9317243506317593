"""Lead routing to sales and the sales feedback loop, on the local runtime.

A contact that becomes an MQL is handed to sales exactly once — on the SNS topic and on the
EventBridge bus — even when the stream batch with the stage change is delivered twice; the hand-off
carries the complete profile and the whole interaction history (anonymous visits before sign-up and
a merged duplicate's events included); routing assigns the owner (territory by country, round robin
for the rest). A CRM webhook that keeps failing ends in the dead-letter queue once and the journey
goes on; one with ``include_handoff`` carries the signed document. Sales feedback moves the stage,
is recorded as events and is applied once per request id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import ACCOUNT, REGION, ROOT, LocalSystem
from leadflow.platform.dynamo import deserialize
from leadflow.platform.tables import keys
from tests.integration.conftest import events_of, post_event, stream_records
from tests.integration.conftest import sign_up as form_sign_up

JSON = {"content-type": "application/json"}
DAY = 86400
TRIGGER = "leadflow-local-trigger"
WEBHOOK_KEY = "w" * 40
LEADS_YAML = """
scoring:
  rules:
    - {id: demo, event: demo_requested, points: 60}
lifecycle:
  stages: [subscriber, lead, mql, sql, customer]
  rules:
    - {id: qualified, to: mql, when: {score: {gte: 50}}}
  recycle_after: {days: 30}
routing:
  hand_off_stage: mql
  assignment:
    - id: dach
      when: {attribute: country, in: [DE, AT, CH]}
      owners: [anna]
      strategy: fixed
    - id: everyone-else
      owners: [bob, carla, dan]
      strategy: round_robin
  default_owner: inbox
"""


class Receiver(BaseHTTPRequestHandler):
    """A CRM endpoint: ``/fail`` is down (503), ``/refuse`` refuses (410), anything else takes it."""

    deliveries: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.deliveries.append((self.path, dict(self.headers.items()), body))
        status = 503 if self.path.startswith("/fail") else 410 if self.path.startswith("/refuse") else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def crm_journeys(port: int) -> dict[str, str]:
    """One journey per CRM answer: entered by its event, a webhook to the receiver, then a tag
    (none after the push) that shows whether the journey went on."""
    base = f"http://127.0.0.1:{port}"
    # journey id: (name, entry event, the webhook step, the tag added after it)
    table = {
        "crm-down": (
            "CRM down",
            "crm_down_requested",
            f'{{name: Push to CRM, url: "{base}/fail/leads?token=secret-in-query", secret: default}}',
            "after_crm",
        ),
        "crm-refuses": (
            "CRM refuses",
            "crm_refuse_requested",
            f'{{url: "{base}/refuse/leads", secret: default}}',
            "after_refusal",
        ),
        "crm-push": (
            "CRM push",
            "crm_push_requested",
            f'{{url: "{base}/ok/leads", secret: default, include_handoff: true, payload: {{list: mql}}}}',
            None,
        ),
    }
    return {
        journey_id: f"id: {journey_id}\nname: {name}\nentry: {{event: {event}}}\nsteps:\n  - webhook: {webhook}\n"
        + (f"  - update_contact: {{add_tags: [{tag}]}}\n" if tag else "")
        for journey_id, (name, event, webhook, tag) in table.items()
    }


@pytest.fixture(scope="module")
def crm() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, crm: ThreadingHTTPServer) -> Iterator[LocalSystem]:
    content = tmp_path_factory.mktemp("content")
    shutil.copytree(ROOT / "templates", content / "templates")
    (content / "journeys").mkdir()
    shutil.copy(ROOT / "journeys" / "mql-handoff.yaml", content / "journeys")
    for name, text in crm_journeys(crm.server_port).items():
        (content / "journeys" / f"{name}.yaml").write_text(text)
    (content / "leads.yaml").write_text(LEADS_YAML)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADFLOW_LOCAL_WEBHOOK_KEY", WEBHOOK_KEY)
        with LocalSystem(background_pump=False, content_dir=content) as local:
            yield local


# --- helpers ---------------------------------------------------------------------------------------


def sign_up(system: LocalSystem, email: str, visitor_id: str | None = None) -> str:
    """Lea signs up through the form (with no browsing history unless a visitor id is given)."""
    return form_sign_up(system, email, first_name="Lea", visitor_id=visitor_id)


def profile(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
        ConsistentRead=True,
    )["Item"]
    return deserialize(item)


def update_profile(system: LocalSystem, contact_id: str, expression: str, **vals: Any) -> None:
    from leadflow.platform.dynamo import values

    system.client("dynamodb").update_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
        UpdateExpression=expression,
        ExpressionAttributeValues=values(**vals),
    )


def record(system: LocalSystem, **fields: Any) -> Event:
    event = Event(
        event_id=fields.pop("event_id", ids.new_event_id()),
        occurred_at=fields.pop("occurred_at", iso(utc_now())),
        **fields,
    )
    EventStore(system.client("dynamodb"), "leadflow-local-events", 30).record(event)
    return event


def become_mql(system: LocalSystem, contact_id: str) -> Event:
    """What the lead engine does when a contact crosses into MQL: the stage and its event."""
    update_profile(system, contact_id, "SET stage = :s, stage_at = :at", s="mql", at=iso(utc_now()))
    return record(
        system,
        type="stage_changed",
        contact_id=contact_id,
        source="leads",
        properties={"from": "subscriber", "to": "mql", "reason": "rule qualified"},
    )


def queued(url: str) -> list[dict[str, Any]]:
    """Every message body in a local queue, read from moto's backend (receiving with visibility
    timeout 0 shows only the first 10 messages, again and again)."""
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues[url.rsplit("/", 1)[-1]]
    return [json.loads(message.body) for message in queue._messages]


def handoffs_of(system: LocalSystem, contact_id: str) -> list[dict[str, Any]]:
    return [h for h in queued(system.sales_handoffs_url) if h["contact"]["contact_id"] == contact_id]


def bus_handoffs_of(system: LocalSystem, contact_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in queued(system.lead_events_url)
        if e["detail-type"] == "Lead handed to sales" and e["detail"]["contact"]["contact_id"] == contact_id
    ]


def feedback(system: LocalSystem, contact_id: str, **body: Any) -> dict[str, Any]:
    headers = {**JSON, "authorization": f"Bearer {system.admin_key}"}
    reply = system.invoke_http(
        "POST", f"/admin/contacts/{contact_id}/sales-feedback", headers=headers, body=json.dumps(body)
    )
    return {"status": reply["statusCode"], **json.loads(reply["body"])}


def dead_letters(system: LocalSystem) -> list[dict[str, Any]]:
    return queued(system.webhook_dead_letters_url)


# --- hand-off ----------------------------------------------------------------------------------------


def test_an_mql_is_handed_off_once_with_full_history_even_when_the_batch_comes_twice(
    system: LocalSystem,
) -> None:
    """Given a contact that browsed anonymously, signed up and absorbed a merged duplicate, when its
    MQL crossing's stream batch is delivered twice, sales gets exactly one hand-off on each channel,
    with the owner (territory rule: DE -> anna) and every event of all three histories."""
    system.invoke_http("GET", "/t/p.gif", query="vid=v-anon-route-01&url=https%3A%2F%2Fexample.com%2Fpricing")
    survivor = sign_up(system, "hanna@example.com", visitor_id="v-anon-route-01")
    duplicate = sign_up(system, "hanna.alt@example.com")
    system.settle()
    # the duplicate was merged into the survivor (what the contacts merge leaves behind)
    old = record(system, type="webinar_attended", contact_id=duplicate, source="api", properties={"n": 1})
    update_profile(system, duplicate, "SET merged_into = :m", m=survivor)
    update_profile(system, survivor, "SET country = :c ADD merged_ids :d", c="DE", d={duplicate})
    system.settle()

    crossing = become_mql(system, survivor)
    batch = [
        r for r in stream_records(system) if r["dynamodb"]["Keys"]["sk"]["S"] == keys.event(crossing.event_id)
    ]
    assert len(batch) == 1
    for _ in range(2):  # the same batch, delivered twice (at-least-once delivery)
        reply = system.handlers[TRIGGER]({"Records": batch}, lambda_context(TRIGGER))
        assert reply == {"batchItemFailures": []}
    system.settle()

    [handoff] = handoffs_of(system, survivor)
    [bus] = bus_handoffs_of(system, survivor)
    assert bus["source"] == "leadflow"
    assert bus["detail"]["handoff_id"] == handoff["handoff_id"]
    assert handoff["owner"] == "anna"
    assert handoff["assignment_rule"] == "dach"
    assert handoff["contact"]["email"] == "hanna@example.com"
    assert handoff["contact"]["country"] == "DE"
    assert handoff["reason"] == "Became a marketing-qualified lead"
    assert not {"lead_version", "rule_points", "activity", "pk", "sk"} & set(handoff["contact"])
    history = handoff["events"]
    kinds = {(e["type"], e.get("contact_id") or e.get("visitor_id")) for e in history}
    assert ("page_viewed", "v-anon-route-01") in kinds  # before the sign-up, anonymous
    assert ("form_submitted", survivor) in kinds
    assert ("webinar_attended", duplicate) in kinds  # the merged contact's history
    assert old.event_id in {e["event_id"] for e in history}
    assert ("stage_changed", survivor) in kinds
    times = [e["occurred_at"] for e in history]
    assert times == sorted(times, reverse=True)  # newest first
    assert handoff["history_truncated"] is False
    assert handoff["history_count"] == len(history)

    stored = profile(system, survivor)
    assert stored["owner"] == "anna"
    [assigned] = [e for e in events_of(system, survivor) if e["type"] == "lead_assigned"]
    assert assigned["properties"] == {"owner": "anna", "rule": "dach"}
    assert len([e for e in events_of(system, survivor) if e["type"] == "sales_notified"]) == 1
    executions = [e for e in system.executions() if e["journey"] == "mql-handoff" and survivor in e["name"]]
    assert len(executions) == 1


def test_round_robin_deals_owners_in_turn_and_the_reminder_keeps_the_owner(system: LocalSystem) -> None:
    contacts = [sign_up(system, f"rr{i}@example.com") for i in range(6)]
    system.settle()
    for contact_id in contacts:
        become_mql(system, contact_id)
        system.settle()  # one after the other: the turns follow the order
    owners = [handoffs_of(system, c)[0]["owner"] for c in contacts]
    assert sorted(owners[:3]) == ["bob", "carla", "dan"]
    assert owners[3:] == owners[:3]  # in turn
    assert {profile(system, c)["owner"] for c in contacts} == {"bob", "carla", "dan"}

    # no sales feedback within 2 days: a reminder to the same owner, no new assignment
    system.advance(2 * DAY + 4 * 3600)
    for contact_id, owner in zip(contacts, owners, strict=True):
        first, reminder = sorted(handoffs_of(system, contact_id), key=lambda h: h["notified_at"])
        assert reminder["reason"].startswith("Reminder")
        assert reminder["owner"] == owner
        assert reminder["handoff_id"] != first["handoff_id"]
        assert len([e for e in events_of(system, contact_id) if e["type"] == "lead_assigned"]) == 1
        assert len(bus_handoffs_of(system, contact_id)) == 2


def test_an_mql_who_unsubscribes_before_the_hand_off_runs_is_still_handed_to_sales(
    system: LocalSystem,
) -> None:
    """Email consent governs marketing email, not the hand-off: an MQL crossing reaches sales (and
    the reminder) whether the unsubscribe lands before or after the journey's step runs."""
    contact_id = sign_up(system, "late-handoff@example.com")
    system.settle()
    become_mql(system, contact_id)
    # the unsubscribe is stored before the stream starts the hand-off (a slow or redriven record)
    update_profile(system, contact_id, "SET consent_email = :r", r="revoked")
    record(system, type="unsubscribed", contact_id=contact_id, source="email")
    system.settle()
    first = handoffs_of(system, contact_id)
    assert [h["reason"] for h in first] == ["Became a marketing-qualified lead"]
    system.advance(2 * DAY + 4 * 3600)
    reasons = sorted(h["reason"] for h in handoffs_of(system, contact_id))
    assert reasons == ["Became a marketing-qualified lead", "Reminder: no sales feedback within 2 days"]
    assert not [e for e in events_of(system, contact_id) if e["type"] == "journey_exited"]


# --- webhooks ------------------------------------------------------------------------------------------


def test_a_webhook_that_keeps_failing_is_dead_lettered_once_and_the_journey_goes_on(
    system: LocalSystem,
) -> None:
    contact_id = sign_up(system, "crm-down@example.com")
    refused = sign_up(system, "crm-refused@example.com")
    system.settle()
    Receiver.deliveries = []
    post_event(system, "crm-down@example.com", "crm_down_requested")
    post_event(system, "crm-refused@example.com", "crm_refuse_requested")
    system.settle()
    attempts = [path for path, _, _ in Receiver.deliveries]
    assert attempts.count("/fail/leads?token=secret-in-query") == 6  # the first try and 5 retries
    assert attempts.count("/refuse/leads") == 1  # refused for good: not retried
    letters = {letter["journey_id"]: letter for letter in dead_letters(system)}
    assert set(letters) == {"crm-down", "crm-refuses"}
    down = letters["crm-down"]
    assert down["contact_id"] == contact_id
    assert down["error"] == "WebhookFailed"
    assert down["url_host"] == "127.0.0.1"
    assert "secret-in-query" not in json.dumps(down)  # the host only: no path, no query
    assert down["delivery_id"]
    assert down["at"]
    assert letters["crm-refuses"]["error"] == "WebhookRejected"
    # the journey went on after the dead letter
    assert "after_crm" in profile(system, contact_id)["tags"]
    assert "after_refusal" in profile(system, refused)["tags"]
    statuses = {e["journey"]: e["status"] for e in system.executions() if e["journey"].startswith("crm-")}
    assert statuses == {"crm-down": "SUCCEEDED", "crm-refuses": "SUCCEEDED"}
    assert [e["type"] for e in events_of(system, contact_id)].count("webhook_failed") == 1


def test_a_signed_webhook_can_carry_the_hand_off_document(system: LocalSystem) -> None:
    system.invoke_http("GET", "/t/p.gif", query="vid=v-anon-crm-0001&url=https%3A%2F%2Fexample.com%2Fdemo")
    contact_id = sign_up(system, "crm-push@example.com", visitor_id="v-anon-crm-0001")
    system.settle()
    Receiver.deliveries = []
    post_event(system, "crm-push@example.com", "crm_push_requested")
    system.settle()
    [(path, headers, body)] = Receiver.deliveries
    assert path == "/ok/leads"
    stamp, signature = (part.split("=", 1)[1] for part in headers["X-Leadflow-Signature"].split(","))
    expected = hmac.new(WEBHOOK_KEY.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    document = json.loads(body)
    assert document["payload"] == {"list": "mql"}
    handoff = document["handoff"]
    assert handoff["contact"]["contact_id"] == contact_id
    assert handoff["contact"]["email"] == "crm-push@example.com"
    types = {e["type"] for e in handoff["events"]}
    assert {"page_viewed", "form_submitted", "crm_push_requested"} <= types
    assert dead_letters(system) == [] or all(d["journey_id"] != "crm-push" for d in dead_letters(system))


# --- sales feedback ----------------------------------------------------------------------------------


def test_sales_feedback_moves_the_stage_records_events_and_is_applied_once(system: LocalSystem) -> None:
    accepted, rejected, won = (sign_up(system, f"fb-{n}@example.com") for n in ("acc", "rej", "won"))
    system.settle()
    for contact_id in (accepted, rejected, won):
        become_mql(system, contact_id)
    system.settle()

    reply = feedback(system, accepted, outcome="accepted", owner="zoe", request_id="crm-1")
    assert reply == {
        "status": 200,
        "contact_id": accepted,
        "outcome": "accepted",
        "stage": "sql",
        "previous_stage": "mql",
        "changed": True,
    }
    again = feedback(system, accepted, outcome="accepted", owner="zoe", request_id="crm-1")
    assert again["status"] == 200
    assert again["changed"] is False
    assert again["stage"] == "sql"
    kinds = [e["type"] for e in events_of(system, accepted)]
    assert kinds.count("sales_feedback") == 1
    [change] = [
        e for e in events_of(system, accepted) if e["type"] == "stage_changed" and e["source"] == "sales"
    ]
    assert change["properties"] == {"from": "mql", "to": "sql", "reason": "sales: accepted"}
    assert profile(system, accepted)["owner"] == "zoe"  # sales named who took it
    assigned = [e["properties"] for e in events_of(system, accepted) if e["type"] == "lead_assigned"]
    assert {"owner": "zoe", "rule": "sales"} in assigned
    assert len(assigned) == 2  # routing's, then sales'

    reply = feedback(system, rejected, outcome="rejected", reason="no budget")
    assert reply["stage"] == "lead"
    assert reply["changed"] is True
    assert feedback(system, rejected, outcome="rejected", reason="no budget")["changed"] is False  # a retry
    rejected_profile = profile(system, rejected)
    assert rejected_profile["stage"] == "lead"
    assert rejected_profile["stage_hold_until"] > iso(utc_now())
    [verdict] = [e for e in events_of(system, rejected) if e["type"] == "sales_feedback"]
    assert verdict["properties"]["outcome"] == "rejected"
    assert verdict["properties"]["reason"] == "no budget"

    reply = feedback(system, won, outcome="won", deal_value=1200.5, currency="EUR", request_id="deal-7")
    assert reply["stage"] == "customer"
    assert (
        feedback(system, won, outcome="won", deal_value=1200.5, currency="EUR", request_id="deal-7")[
            "changed"
        ]
        is False
    )
    [deal] = [e for e in events_of(system, won) if e["type"] == "deal_won"]
    assert deal["properties"]["revenue"] == 1200.5
    assert deal["properties"]["currency"] == "EUR"
    system.settle()
    report = system.invoke_http(
        "GET", "/admin/reports/attribution", headers={"authorization": f"Bearer {system.admin_key}"}
    )
    assert json.loads(report["body"])["revenue_by_goal"]["deal_won"] == 1200.5  # the reports count it

    # the hand-off journeys saw the feedback: no reminder; the won one left as a customer
    system.advance(3 * DAY)
    for contact_id in (accepted, rejected, won):
        assert len(handoffs_of(system, contact_id)) == 1
    states = {e["name"]: e["status"] for e in system.executions() if e["journey"] == "mql-handoff"}
    assert all(states[name] == "SUCCEEDED" for name in states if name.endswith((accepted, rejected, won)))


def test_sales_feedback_errors_name_the_field(system: LocalSystem) -> None:
    contact_id = sign_up(system, "fb-errors@example.com")
    assert feedback(system, "c-no-such-contact", outcome="won")["status"] == 404
    bad = feedback(system, contact_id, outcome="maybe")
    assert bad["status"] == 400
    assert bad["fields"][0]["field"] == "outcome"
    negative = feedback(system, contact_id, outcome="won", deal_value=-1)
    assert negative["status"] == 400
    assert negative["fields"][0]["field"] == "deal_value"
    currency = feedback(system, contact_id, outcome="won", deal_value=10, currency="euro")
    assert currency["status"] == 400
    assert currency["fields"][0]["field"] == "currency"


def test_a_rejected_lead_is_not_promoted_again_during_recycle_after(system: LocalSystem) -> None:
    """Driven by the lead engine: a demo request scores 60 and makes the contact an MQL (one
    hand-off); sales rejects it; another demo request within 30 days does not promote it again."""
    pytest.importorskip("leadflow.leads.engine")
    contact_id = sign_up(system, "recycle@example.com")
    system.settle()
    post_event(system, "recycle@example.com", "demo_requested")
    system.settle()
    assert profile(system, contact_id)["stage"] == "mql"
    assert len(handoffs_of(system, contact_id)) == 1
    assert feedback(system, contact_id, outcome="rejected", request_id="r-1")["stage"] == "lead"
    system.advance(DAY)
    post_event(system, "recycle@example.com", "demo_requested")
    system.settle()
    assert profile(system, contact_id)["stage"] == "lead"
    assert len(handoffs_of(system, contact_id)) == 1
