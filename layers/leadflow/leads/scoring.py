"""Lead state arithmetic: pure functions, no I/O (the lead engine and merges use them).

Behaviour score
    Stored as ``score_value`` (exact) as of ``score_at``; it halves every ``scoring.half_life``.
    ``current_score`` decays it to any moment; the displayed score is that value rounded half up.
    Points of an event count from the event's time: an event older than ``score_at`` (a late or
    reordered stream record) adds its points already decayed to ``score_at``. The score never goes
    below 0: negative points stop at 0 (points lost below 0 are not remembered).

Caps
    ``rule_points[rule_id] = {"points": n, "window_start": iso}``: the (absolute) points a rule has
    granted the contact — in total, or in the current ``cap_window``, which starts with the first
    points after the previous window ended.

Activity counters (``did`` conditions without reading history)
    Every ``did`` condition of segments, lifecycle rules and fit rules gets a counter key (a short
    hash of its event type and ``where``). Each matching event adds 1 to
    ``activity[key][<UTC date of the event>]`` — or to ``activity[key]["all"]`` when the key is used
    without ``within``. A windowed count at ``now`` is the sum of the day buckets whose date is on or
    after ``(now - within)``'s UTC date: **day granularity**, so a window counts up to one day more
    of history than its exact length. Day buckets older than the key's longest window are trimmed
    at every write, so a profile holds at most (longest window in days + 1) buckets per key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from leadflow.journeys.conditions import Condition, Did, Facts, evaluate, matches_where, walk
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, parse_iso
from leadflow.leads.model import LeadModel, ScoreRule

ALL = "all"
"""The bucket of a counter key used without ``within``."""


# --- behaviour score ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def decay(value: float, since: datetime | None, until: datetime, model: LeadModel) -> float:
    """``value`` as of ``since``, decayed to ``until`` (never grows when ``until`` is earlier)."""
    half_life = model.scoring.half_life
    if half_life is None or since is None or value == 0:
        return value
    elapsed = (until - since).total_seconds()
    if elapsed <= 0:
        return value
    return float(value * 0.5 ** (elapsed / half_life.total_seconds))


def current_score(profile: Mapping[str, Any], now: datetime, model: LeadModel) -> float:
    """The contact's behaviour score at ``now``: ``score_value`` decayed from ``score_at``.

    A profile the lead engine has not scored yet (no ``score_value``) falls back to its stored
    ``score`` (e.g. set by an import), decayed from ``score_at`` if there is one; 0 without either."""
    value = _number(profile.get("score_value"))
    if value is None:
        value = _number(profile.get("score"))
    if value is None:
        return 0.0
    return decay(value, parse_iso(profile.get("score_at")), now, model)


def display_score(value: float) -> int:
    """The score people see: rounded half up (19.5 -> 20)."""
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rule_matches(rule: ScoreRule, event_type: str, properties: Mapping[str, Any]) -> bool:
    """The event type, every ``where`` filter (a list: any of) and ``url_contains`` (a
    case-insensitive substring of the ``url`` property) hold."""
    if rule.event != event_type or not matches_where(properties, rule.where):
        return False
    if rule.url_contains is not None:
        url = properties.get("url")
        return isinstance(url, str) and rule.url_contains.lower() in url.lower()
    return True


@dataclass(frozen=True)
class ScoreState:
    """The behaviour score part of the lead state."""

    value: float = 0.0
    at: datetime | None = None
    rule_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_id: str | None = None
    """The last scoring event at ``at``: events of the same moment count in event id order."""

    @classmethod
    def of(cls, profile: Mapping[str, Any]) -> ScoreState:
        value = _number(profile.get("score_value"))
        if value is None:
            value = _number(profile.get("score")) or 0.0
        raw = profile.get("rule_points") or {}
        rule_points = {
            str(k): {"points": int(v.get("points") or 0), "window_start": v.get("window_start")}
            for k, v in raw.items()
            if isinstance(v, Mapping)
        }
        event_id = profile.get("score_event_id")
        return cls(
            value=max(value, 0.0),
            at=parse_iso(profile.get("score_at")),
            rule_points=rule_points,
            event_id=str(event_id) if event_id else None,
        )

    def fields(self) -> dict[str, Any]:
        """The profile attributes of this state."""
        return {
            "score": display_score(self.value),
            "score_value": round(self.value, 6),
            "score_at": iso(self.at) if self.at else None,
            "score_event_id": self.event_id,
            "rule_points": {
                k: {key: val for key, val in v.items() if val is not None}
                for k, v in self.rule_points.items()
            },
        }


def add_points(state: ScoreState, points: float, at: datetime, model: LeadModel) -> ScoreState:
    """``points`` earned at ``at`` (no rule, no cap): the new state as of max(score_at, at)."""
    until = at if state.at is None or at > state.at else state.at
    value = decay(state.value, state.at, until, model) + decay(points, at, until, model)
    return ScoreState(value=max(value, 0.0), at=until, rule_points=state.rule_points)


def apply_points(
    state: ScoreState, rule: ScoreRule, at: datetime, model: LeadModel
) -> tuple[ScoreState, int]:
    """The rule's points for an event at ``at``, within the rule's cap; the new state and the
    points granted (0 when the cap is used up)."""
    points = rule.points
    rule_points = dict(state.rule_points)
    if rule.cap is not None:
        entry = dict(rule_points.get(rule.id) or {"points": 0, "window_start": None})
        if rule.cap_window is not None:
            start = parse_iso(entry.get("window_start"))
            window = timedelta(seconds=rule.cap_window.total_seconds)
            if start is None or at >= start + window:
                entry = {"points": 0, "window_start": iso(at)}
        used = abs(int(entry.get("points") or 0))
        allowed = max(rule.cap - used, 0)
        granted = min(abs(points), allowed) * (1 if points > 0 else -1)
        if granted == 0:
            return state, 0
        entry["points"] = used + abs(granted)
        rule_points[rule.id] = entry
        points = granted
    new = add_points(ScoreState(state.value, state.at, rule_points), points, at, model)
    return new, points


def score_event(
    state: ScoreState, event_type: str, properties: Mapping[str, Any], at: datetime, model: LeadModel
) -> tuple[ScoreState, int, list[str]]:
    """Every matching rule applied to one event: the new state, the points granted and the ids of
    the rules that granted them."""
    granted_total = 0
    rules: list[str] = []
    for rule in model.scoring.rules:
        if rule_matches(rule, event_type, properties):
            state, granted = apply_points(state, rule, at, model)
            if granted:
                granted_total += granted
                rules.append(rule.id)
    return state, granted_total, rules


# --- fit score ----------------------------------------------------------------------------------


def fit_score(model: LeadModel, facts: Facts) -> int:
    """The sum of the points of the fit rules whose condition holds."""
    return sum(rule.points for rule in model.fit.rules if evaluate(rule.when, facts))


# --- activity counters ----------------------------------------------------------------------------


def counter_key(did: Did) -> str:
    """A stable short key for a ``did`` condition's event type and filters (not its window)."""
    where = json.dumps(did.where, sort_keys=True, separators=(",", ":"), default=str)
    return "a" + ids.deterministic_id("did", did.did, where, length=12)


