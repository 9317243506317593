"""Journeys that react: ``wait_for`` on the Step Functions callback pattern, history read in time
order, exits that end a waiting execution at once — on the local runtime with virtual time.

Histories are realistic: the awaited event comes after journey, step and score events whose ids
are hashes (not time-ordered), at odd moments (23:59:59.999, two events in one millisecond)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.journeys.runtime.stops import EXIT, stopped_on_purpose
from leadflow.kernel.clock import iso
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem
from leadflow.platform.tables import keys
from tests.integration.conftest import JSON, events_of, stream_records
from tests.integration.test_journey_runtime import (
    DAY,
    contact,
    enrollment,
    event,
    executions,
    profile,
    sent,
)
from tests.integration.test_journey_runtime import QUIET as quiet_hours

# Monday 2026-01-05 23:59:59.999 UTC (00:59:59.999 in Berlin)
ODD = datetime(2026, 1, 5, 23, 59, 59, 999000, tzinfo=UTC).timestamp()

WEBINAR = """
id: webinar
name: Webinar follow-up
entry: {event: webinar_registered}
exit:
  unsubscribed: true
  events: [{event: purchase}]
steps:
  - send_email: {id: invite, template: welcome, purpose: transactional}
  - update_contact: {add_points: 5, add_tags: [registered]}
  - wait: {hours: 2}
  - send_email: {id: reminder, template: welcome-followup-nudge, purpose: transactional}
  - wait_for:
      id: attended
      event: webinar_attended
      where: {webinar: w42}
      timeout: {days: 2}
      on_event:
        - update_contact: {add_tags: [attended]}
      on_timeout:
        - update_contact: {add_tags: [missed]}
"""


def post_event(system: LocalSystem, email: str, kind: str, *, event_id: str, **properties: Any) -> None:
    """A server event (``POST /admin/events``) with the client's own event id (ids that sort anywhere)."""
    body = {"type": kind, "email": email, "event_id": event_id, "properties": properties}
    headers = JSON | {"authorization": f"Bearer {system.admin_key}"}
    reply = system.invoke_http("POST", "/admin/events", headers=headers, body=json.dumps(body))
    assert reply["statusCode"] == 202, reply


def entered(system: LocalSystem, execution_arn: str, state: str) -> int:
    """How often the execution entered the state."""
    history = system.history(execution_arn)
    return sum(1 for item in history if item.get("stateEnteredEventDetails", {}).get("name") == state)


def status(system: LocalSystem, journey: str) -> tuple[str, str | None]:
    [execution] = executions(system, journey)
    return execution["status"], execution["state"]


def test_wait_for_after_other_steps_reacts_at_once_to_the_event_among_hash_id_events(run: Any) -> None:
    """The wait is the fifth step; journey, step and score events (hash ids) come before and after
    the awaited one, which happens at 23:59:59.999 in the same millisecond as another event."""
    system = run(clock_start=ODD - 2 * 3600 - 10, webinar=WEBINAR)
    cid = contact(system, "ada@example.com")
    event(system, "ada@example.com", "webinar_registered", webinar="w42")
    system.settle()
    system.advance(2 * 3600)  # the reminder is sent; now parked on the token
    assert status(system, "webinar") == ("RUNNING", "Wait for webinar_attended")
    assert system.clock.parked == 1
    system.advance(10)  # 23:59:59.999
    # an event of another webinar, in the same millisecond, with an id that sorts above
    post_event(system, "ada@example.com", "webinar_attended", event_id="zzzz-other", webinar="w41")
    post_event(system, "ada@example.com", "webinar_attended", event_id="0000-attended", webinar="w42")
    at = iso(system.clock.now_datetime())
    assert at == "2026-01-05T23:59:59.999Z"
    system.settle()  # no clock advance: the stream answers the token
    assert status(system, "webinar") == ("SUCCEEDED", "Update contact: tag attended")
    tagged = profile(system, cid)
    assert "attended" in tagged["tags"]
    assert "missed" not in tagged["tags"]
    assert tagged["updated_at"] == at  # the on_event path ran at the event's moment (0 s later)
    assert iso(system.clock.now_datetime()) == at
    assert not enrollment(system, cid, "webinar").get("waiting")


