"""Lead state arithmetic: decay, rules and caps, fit, activity windows, lifecycle and merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from leadflow.journeys.conditions import Condition, Did, Facts, Span, describe, evaluate
from leadflow.kernel.clock import iso
from leadflow.leads.model import LeadModel, ScoreRule, parse_lead_model
from leadflow.leads.scoring import (
    ScoreState,
    add_points,
    apply_points,
    combine,
    count,
    count_event,
    counter_key,
    counters,
    current_score,
    display_score,
    fit_score,
    next_stage,
    replay,
    rule_matches,
    score_event,
    trim_activity,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

MODEL = parse_lead_model(
    {
        "scoring": {
            "half_life": {"days": 30},
            "rules": [
                {"id": "pricing", "event": "page_viewed", "url_contains": "/Pricing", "points": 10,
                 "cap": 30, "cap_window": {"days": 7}},
                {"id": "whitepaper", "event": "form_submitted", "where": {"form_id": "whitepaper"}, "points": 20},
                {"id": "click", "event": "email_clicked", "points": 5, "cap": 25},
                {"id": "careers", "event": "page_viewed", "url_contains": "/careers", "points": -10},
                {"id": "unsubscribed", "event": "unsubscribed", "points": -20},
                {"id": "demo", "event": "form_submitted", "where": {"form_id": ["demo", "trial"]}, "points": 40},
            ],
        },
        "fit": {
            "rules": [
                {"id": "size", "when": {"attribute": "company_size", "gte": 50}, "points": 15},
                {"id": "dach", "when": {"attribute": "country", "in": ["DE", "AT", "CH"]}, "points": 5},
                {"id": "student", "when": {"attribute": "role", "equals": "student"}, "points": -20},
            ]
        },
        "lifecycle": {
            "rules": [
                {"id": "subscribed", "to": "subscriber", "when": {"consent": "email"}},
                {"id": "gated", "to": "lead", "when": {"did": "form_submitted", "where": {"form_id": "whitepaper"}}},
                {"id": "qualified", "to": "mql",
                 "when": {"all": [{"score": {"gte": 50}}, {"attribute": "fit_score", "gte": 20}]}},
            ]
        },
    },
    "test",
)  # fmt: skip


def rule(rule_id: str) -> ScoreRule:
    return next(r for r in MODEL.scoring.rules if r.id == rule_id)


# --- decay --------------------------------------------------------------------------------------


def test_decay_halves_the_score_every_half_life() -> None:
    profile = {"score_value": 40, "score_at": iso(T0)}
    assert current_score(profile, T0, MODEL) == 40.0
    assert current_score(profile, T0 + 30 * DAY, MODEL) == pytest.approx(20.0, abs=1e-9)
    assert current_score(profile, T0 + 60 * DAY, MODEL) == pytest.approx(10.0, abs=1e-9)
    assert current_score(profile, T0 + 15 * DAY, MODEL) == pytest.approx(40 / 2**0.5, abs=1e-9)
    assert current_score(profile, T0 - DAY, MODEL) == 40.0  # never grows backwards


def test_no_half_life_no_decay_and_missing_values() -> None:
    flat = LeadModel()
    assert current_score({"score_value": 40, "score_at": iso(T0)}, T0 + 365 * DAY, flat) == 40.0
    assert current_score({}, T0, MODEL) == 0.0
    # a profile not scored by the engine yet: its stored score, as it is
    assert current_score({"score": 60}, T0, MODEL) == 60.0


def test_display_score_rounds_half_up() -> None:
    assert [display_score(v) for v in (0.0, 0.49, 0.5, 1.5, 2.5, 19.999999, 20.4)] == [0, 0, 1, 2, 3, 20, 20]


# --- rules and caps -------------------------------------------------------------------------------


def test_rules_match_type_where_any_of_and_url_substring_case_insensitively() -> None:
    assert rule_matches(rule("pricing"), "page_viewed", {"url": "https://x.example/pricing?plan=pro"})
    assert not rule_matches(rule("pricing"), "page_viewed", {"url": "https://x.example/blog"})
    assert not rule_matches(rule("pricing"), "page_viewed", {})
    assert not rule_matches(rule("pricing"), "email_clicked", {"url": "https://x.example/pricing"})
    assert rule_matches(rule("whitepaper"), "form_submitted", {"form_id": "whitepaper"})
    assert not rule_matches(rule("whitepaper"), "form_submitted", {"form_id": "newsletter"})
    assert rule_matches(rule("demo"), "form_submitted", {"form_id": "trial"})


def test_points_decay_before_new_points_are_added() -> None:
    state, granted = apply_points(ScoreState(), rule("whitepaper"), T0, MODEL)
    assert (granted, state.value, state.at) == (20, 20.0, T0)
    state, granted = apply_points(state, rule("whitepaper"), T0 + 30 * DAY, MODEL)
    assert granted == 20
    assert state.value == pytest.approx(30.0)
    assert state.at == T0 + 30 * DAY


def test_a_late_event_adds_its_points_decayed_to_the_score_time() -> None:
    state, _ = apply_points(ScoreState(), rule("whitepaper"), T0 + 30 * DAY, MODEL)
    state, granted = apply_points(state, rule("whitepaper"), T0, MODEL)  # delivered late
    assert granted == 20
    assert state.value == pytest.approx(30.0)
    assert state.at == T0 + 30 * DAY


def test_total_cap_limits_a_rules_points_per_contact() -> None:
    state = ScoreState()
    granted = []
    for i in range(7):
        state, g = apply_points(state, rule("click"), T0 + timedelta(minutes=i), MODEL)
        granted.append(g)
    assert granted == [5, 5, 5, 5, 5, 0, 0]
    assert state.rule_points["click"]["points"] == 25


def test_cap_window_restarts_with_the_first_points_after_it_ended() -> None:
    state = ScoreState()
    granted = []
    for at in (T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 7 * DAY, T0 + 8 * DAY):
        state, g = apply_points(state, rule("pricing"), at, MODEL)
        granted.append(g)
    assert granted == [10, 10, 10, 0, 10, 10]
    assert state.rule_points["pricing"] == {"points": 20, "window_start": iso(T0 + 7 * DAY)}


def test_negative_points_never_take_the_score_below_zero() -> None:
    state, _ = apply_points(ScoreState(), rule("whitepaper"), T0, MODEL)
    state, granted = apply_points(state, rule("unsubscribed"), T0, MODEL)
    assert granted == -20
    assert state.value == 0.0
    state, _ = apply_points(state, rule("careers"), T0, MODEL)
    assert state.value == 0.0
    assert add_points(ScoreState(value=5.0, at=T0), -3, T0, MODEL).value == 2.0


def test_every_matching_rule_of_an_event_counts() -> None:
    both = parse_lead_model(
        {"scoring": {"rules": [
            {"id": "any-form", "event": "form_submitted", "points": 10},
            {"id": "whitepaper", "event": "form_submitted", "where": {"form_id": "whitepaper"}, "points": 20},
        ]}},
        "test",
    )  # fmt: skip
    state, granted, rules = score_event(ScoreState(), "form_submitted", {"form_id": "whitepaper"}, T0, both)
    assert (state.value, granted, rules) == (30.0, 30, ["any-form", "whitepaper"])


def test_state_fields_round_trip_through_a_profile() -> None:
    state, _ = apply_points(ScoreState(), rule("pricing"), T0, MODEL)
    fields = state.fields()
    assert fields["score"] == 10
    assert fields["score_value"] == 10.0
    assert fields["score_at"] == iso(T0)
    assert ScoreState.of(fields) == state


def test_replay_folds_stored_events_in_time_order() -> None:
    events = [
        {"type": "unsubscribed", "occurred_at": iso(T0 + DAY), "properties": {}},
        {"type": "form_submitted", "occurred_at": iso(T0), "properties": {"form_id": "whitepaper"}},
        {"type": "points_awarded", "occurred_at": iso(T0 + DAY), "properties": {"points": 7}},
        {"type": "score_changed", "occurred_at": iso(T0), "source": "leads", "properties": {}},
    ]
    state = replay(events, MODEL)
    assert state.value == 7.0  # 20, then -20 a day later (stops at 0), then + 7


# --- fit ----------------------------------------------------------------------------------------


def test_fit_score_sums_the_rules_that_hold() -> None:
    def fit(profile: dict[str, Any]) -> int:
        return fit_score(MODEL, Facts(profile=profile, now=T0))

    assert fit({"company_size": 200, "country": "DE"}) == 20
    assert fit({"company_size": 10, "country": "US"}) == 0
    assert fit({"company_size": 500, "role": "student"}) == -5


# --- activity counters ----------------------------------------------------------------------------


PAGE_3_IN_7 = Did.model_validate({"did": "page_viewed", "at_least": 3, "within": {"days": 7}})
PAGE_EVER = Did.model_validate({"did": "page_viewed"})
PRICING_14 = Did.model_validate({"did": "page_viewed", "where": {"path": "/pricing"}, "within": {"days": 14}})


def test_counter_keys_ignore_window_and_threshold_but_not_filters() -> None:
    assert counter_key(PAGE_3_IN_7) == counter_key(PAGE_EVER)
    assert counter_key(PAGE_3_IN_7) != counter_key(PRICING_14)
    assert counter_key(PAGE_3_IN_7) == counter_key(
        Did.model_validate({"did": "page_viewed", "within": {"days": 1}})
    )
    tracked = counters([PAGE_3_IN_7, PAGE_EVER, PRICING_14])
    page = tracked[counter_key(PAGE_EVER)]
    assert (page.all, page.days) == (True, 7)
    assert tracked[counter_key(PRICING_14)].days == 14


def test_windowed_counts_use_utc_day_buckets() -> None:
    tracked = counters([PAGE_3_IN_7, PAGE_EVER, PRICING_14])
    activity: dict[str, dict[str, int]] = {}
    for at, props in [
        (T0, {}),
        (T0 + DAY, {"path": "/pricing"}),
        (T0 + 2 * DAY, {"path": "/pricing"}),
        (T0 + 2 * DAY, {"path": "/blog"}),
    ]:
        activity = count_event(activity, tracked, "page_viewed", props, at)
    activity = count_event(activity, tracked, "form_submitted", {}, T0)  # not tracked
    now = T0 + 2 * DAY
    assert count(activity, PAGE_EVER, now) == 4
    assert count(activity, PAGE_3_IN_7, now) == 4
    assert evaluate(PAGE_3_IN_7, Facts(profile={}, now=now, counts=lambda d: count(activity, d, now)))
    assert count(activity, PRICING_14, now) == 2
    # 8 days later the first day's bucket is out of the 7-day window (day granularity)
    later = T0 + 8 * DAY
    assert count(activity, PAGE_3_IN_7, later) == 3
    assert count(activity, PAGE_3_IN_7, T0 + 10 * DAY) == 0
    assert count(activity, PAGE_EVER, T0 + 400 * DAY) == 4
    trimmed = trim_activity(activity, tracked, later)
    assert "2026-03-02" not in trimmed[counter_key(PAGE_EVER)]
    assert trimmed[counter_key(PAGE_EVER)]["all"] == 4
    assert count(trimmed, PAGE_3_IN_7, later) == 3
    # a key nothing uses any more is dropped
    assert trim_activity(activity, counters([PRICING_14]), later).keys() == {counter_key(PRICING_14)}


# --- lifecycle ----------------------------------------------------------------------------------


def test_rules_move_forward_only_to_the_furthest_stage_that_holds() -> None:
    def facts(profile: dict[str, Any], score: float = 0, whitepapers: int = 0) -> Facts:
        return Facts(profile=profile, now=T0, score=score, counts=lambda _d: whitepapers)

    assert next_stage(MODEL, None, facts({"consent_email": "granted"})) == ("subscriber", "subscribed")
    assert next_stage(MODEL, None, facts({"consent_email": "pending"})) is None
    hot = {"consent_email": "granted", "fit_score": 20}
    assert next_stage(MODEL, "subscriber", facts(hot, score=55, whitepapers=1)) == ("mql", "qualified")
    assert next_stage(MODEL, "lead", facts(hot, score=49, whitepapers=1)) is None
    assert next_stage(MODEL, "customer", facts(hot, score=90, whitepapers=1)) is None  # never back
    assert next_stage(MODEL, "mql", facts(hot, score=90)) is None


# --- merge --------------------------------------------------------------------------------------


def test_combine_adds_decayed_scores_caps_and_activity_and_keeps_the_later_stage() -> None:
    key = counter_key(PAGE_EVER)
    survivor = {
        "score_value": 40,
        "score_at": iso(T0),
        "stage": "lead",
        "rule_points": {"click": {"points": 10}, "pricing": {"points": 20, "window_start": iso(T0 + DAY)}},
        "activity": {key: {"all": 2, "2026-03-02": 2}},
    }
    duplicate = {
        "score_value": 10,
        "score_at": iso(T0 + 30 * DAY),
        "stage": "mql",
        "rule_points": {"pricing": {"points": 10, "window_start": iso(T0)}},
        "activity": {key: {"all": 1, "2026-03-03": 1}},
    }
    now = T0 + 30 * DAY
    merged = combine(survivor, duplicate, now, MODEL)
    assert merged["score_value"] == pytest.approx(30.0)
    assert merged["score"] == 30
    assert merged["score_at"] == iso(now)
    assert merged["rule_points"] == {
        "click": {"points": 10},
        "pricing": {"points": 30, "window_start": iso(T0)},
    }
    assert merged["activity"] == {key: {"all": 3, "2026-03-02": 2, "2026-03-03": 1}}
    assert merged["stage"] == "mql"
    assert "stage" not in combine({}, {}, now, MODEL)
    assert combine({}, {}, now, MODEL)["score"] == 0


def test_span_total_seconds_used_by_windows() -> None:
    assert Span(days=7).total_seconds == 7 * 86400


# --- the condition language's lead hooks ----------------------------------------------------------


def test_consent_condition_and_the_facts_hooks() -> None:
    parse = TypeAdapter(Condition).validate_python
    email, sms = parse({"consent": "email"}), parse({"consent": "sms"})
    granted = {"consent_email": "granted", "consent_sms": "revoked", "score": 10}
    assert evaluate(email, Facts(profile=granted, now=T0))
    assert not evaluate(sms, Facts(profile=granted, now=T0))
    assert not evaluate(email, Facts(profile={"consent_email": "pending"}, now=T0))
    assert describe(email) == "consented to email"
    with pytest.raises(ValueError, match="consent"):
        parse({"consent": "fax"})
    hot = parse({"score": {"gte": 50}})
    assert not evaluate(hot, Facts(profile=granted, now=T0))
    assert evaluate(hot, Facts(profile=granted, now=T0, score=50.0))  # the decayed score wins
    did = parse({"did": "page_viewed", "at_least": 2, "within": {"days": 7}})
    assert evaluate(did, Facts(profile={}, now=T0, counts=lambda _d: 2))
    assert not evaluate(did, Facts(profile={}, now=T0, counts=lambda _d: 1, events=lambda _s: [{}] * 5))