@dataclass(frozen=True)
class Counter:
    """What one counter key counts and which buckets it keeps."""

    did: Did
    all: bool = False
    """Used without ``within``: keep the ``all`` bucket."""
    days: int | None = None
    """Used with ``within``: keep day buckets for this many days (the longest window)."""


def counters(conditions: Iterable[Condition]) -> dict[str, Counter]:
    """The counter keys every ``did`` in the conditions needs."""
    found: dict[str, Counter] = {}
    for condition in conditions:
        for c in walk(condition):
            if not isinstance(c, Did):
                continue
            key = counter_key(c)
            known = found.get(key, Counter(did=c.model_copy(update={"within": None, "at_least": 1})))
            if c.within is None:
                known = Counter(did=known.did, all=True, days=known.days)
            else:
                days = -(-c.within.total_seconds // 86400)  # whole days, rounded up
                known = Counter(did=known.did, all=known.all, days=max(known.days or 0, days))
            found[key] = known
    return found


def model_conditions(model: LeadModel) -> list[Condition]:
    """The conditions of the lead model's lifecycle and fit rules."""
    return [r.when for r in model.lifecycle.rules] + [r.when for r in model.fit.rules]


def _day(at: datetime) -> str:
    return at.date().isoformat()


def _oldest_day(now: datetime, days: int) -> str:
    return (now - timedelta(days=days)).date().isoformat()


def read_activity(profile: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    raw = profile.get("activity") or {}
    return {str(k): {str(b): int(n) for b, n in v.items()} for k, v in raw.items() if isinstance(v, Mapping)}


def count_event(
    activity: Mapping[str, Mapping[str, int]],
    tracked: Mapping[str, Counter],
    event_type: str,
    properties: Mapping[str, Any],
    at: datetime,
) -> dict[str, dict[str, int]]:
    """The counters after one event (a new mapping; the input is not changed)."""
    out = {k: dict(v) for k, v in activity.items()}
    for key, counter in tracked.items():
        if counter.did.did != event_type or not matches_where(properties, counter.did.where):
            continue
        buckets = out.setdefault(key, {})
        if counter.all:
            buckets[ALL] = buckets.get(ALL, 0) + 1
        if counter.days is not None:
            buckets[_day(at)] = buckets.get(_day(at), 0) + 1
    return out


def trim_activity(
    activity: Mapping[str, Mapping[str, int]], tracked: Mapping[str, Counter], now: datetime
) -> dict[str, dict[str, int]]:
    """Only tracked keys, only the buckets their windows can still count."""
    out: dict[str, dict[str, int]] = {}
    for key, buckets in activity.items():
        counter = tracked.get(key)
        if counter is None:
            continue
        oldest = _oldest_day(now, counter.days) if counter.days is not None else None
        kept = {
            b: n
            for b, n in buckets.items()
            if n and ((b == ALL and counter.all) or (oldest is not None and b != ALL and b >= oldest))
        }
        if kept:
            out[key] = kept
    return out


def count(activity: Mapping[str, Mapping[str, int]], did: Did, now: datetime) -> int:
    """How many events the ``did`` condition counts at ``now`` (day granularity for windows)."""
    buckets = activity.get(counter_key(did)) or {}
    if did.within is None:
        return int(buckets.get(ALL, 0))
    oldest = (now - timedelta(seconds=did.within.total_seconds)).date().isoformat()
    return sum(int(n) for b, n in buckets.items() if b != ALL and b >= oldest)


# --- lifecycle ----------------------------------------------------------------------------------


def next_stage(model: LeadModel, stage: str | None, facts: Facts) -> tuple[str, str] | None:
    """The furthest stage after ``stage`` whose rule holds, and the rule's id; None if none holds.

    Rules only move a contact forward; a contact without a (known) stage may get any stage."""
    lifecycle = model.lifecycle
    rank = lifecycle.rank(stage)
    best: tuple[int, str, str] | None = None
    for rule in lifecycle.rules:
        target = lifecycle.rank(rule.to)
        if target <= rank or (best is not None and target <= best[0]):
            continue
        if evaluate(rule.when, facts):
            best = (target, rule.to, rule.id)
    return (best[1], best[2]) if best else None


# --- merging two contacts -------------------------------------------------------------------------


def combine(
    survivor: Mapping[str, Any], duplicate: Mapping[str, Any], now: datetime, model: LeadModel
) -> dict[str, Any]:
    """The lead state to SET on the survivor of a merge: both scores decayed to ``now`` and added,
    caps' points added (the earlier window start kept), activity counters added per bucket, the
    later lifecycle stage. ``fit_score`` and segments are recomputed by the lead engine afterwards
    (the merge writes ``contacts_merged``)."""
    value = current_score(survivor, now, model) + current_score(duplicate, now, model)
    rule_points: dict[str, dict[str, Any]] = {}
    for source in (ScoreState.of(survivor).rule_points, ScoreState.of(duplicate).rule_points):
        for rule_id, entry in source.items():
            mine = rule_points.setdefault(rule_id, {"points": 0, "window_start": None})
            mine["points"] = int(mine["points"]) + abs(int(entry.get("points") or 0))
            starts = [d for d in (parse_iso(mine["window_start"]), parse_iso(entry.get("window_start"))) if d]
            mine["window_start"] = iso(min(starts)) if starts else None
    activity: dict[str, dict[str, int]] = read_activity(survivor)
    for key, buckets in read_activity(duplicate).items():
        mine_buckets = activity.setdefault(key, {})
        for bucket, n in buckets.items():
            mine_buckets[bucket] = mine_buckets.get(bucket, 0) + n
    state = ScoreState(value=max(value, 0.0), at=now, rule_points=rule_points)
    out: dict[str, Any] = {**state.fields(), "activity": activity}
    stages = [s for s in (survivor.get("stage"), duplicate.get("stage")) if isinstance(s, str) and s]
    if stages:
        out["stage"] = max(stages, key=model.lifecycle.rank)
    return out


def replay(events: Iterable[Mapping[str, Any]], model: LeadModel) -> ScoreState:
    """The behaviour score of a contact's stored events (items with type, properties and
    occurred_at), oldest first, events of the same moment in event id order — what the lead
    engine computes event by event (checks, proofs)."""
    timed = [(parse_iso(e.get("occurred_at")), str(e.get("event_id") or ""), e) for e in events]
    state = ScoreState()
    for at, event_id, event in sorted(((t, i, e) for t, i, e in timed if t is not None), key=lambda p: p[:2]):
        assert at is not None
        properties = event.get("properties") or {}
        before = state
        if event.get("type") == "points_awarded":
            points = _number(properties.get("points"))
            if points:
                state = add_points(state, points, at, model)
        elif event.get("source") != "leads":
            state, _granted, _rules = score_event(state, str(event.get("type")), properties, at, model)
        if state != before:
            state = replace(state, event_id=event_id)
    return state