def test_the_timeout_path_runs_on_the_virtual_clock(run: Any) -> None:
    system = run(clock_start=ODD, webinar=WEBINAR)
    cid = contact(system, "bo@example.com")
    event(system, "bo@example.com", "webinar_registered", webinar="w42")
    system.advance(2 * 3600)
    event(system, "bo@example.com", "webinar_attended", webinar="w41")  # another webinar
    system.advance(2 * DAY - 1)
    assert status(system, "webinar") == ("RUNNING", "Wait for webinar_attended")
    system.advance(1)
    assert status(system, "webinar") == ("SUCCEEDED", "Update contact: tag missed")
    assert "missed" in profile(system, cid)["tags"]
    # a late event answers nothing (the token's task ended) and fails nothing
    event(system, "bo@example.com", "webinar_attended", webinar="w42")
    system.settle()
    assert system.dead_letters("trigger") == []
    assert "attended" not in profile(system, cid)["tags"]


COUNT_FROM = """
id: onboarding
name: Onboarding
entry: {event: trial_started}
steps:
  - send_email: {id: hello, template: welcome, purpose: transactional}
  - wait: {days: 1}
  - wait_for:
      id: connected
      event: integration_connected
      timeout: {days: 3}
      count_from: COUNT
      on_event:
        - update_contact: {add_tags: [connected]}
      on_timeout:
        - send_email: {id: help, template: welcome-followup-nudge, purpose: transactional}
"""


def test_an_event_before_the_wait_counts_from_entry_only_when_the_step_says_so(run: Any) -> None:
    system = run(
        clock_start=ODD,
        entry=COUNT_FROM.replace("COUNT", "entry"),
        wait=COUNT_FROM.replace("COUNT", "wait").replace("id: onboarding", "id: onboarding-b"),
    )
    cid = contact(system, "cy@example.com")
    event(system, "cy@example.com", "trial_started")
    system.advance(3600)
    event(system, "cy@example.com", "integration_connected", provider="hubspot")  # during the 1-day wait
    system.advance(DAY)  # both reach their wait_for now
    entry_run = next(e for e in system.executions() if e["journey"] == "onboarding")
    wait_run = next(e for e in system.executions() if e["journey"] == "onboarding-b")
    assert (entry_run["status"], entry_run["state"]) == ("SUCCEEDED", "Update contact: tag connected")
    assert "connected" in profile(system, cid)["tags"]
    assert wait_run["status"] == "RUNNING"  # count_from wait: the earlier event does not count
    system.advance(3 * DAY)
    assert next(e for e in system.executions() if e["journey"] == "onboarding-b")["status"] == "SUCCEEDED"
    help_mails = [m for m in system.outbox() if "cy@example.com" in m["to"]]
    assert len(help_mails) == 3  # two hellos and the help email of onboarding-b only


def test_duplicate_and_out_of_order_deliveries_answer_once(run: Any) -> None:
    """The awaited event, then an older matching event delivered late, then the awaited event's
    stream record delivered twice more: the on_event path runs once, no delivery fails."""
    system = run(clock_start=ODD, webinar=WEBINAR)
    cid = contact(system, "di@example.com")
    event(system, "di@example.com", "webinar_registered", webinar="w42")
    system.advance(2 * 3600)
    system.advance(0.5)
    post_event(system, "di@example.com", "webinar_attended", event_id="e-newer", webinar="w42")
    store = EventStore(system.client("dynamodb"), "leadflow-local-events", 400)
    older = Event(
        event_id="e-older",
        type="webinar_attended",
        occurred_at=iso(system.clock.now_datetime() - timedelta(milliseconds=1)),
        contact_id=cid,
        source="api",
        properties={"webinar": "w42"},
    )
    store.record(older)  # behind the newer one in the stream
    system.settle()
    newer = keys.event(
        next(
            e["event_id"]
            for e in events_of(system, cid)
            if e["type"] == "webinar_attended" and e["event_id"] != "e-older"
        )
    )
    [record] = [r for r in stream_records(system) if r["dynamodb"]["Keys"]["sk"]["S"] == newer]
    trigger = system.handlers["leadflow-local-trigger"]
    for _ in range(2):
        result = trigger({"Records": [record, record]}, lambda_context("leadflow-local-trigger"))
        assert result == {"batchItemFailures": []}, result
    system.settle()
    assert status(system, "webinar") == ("SUCCEEDED", "Update contact: tag attended")
    # the last step left the journey: once
    assert [e["type"] for e in events_of(system, cid)].count("journey_completed") == 1
    assert sorted(profile(system, cid)["tags"]) == ["attended", "registered"]
    assert system.dead_letters("trigger") == []


