"""The lead engine on the local system: decay over virtual time, caps, lifecycle stages exactly
once under redelivery, live segment membership, anonymous history folded in at identification."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.journeys.conditions import Did
from leadflow.kernel import ids
from leadflow.kernel.clock import iso
from leadflow.leads.model import load_lead_model
from leadflow.leads.scoring import counter_key, current_score, display_score, replay
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import ROOT, LocalSystem
from leadflow.platform.dynamo import deserialize
from leadflow.platform.tables import keys
from leadflow.segments.definitions import Segment
from leadflow.segments.store import SegmentMembership
from tests.integration.conftest import events_of, post_event, stream_records
from tests.integration.conftest import sign_up as form_sign_up

JSON = {"content-type": "application/json"}
DAY = 86400
START = datetime(2026, 2, 2, 9, 0, tzinfo=UTC).timestamp()
SCORE = "leadflow-local-score"
CONTACTS = "leadflow-local-contacts"

LEADS = """
scoring:
  half_life: {days: 30}
  rules:
    - {id: signup, event: form_submitted, points: 10}
    - {id: pricing, event: page_viewed, url_contains: /pricing, points: 10, cap: 20, cap_window: {days: 7}}
    - {id: webinar, event: webinar_attended, points: 40}
    - {id: unsubscribed, event: unsubscribed, points: -20}
fit:
  rules:
    - {id: size, when: {attribute: company_size, gte: 50}, points: 20}
lifecycle:
  rules:
    - {id: subscribed, to: subscriber, when: {consent: email}}
    - id: qualified
      to: mql
      when: {all: [{score: {gte: 50}}, {attribute: fit_score, gte: 20}]}
