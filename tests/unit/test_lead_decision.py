"""The lead engine's decision (``leadflow.leads.decision.decide``) without a database: the shipped
lead model (``leads.yaml``) and segments, realistic profiles, the events in the order and at the
odd times contacts produce them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow.kernel import ids
from leadflow.kernel.clock import iso
from leadflow.leads.decision import (
    COMPLETE,
    MAX_SEGMENT_CHANGES,
    LeadDecision,
    Step,
    decide,
    tracked_counters,
)
from leadflow.leads.model import load_lead_model
from leadflow.leads.scoring import ScoreState
from leadflow.segments.definitions import Segment, parse_segment

ROOT = Path(__file__).resolve().parents[2]
MODEL = load_lead_model(ROOT / "leads.yaml")
NOW = datetime(2026, 3, 14, 23, 58, 41, 318000, tzinfo=UTC)  # late on a Saturday
HOT = parse_segment({"id": "hot", "name": "Hot", "when": {"score": {"gte": 50}}}, "hot.yaml")
DACH = parse_segment(
    {"id": "dach", "name": "DACH", "when": {"attribute": "country", "in": ["DE", "AT"]}}, "d"
)
READERS = parse_segment(
    {
        "id": "readers",
        "name": "Readers",
        "when": {"did": "form_submitted", "where": {"form_id": "whitepaper"}, "within": {"days": 90}},
    },
    "readers.yaml",
)
SEGMENTS = [HOT, DACH, READERS]


def profile(**fields: Any) -> dict[str, Any]:
    return {"pk": "C#c-1", "sk": "PROFILE", "contact_id": "c-1", "consent_email": "granted", **fields}


def step(kind: str, at: datetime, event_id: str, **properties: Any) -> Step:
    return Step(kind, properties, at, event_id)


def run(
    current: dict[str, Any], steps: list[Step], segments: list[Segment] = SEGMENTS, **kwargs: Any
) -> LeadDecision | None:
    return decide(
        "c-1",
        current,
        steps,
        NOW,
        model=MODEL,
        segments=segments,
        event_id=lambda kind, detail: ids.deterministic_id("ev-cause", kind, detail),
        **kwargs,
    )


def test_a_demo_request_after_a_whitepaper_makes_a_dach_subscriber_a_hot_lead() -> None:
    known = run(profile(country="DE", company_size=120), [])
    assert known is not None  # first look at the contact: fit, stage, segment
    assert known.sets["fit_score"] == 20
    assert known.sets["stage"] == "subscriber"
    assert known.entering == ["dach"]
    assert known.version is None
    assert known.stage_from == (None,)

    stored = profile(
        country="DE", company_size=120, stage="subscriber", fit_score=20, segments={"dach"}, lead_version=3
    )
    decision = run(
        stored,
        [
            step("form_submitted", NOW - timedelta(minutes=3, seconds=7), "ev-wp", form_id="whitepaper"),
            step("form_submitted", NOW - timedelta(seconds=2), "ev-demo", form_id="demo"),
        ],
    )
    assert decision is not None
    assert decision.version == 3
    assert decision.sets["lead_version"] == 4
    assert decision.sets["score"] == 60
    assert decision.sets["stage"] == "mql"
    assert decision.stage_from == ("subscriber",)
    assert decision.changes == [
        "score_changed",
        "stage_changed:mql",
        "segment_entered:hot",
        "segment_entered:readers",
    ]
    assert decision.sets["segments"] == {"dach", "hot", "readers"}
    score_changed = decision.events[0]
    assert score_changed.properties == {
        "from": 0,
        "to": 60,
        "delta": 60,
        "rule": "whitepaper-download,demo-request",
    }
    assert score_changed.source == "leads"
    assert score_changed.occurred_at == iso(NOW)
    assert score_changed.event_id == ids.deterministic_id("ev-cause", "score_changed", "")
    assert decision.events[1].properties == {"from": "subscriber", "to": "mql", "reason": "rule qualified"}


def test_the_same_inputs_decide_the_same_and_an_unscored_event_changes_nothing() -> None:
    stored = profile(stage="subscriber", fit_score=0, lead_version=7)
    viewed = [step("page_viewed", NOW, "ev-1", url="https://example.com/blog/x")]
    assert run(stored, viewed) is None  # no rule, no counter, no segment: not even the lock moves
    pricing = [step("page_viewed", NOW, "ev-2", url="https://example.com/pricing")]
    assert run(stored, pricing) == run(stored, pricing)


def test_a_stage_hold_keeps_the_stage_until_it_ends() -> None:
    held = profile(
        stage="subscriber", fit_score=0, lead_version=1, stage_hold_until=iso(NOW + timedelta(hours=1))
    )
    demo = [step("form_submitted", NOW, "ev-demo", form_id="demo")]
    decision = run(held, demo)
    assert decision is not None
    assert "stage" not in decision.sets
    assert decision.stage_from is None
    ended = run({**held, "stage_hold_until": iso(NOW - timedelta(seconds=1))}, demo)
    assert ended is not None
    assert ended.sets["stage"] == "lead"


def test_a_merged_contacts_tombstone_leaves_every_segment_and_keeps_its_stage() -> None:
    tombstone = profile(
        country="DE", stage="lead", fit_score=5, segments={"dach", "retired-segment"}, lead_version=2
    )
    decision = run(tombstone, [], tombstone=True)
    assert decision is not None
    assert decision.leaving == ["dach", "retired-segment"]
    assert decision.entering == []
    assert decision.removes == ["segments"]
    assert "stage" not in decision.sets


def test_member_items_override_the_profile_and_the_changes_are_capped_per_transaction() -> None:
    stored = profile(country="DE", fit_score=5, stage="subscriber", segments=set(), lead_version=1)
    # the member item says the contact is in "dach" already: no second segment_entered
    decision = run(stored, [], overrides={"dach": True})
    assert decision is not None
    assert decision.entering == []
    assert decision.sets["segments"] == {"dach"}

    many = [
        parse_segment(
            {"id": f"s{i:03d}", "name": f"S{i}", "when": {"attribute": "country", "equals": "DE"}}, "s"
        )
        for i in range(MAX_SEGMENT_CHANGES + 5)
    ]
    capped = run(stored, [], segments=many)
    assert capped is not None
    assert capped.entering == [s.id for s in many[:MAX_SEGMENT_CHANGES]]  # the rest with the next event


def test_a_replayed_score_replaces_the_scoring_and_the_events_still_count_activity() -> None:
    stored = profile(stage="subscriber", fit_score=0, lead_version=4, score=10.0, score_at=iso(NOW))
    late = [step("form_submitted", NOW - timedelta(days=2), "ev-late", form_id="whitepaper")]
    replayed = ScoreState(
        value=30.0, at=NOW, rule_points={"whitepaper-download": {"points": 20, "window_start": None}}
    )
    decision = run(stored, late, replayed=replayed)
    assert decision is not None
    assert decision.sets["score"] == 30
    assert decision.events[0].properties["rule"] == "replayed"
    assert "readers" in decision.entering  # the whitepaper counted for the did condition


def test_a_reevaluation_recounts_the_counters_not_yet_recounted_from_history() -> None:
    stored = profile(stage="subscriber", fit_score=0, lead_version=2)
    history = [step("form_submitted", NOW - timedelta(days=40, hours=5), "", form_id="whitepaper")]
    decision = run(stored, [], history=history)
    assert decision is not None
    assert decision.sets[COMPLETE] == sorted(tracked_counters(MODEL, SEGMENTS))
    assert decision.entering == ["readers"]
    assert decision.sets["stage"] == "lead"
    # once recounted, the history is not read into the counts again
    again = run({**stored, **decision.sets, "lead_version": 3}, [], history=[])
    assert again is None


@pytest.mark.parametrize("points", [0, True, "5"])
def test_points_awarded_without_a_number_of_points_awards_nothing(points: object) -> None:
    stored = profile(stage="subscriber", fit_score=0, lead_version=1)
    assert run(stored, [step("points_awarded", NOW, "ev-p", points=points)]) is None