def test_an_exit_ends_a_waiting_execution_at_once(run: Any) -> None:
    """A purchase while the contact waits on the token: the execution leaves (exited) at once, with
    no clock advance; one in a plain Wait is stopped and its leave recorded."""
    system = run(clock_start=ODD, webinar=WEBINAR)
    waiting = contact(system, "ed@example.com")
    sleeping = contact(system, "fe@example.com")
    event(system, "ed@example.com", "webinar_registered", webinar="w42")
    system.advance(2 * 3600)
    event(system, "fe@example.com", "webinar_registered", webinar="w42")  # now in its 2-hour wait
    system.settle()
    before = system.clock.now()
    event(system, "ed@example.com", "purchase", plan="pro")
    event(system, "fe@example.com", "purchase", plan="pro")
    system.settle()
    assert system.clock.now() == before
    runs = {e["name"].split("-", 1)[1]: e for e in executions(system, "webinar")}
    assert (runs[waiting]["status"], runs[waiting]["state"]) == ("SUCCEEDED", "Contact exited")
    assert (runs[sleeping]["status"], runs[sleeping]["state"]) == ("ABORTED", "Wait 2 hours")
    for cid in (waiting, sleeping):
        item = enrollment(system, cid, "webinar")
        assert (item["status"], item["exit_reason"]) == ("exited", "converted: purchase")
        exited = [e for e in events_of(system, cid) if e["type"] == "journey_exited"]
        assert [e["properties"]["reason"] for e in exited] == ["converted: purchase"]
    assert enrollment(system, sleeping, "webinar")["stopped_reason"] == "converted: purchase"
    assert "stopped_reason" not in enrollment(system, waiting, "webinar")
    # stopped on purpose, as the redrive tool reads it: never resumed
    stopped = system.client("stepfunctions").describe_execution(executionArn=runs[sleeping]["arn"])
    assert stopped_on_purpose(stopped) == EXIT
    assert stopped["cause"] == "exit: converted: purchase"
    system.advance(3 * DAY)
    assert len(sent(system, "fe@example.com")) == 1  # the reminder never went
    assert system.clock.parked == 0


DID_WITHIN = """
id: pricing
name: Pricing interest
entry: {event: trial_started}
steps:
  - update_contact: {add_points: 3}
  - wait: {hours: 1}
  - branch:
      name: Looked at pricing?
      if: {did: pricing_viewed, within: {hours: 1}, at_least: 2}
      then: [{update_contact: {add_tags: [pricing]}}]
      else: [{update_contact: {add_tags: [no_pricing]}}]
"""


def test_did_within_counts_events_in_time_order_across_pages(run: Any) -> None:
    """A history of more than one page (150 events written with ids that sort oldest-last): the
    two pricing views in the last hour are counted, the one before it is not."""
    system = run(clock_start=ODD, pricing=DID_WITHIN)
    cid = contact(system, "gi@example.com")
    store = EventStore(system.client("dynamodb"), "leadflow-local-events", 400)
    now = system.clock.now_datetime()
    # older history: ids that sort ABOVE every newer one (an id-ordered read would stop at once)
    for i in range(150):
        store.record(
            Event(
                event_id=f"zz-{i:04d}",
                type="page_viewed" if i else "pricing_viewed",
                occurred_at=iso(now - timedelta(hours=3, seconds=i)),
                contact_id=cid,
                source="pixel",
            )
        )
    event(system, "gi@example.com", "trial_started")
    system.advance(1800)
    post_event(system, "gi@example.com", "pricing_viewed", event_id="00-first")
    system.advance(1799.999)
    post_event(system, "gi@example.com", "pricing_viewed", event_id="00-second")
    system.advance(0.001)
    assert "pricing" in profile(system, cid)["tags"]
    history = list(store.history(keys.contact(cid), since=now - timedelta(hours=4)))
    assert len(history) > 150
    moments = [str(e["at"]) for e in history]
    assert moments == sorted(moments)
    newest = list(store.history(keys.contact(cid), newest_first=True, limit=3))
    assert [e["event_id"] for e in newest][:1] != ["zz-0000"]
    bounded = list(
        store.history(keys.contact(cid), since=now - timedelta(hours=3), until=now - timedelta(hours=3))
    )
    assert [e["event_id"] for e in bounded] == ["zz-0000"]  # both bounds inclusive to the millisecond