"""
SEGMENTS = {
    "hot": "id: hot\nname: Hot\nwhen: {all: [{score: {gte: 50}}, {consent: email}]}\n",
    "browsers": "id: browsers\nname: Browsers\nwhen: {did: page_viewed, at_least: 2, within: {days: 7}}\n",
    "big": "id: big\nname: Big companies\nwhen: {attribute: company_size, gte: 50}\n",
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    content = tmp_path_factory.mktemp("content")
    (content / "journeys").mkdir()
    (content / "templates").symlink_to(ROOT / "templates")
    (content / "leads.yaml").write_text(LEADS)
    (content / "segments").mkdir()
    for name, text in SEGMENTS.items():
        (content / "segments" / f"{name}.yaml").write_text(text)
    with LocalSystem(background_pump=False, content_dir=content, clock_start=START) as local:
        yield local


def sign_up(system: LocalSystem, email: str, visitor_id: str | None = None) -> str:
    """Ada signs up through the form (with no browsing history unless a visitor id is given)."""
    return form_sign_up(system, email, visitor_id=visitor_id)


def page_view(system: LocalSystem, visitor_id: str, url: str) -> None:
    reply = system.invoke_http("GET", "/t/p.gif", query=f"vid={visitor_id}&url={url}")
    assert reply["statusCode"] == 200, reply


def record(
    system: LocalSystem,
    contact_id: str,
    kind: str,
    source: str,
    occurred_at: datetime | None = None,
    **properties: Any,
) -> Event:
    """An event of the contact written to the events table (now, unless ``occurred_at`` says when);
    the stream delivers it at the next settle."""
    event = Event(
        event_id=ids.new_event_id(),
        type=kind,
        occurred_at=iso(occurred_at or system.clock.now_datetime()),
        contact_id=contact_id,
        source=source,
        properties=properties,
    )
    EventStore(system.client("dynamodb"), "leadflow-local-events", 30).record(event)
    return event


def profile(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    item = system.client("dynamodb").get_item(
        TableName=CONTACTS, Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}}
    )["Item"]
    return deserialize(item)


def set_company_size(system: LocalSystem, contact_id: str, size: int) -> None:
    """An attribute change as the contacts API writes it: the profile and ``contact_updated``."""
    system.client("dynamodb").update_item(
        TableName=CONTACTS,
        Key={"pk": {"S": keys.contact(contact_id)}, "sk": {"S": keys.PROFILE}},
        UpdateExpression="SET company_size = :s",
        ExpressionAttributeValues={":s": {"N": str(size)}},
    )
    record(system, contact_id, "contact_updated", "api", fields=["company_size"])


def lead_events(system: LocalSystem, contact_id: str, kind: str) -> list[dict[str, Any]]:
    items = system.client("dynamodb").query(
        TableName="leadflow-local-events",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.contact(contact_id)}},
    )["Items"]
    events = [deserialize(i) for i in items]
    return [e for e in events if e["type"] == kind and e["source"] == "leads"]


def score_now(system: LocalSystem, contact_id: str) -> float:
    model = load_lead_model(system.content_dir / "leads.yaml")
    return current_score(profile(system, contact_id), system.clock.now_datetime(), model)


def members(system: LocalSystem, segment: str) -> int:
    return SegmentMembership(system.client("dynamodb"), CONTACTS).count(segment)


def test_scores_decay_with_virtual_time_and_reevaluation_follows(system: LocalSystem) -> None:
    contact = sign_up(system, "decay@example.com")
    post_event(system, "decay@example.com", "webinar_attended")
    system.settle()
    state = profile(system, contact)
    assert (state["score"], state["stage"], state["segments"]) == (50, "subscriber", ["hot"])
    assert score_now(system, contact) == pytest.approx(50.0)
    changes = lead_events(system, contact, "score_changed")
    assert sorted((e["properties"]["from"], e["properties"]["to"]) for e in changes) == [(0, 10), (10, 50)]

    system.advance(30 * DAY)
    assert score_now(system, contact) == pytest.approx(25.0, abs=0.01)
    system.advance(30 * DAY)
    assert score_now(system, contact) == pytest.approx(12.5, abs=0.01)
    # membership follows the decayed score at the next event or full re-evaluation
    engine = system.modules["score"].service
    assert engine.reevaluate(contact, "run-1") == ["score_changed", "segment_left:hot"]
    assert engine.reevaluate(contact, "run-1") == []
    system.settle()
    state = profile(system, contact)
    assert state["score_value"] == pytest.approx(12.5, abs=0.01)
    assert state["score"] == display_score(state["score_value"])
    assert "segments" not in state
    assert [e["properties"]["segment"] for e in lead_events(system, contact, "segment_left")] == ["hot"]


def test_caps_and_negative_points(system: LocalSystem) -> None:
    contact = sign_up(system, "caps@example.com", visitor_id="v-caps-0000001")
    system.advance(60)
    for _ in range(3):
        page_view(system, "v-caps-0000001", "https://northwind.example/pricing")
    system.settle()
    state = profile(system, contact)
    assert state["score"] == 30  # 10 + 10 + 10, the third view capped (20 per 7 days)
    assert state["rule_points"]["pricing"]["points"] == 20
    assert "browsers" in state["segments"]
    system.advance(8 * DAY)  # a new cap window; the views have left the 7-day segment window
    page_view(system, "v-caps-0000001", "https://northwind.example/Pricing/enterprise")
    system.settle()
    state = profile(system, contact)
    assert state["rule_points"]["pricing"]["points"] == 10
    assert state["score"] == round(30 * 0.5 ** (8 / 30) + 10)
    assert "browsers" not in state.get("segments", [])


def test_anonymous_page_views_count_after_identification(system: LocalSystem) -> None:
    page_view(system, "v-anon-0000001", "https://northwind.example/pricing")
    page_view(system, "v-anon-0000001", "https://northwind.example/blog")
    system.settle()  # no link yet: nothing to score
    system.advance(120)
    contact = sign_up(system, "anon@example.com", visitor_id="v-anon-0000001")
    system.settle()
    state = profile(system, contact)
    assert state["score"] == 20  # sign-up 10 + the pricing view 10, counted once
    assert "browsers" in state["segments"]  # two page views before the sign-up
    before = profile(system, contact)

    batch = {"Records": stream_records(system)}
    assert system.handlers[SCORE](batch, lambda_context(SCORE)) == {"batchItemFailures": []}
    system.settle()
    assert profile(system, contact) == before  # a replay changes nothing


def test_identification_counts_each_anonymous_event_once_whatever_the_order_and_clock(
    system: LocalSystem,
) -> None:
    """Given page views at the very instant of the sign-up (the clock does not move) — some the
    stream brings before the visitor is linked, one after the link but before the fold, one after
    the fold — when everything is applied, and then the whole stream again, then each pricing view
    counts exactly once: never lost for lack of a later timestamp, never counted twice."""
    score = system.handlers[SCORE]
    page_view(system, "v-same-instant", "https://northwind.example/pricing")
    page_view(system, "v-same-instant", "https://northwind.example/docs")
    system.settle()  # applied while anonymous: skipped, no marker
    contact = sign_up(system, "instant@example.com", visitor_id="v-same-instant")
    page_view(system, "v-same-instant", "https://northwind.example/pricing")  # after the link
    system.settle()
    state = profile(system, contact)
    assert state["score"] == 30  # sign-up 10 + two pricing views, each once
    assert state["activity"]  # the page views are counted for the did conditions too
    before = profile(system, contact)
    assert score({"Records": stream_records(system)}, lambda_context(SCORE)) == {"batchItemFailures": []}
    system.settle()
    assert profile(system, contact) == before


def test_mql_crossing_happens_once_when_the_batch_is_delivered_twice(system: LocalSystem) -> None:
    contact = sign_up(system, "mql@example.com")
    system.settle()
    set_company_size(system, contact, 60)
    system.settle()
    assert profile(system, contact)["fit_score"] == 20
    post_event(system, "mql@example.com", "webinar_attended")
    batch = {"Records": stream_records(system)}  # not delivered yet: the engine gets it twice now
    for _ in range(2):
        assert system.handlers[SCORE](batch, lambda_context(SCORE)) == {"batchItemFailures": []}
    system.settle()  # and the pump delivers it a third time
    state = profile(system, contact)
    assert (state["stage"], state["score"]) == ("mql", 50)
    [mql] = [e for e in lead_events(system, contact, "stage_changed") if e["properties"]["to"] == "mql"]
    assert mql["properties"]["from"] == "subscriber"
    assert mql["properties"]["reason"] == "rule qualified"
    assert len(lead_events(system, contact, "score_changed")) == 2


def test_segments_follow_attribute_changes_live(system: LocalSystem) -> None:
    contact = sign_up(system, "big@example.com")
    system.settle()
    before = members(system, "big")
    set_company_size(system, contact, 500)
    system.settle()
    assert "big" in profile(system, contact)["segments"]
    assert members(system, "big") == before + 1
    set_company_size(system, contact, 10)
    system.settle()
    assert "big" not in profile(system, contact).get("segments", [])
    assert members(system, "big") == before
    assert len(lead_events(system, contact, "segment_entered")) == 1
    assert len(lead_events(system, contact, "segment_left")) == 1


def test_points_awarded_add_directly_and_own_events_are_ignored(system: LocalSystem) -> None:
    contact = sign_up(system, "points@example.com")
    system.settle()
    record(system, contact, "points_awarded", "journey", points=15, reason="journey x")
    record(system, contact, "score_changed", "leads", **{"from": 0, "to": 99})
    system.settle()
    assert profile(system, contact)["score"] == 25


def test_reevaluation_recounts_history_for_a_did_condition_defined_later(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = sign_up(system, "later@example.com")
    post_event(system, "later@example.com", "webinar_attended")
    post_event(system, "later@example.com", "webinar_attended")
    system.settle()
    engine = system.modules["score"].service
    fans = Segment.model_validate(
        {"id": "webinar-fans", "name": "Fans", "when": {"did": "webinar_attended", "at_least": 2}}
    )
    files = engine._segments
    monkeypatch.setattr(engine, "_segments", lambda: [*files(), fans])
    assert engine.reevaluate(contact, "run-later") == ["segment_entered:webinar-fans"]
    assert engine.reevaluate(contact, "run-later") == []
    assert "webinar-fans" in profile(system, contact)["segments"]
    post_event(system, "later@example.com", "webinar_attended")  # counted live from now on
    system.settle()
    key = counter_key(Did(did="webinar_attended"))
    assert profile(system, contact)["activity"][key] == {"all": 3}


def test_an_event_applied_late_gives_the_score_its_stored_events_say(system: LocalSystem) -> None:
    """A record redriven after newer ones were applied (a crashed batch, the on-failure queue):
    the score is the stored events' in time order — here the floor at 0 makes the order matter."""
    contact = sign_up(system, "late@example.com")  # +10
    system.settle()
    start = system.clock.now_datetime()
    engine = system.modules["score"].service
    events = [
        record(system, contact, kind, "api", start + timedelta(hours=hours))
        for hours, kind in ((1, "unsubscribed"), (2, "webinar_attended"))  # -20 (floored at 0), +40
    ]
    # the stream applies the webinar first; the unsubscribe comes back from the redrive
    assert engine.handle(events[1]) == "applied"
    assert engine.handle(events[0]) == "applied"
    system.settle()  # the stream's own delivery of both: duplicates
    model = load_lead_model(system.content_dir / "leads.yaml")
    stored = events_of(system, contact)
    expected = replay(stored, model)
    state = profile(system, contact)
    assert state["score"] == display_score(expected.value) == 40
    assert state["score_value"] == pytest.approx(expected.value, abs=1e-6)
    # later events add to it as usual
    post_event(system, "late@example.com", "webinar_attended")
    system.settle()
    assert profile(system, contact)["score"] == display_score(replay(events_of(system, contact), model).value)


def test_events_at_the_same_moment_add_up_once_whatever_arrives_late(system: LocalSystem) -> None:
    """An older record replays the history up to the score's time; a record of that same moment
    that has not arrived yet is left out of the replay and adds when it comes — never twice."""
    contact = sign_up(system, "same-moment@example.com")  # +10
    system.settle()
    start = system.clock.now_datetime()
    engine = system.modules["score"].service

    def stored(kind: str, hours: int) -> Event:
        return record(system, contact, kind, "api", start + timedelta(hours=hours))

    first = stored("webinar_attended", 2)  # +40 at 2 h
    same = stored("webinar_attended", 2)  # +40 at the same moment, delivered last
    late = stored("unsubscribed", 1)  # -20 at 1 h, delivered second
    assert engine.handle(first) == "applied"
    assert engine.handle(late) == "applied"  # older: replays up to 2 h, without `same`
    assert engine.handle(same) == "applied"  # same moment: adds its 40 once
    system.settle()
    model = load_lead_model(system.content_dir / "leads.yaml")
    expected = replay(events_of(system, contact), model)
    assert profile(system, contact)["score"] == display_score(expected.value) == 80


def test_events_of_one_moment_count_in_event_id_order_whatever_order_they_arrive(
    system: LocalSystem,
) -> None:
    """The local clock stands still between advances (and AWS clocks tick in milliseconds): events
    of one moment count in event id order, as ``scoring.replay`` orders them, however the stream
    brings them — here the floor at 0 makes that order matter."""
    contact = sign_up(system, "one-moment@example.com")  # +10
    system.settle()
    moment = system.clock.now_datetime() + timedelta(hours=1)
    engine = system.modules["score"].service
    # -20 then +40 in id order: 10 -> 0 -> 40
    events = [record(system, contact, kind, "api", moment) for kind in ("unsubscribed", "webinar_attended")]
    assert events[0].event_id < events[1].event_id
    assert engine.handle(events[1]) == "applied"  # the webinar first: 50
    assert engine.handle(events[0]) == "applied"  # then the unsubscribe, older by id: replayed, 40
    system.settle()
    model = load_lead_model(system.content_dir / "leads.yaml")
    assert (
        profile(system, contact)["score"]
        == display_score(replay(events_of(system, contact), model).value)
        == 40
    )