ANY_ENTRY = """
id: sales-ready
name: Sales ready
entry: {any: [{score_reaches: 40}, {stage: mql}]}
steps:
  - update_contact: {add_tags: [sales_ready]}
  - wait: {days: 1}
"""


def test_score_or_stage_entry_enrols_once(run: Any) -> None:
    system = run(clock_start=ODD, ready=ANY_ENTRY)
    cid = contact(system, "hu@example.com")
    trigger = system.modules["trigger"].service
    base = {"contact_id": cid, "source": "journey", "occurred_at": iso(system.clock.now_datetime())}
    assert trigger.handle(
        Event(event_id="s1", type="score_changed", properties={"from": 10, "to": 45}, **base)
    ) == ["sales-ready"]
    assert trigger.handle(Event(event_id="s2", type="stage_changed", properties={"to": "mql"}, **base)) == []
    system.settle()
    assert len(executions(system, "sales-ready")) == 1
    assert json.loads(json.dumps(enrollment(system, cid, "sales-ready")))["entries"] == 1


WEBINAR_AT = """
id: webinar-day
name: Webinar day
entry: {event: webinar_registered}
steps:
  - wait_until: {at: "2026-01-08T17:00:00+01:00"}
  - send_email: {id: live, template: welcome, purpose: transactional}
"""


def test_wait_until_a_fixed_moment_is_one_wait_state(run: Any) -> None:
    system = run(clock_start=ODD, day=WEBINAR_AT)
    contact(system, "io@example.com")
    event(system, "io@example.com", "webinar_registered")
    system.advance(5 * DAY)
    [(_, when)] = sent(system, "io@example.com")
    assert when == datetime(2026, 1, 8, 16, 0, tzinfo=UTC)


QUIET = quiet_hours.replace("  - wait: {hours: 14}\n", "")  # sends at entry


def test_a_send_deferred_to_eight_in_berlin_goes_out_at_exactly_seven_utc(run: Any) -> None:
    """Winter: 08:00 in Berlin is 07:00:00Z; the virtual clock has fractions (06:12:34.567)."""
    start = datetime(2026, 1, 5, 6, 12, 34, 567000, tzinfo=UTC).timestamp()
    system = run(clock_start=start, quiet=QUIET)
    contact(system, "ju@example.com")
    event(system, "ju@example.com", "trial_started")
    system.advance(DAY)
    [(_, when)] = sent(system, "ju@example.com")
    assert when == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    [execution] = executions(system, "quiet")
    # the first attempt deferred itself, the second sent: no third (a wake at 06:59:59 would retry)
    assert entered(system, execution["arn"], "Send email: hello") == 2


def test_events_written_before_the_index_are_backfilled_into_history(run: Any) -> None:
    """A deployed stage upgraded to the ``by_time`` index: its older events have no ``at`` until the
    one-off backfill gives it to them (twice is harmless)."""
    from leadflow.events.store import backfill_event_times
    from leadflow.platform.dynamo import serialize

    system = run(clock_start=ODD)
    ddb = system.client("dynamodb")
    old = {
        "pk": keys.contact("c-old"),
        "sk": keys.event("e-old"),
        "event_id": "e-old",
        "type": "pricing_viewed",
        "occurred_at": "2025-12-24T10:00:00.5Z",
        "contact_id": "c-old",
        "source": "pixel",
    }
    ddb.put_item(TableName="leadflow-local-events", Item=serialize(old))  # as the old code wrote it
    store = EventStore(ddb, "leadflow-local-events", 400)
    store.record(
        Event(
            event_id="e-new",
            type="page_viewed",
            occurred_at=iso(system.clock.now_datetime()),
            contact_id="c-old",
            source="pixel",
        )
    )
    assert [e["event_id"] for e in store.history(keys.contact("c-old"))] == ["e-new"]
    assert backfill_event_times(ddb, "leadflow-local-events") == 1
    assert backfill_event_times(ddb, "leadflow-local-events") == 0
    history = list(store.history(keys.contact("c-old")))
    assert [e["event_id"] for e in history] == ["e-old", "e-new"]
    assert history[0]["at"] == "2025-12-24T10:00:00.500Z#e-old"
