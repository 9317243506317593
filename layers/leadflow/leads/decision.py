"""The lead engine's decision: from a profile, the events to fold in and the lead model, the new
lead state — as data, with no reads or writes (``leadflow.leads.engine`` reads what it needs
before, and turns the decision into its named transaction after).

``decide`` computes, in this order: the behaviour score (rule points, ``points_awarded``, decay,
caps; or the score replayed from history when an event came out of order — the caller replays it),
the activity counters of ``did`` conditions (recounted from history when the caller passes it),
the fit score, the lifecycle stage (forward only, never while ``stage_hold_until`` is in the
future) and every segment's membership, and the derived events (``score_changed``,
``stage_changed``, ``segment_entered``/``segment_left``: ``source: leads``, ids from
``event_id(kind, detail)``).

Invariants: the same inputs give the same decision; ``None`` means nothing changes (no write, not
even the lock); a decision never changes more than ``MAX_SEGMENT_CHANGES`` memberships (one
transaction holds 100 items) — the rest follow with the contact's next event or re-evaluation;
a tombstone (merged contact) leaves every segment and never moves its stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from leadflow.events.model import Event
from leadflow.journeys.conditions import Did, Facts, evaluate
from leadflow.kernel.clock import iso, parse_iso
from leadflow.kernel.observability import logger
from leadflow.leads.model import LeadModel
from leadflow.leads.scoring import (
    Counter,
    ScoreState,
    add_points,
    count,
    count_event,
    counters,
    decay,
    display_score,
    fit_score,
    model_conditions,
    next_stage,
    read_activity,
    score_event,
    trim_activity,
)
from leadflow.segments.definitions import Segment

LEADS_SOURCE = "leads"
MAX_ITEMS = 100
FIXED_ITEMS = 4
"""Profile update, marker, score_changed, stage_changed."""
MAX_SEGMENT_CHANGES = (MAX_ITEMS - FIXED_ITEMS) // 3
"""Each membership change: its event, the member item and the shard counter."""
COMPLETE = "activity_complete"
"""Profile attribute: the counter keys a full re-evaluation recounted from the contact's history
(the stream path counts from the moment a ``did`` condition exists; a re-evaluation completes
the counts of conditions defined later)."""


@dataclass(frozen=True)
class Step:
    """One event folded into the lead state."""

    type: str
    properties: Mapping[str, Any]
    at: datetime
    event_id: str = ""


@dataclass(frozen=True)
class LeadDecision:
    """The new lead state of one contact, as the engine writes it."""

    contact_id: str
    sets: dict[str, Any]
    """Profile attributes to SET (always with the new ``lead_version``)."""
    removes: list[str]
    """Profile attributes to REMOVE."""
    version: int | None
    """The ``lead_version`` read (the optimistic lock; None: the profile has none yet)."""
    stage_from: tuple[str | None] | None
    """The stage read, when the stage moves (a second lock: the stage is still that one)."""
    events: list[Event] = field(default_factory=list)
    """The derived events, in the order they happened."""
    changes: list[str] = field(default_factory=list)
    """``kind:detail`` of each derived event (what the engine reports)."""
    entering: list[str] = field(default_factory=list)
    leaving: list[str] = field(default_factory=list)


def tracked_counters(model: LeadModel, segments: Sequence[Segment]) -> dict[str, Counter]:
    """The activity counters the segments' and the model's ``did`` conditions need, by key."""
    return counters([s.when for s in segments] + model_conditions(model))


def uncounted(profile: Mapping[str, Any], tracked: Mapping[str, Counter]) -> dict[str, Counter]:
    """The tracked counters the profile does not list as recounted from history (``COMPLETE``)."""
    complete = {str(k) for k in profile.get(COMPLETE) or []}
    return {k: c for k, c in tracked.items() if k not in complete}


def decide(
    contact_id: str,
    profile: Mapping[str, Any],
    steps: Sequence[Step],
    now: datetime,
    *,
    model: LeadModel,
    segments: Sequence[Segment],
    event_id: Callable[[str, str], str],
    overrides: Mapping[str, bool] | None = None,
    tombstone: bool = False,
    history: Sequence[Step] | None = None,
    replayed: ScoreState | None = None,
) -> LeadDecision | None:
    """The new lead state after ``steps`` (none: a re-evaluation at ``now``), or None when nothing
    changes. ``history``: the contact's stored events, to recount the counters not yet recounted
    (a re-evaluation; the profile then lists every tracked counter as complete). ``replayed``: the
    score replayed from the stored events (an event came older than the score's time): ``steps``
    then only count activity. ``overrides``: memberships the member items say otherwise than the
    profile (a repaired conflict)."""
    overrides = overrides or {}
    tracked = tracked_counters(model, segments)
    old_state = ScoreState.of(profile)
    state, rules = _scored(old_state, steps, now, model, replayed)
    complete = sorted(str(k) for k in profile.get(COMPLETE) or [])
    activity, new_complete = _counted(profile, complete, tracked, steps, now, None if tombstone else history)

    sets: dict[str, Any] = {}
    removes: list[str] = []
    derived: list[Event] = []
    changes: list[str] = []

    def derive(kind: str, detail: str, properties: dict[str, Any]) -> None:
        derived.append(
            Event(
                event_id=event_id(kind, detail),
                type=kind,
                occurred_at=iso(now),
                contact_id=contact_id,
                source=LEADS_SOURCE,
                properties=properties,
            )
        )
        changes.append(f"{kind}:{detail}" if detail else kind)

    if state != old_state:
        fields = state.fields()
        sets.update({k: v for k, v in fields.items() if v is not None})
        # points: against the old score decayed to the same moment; decay alone: the stored one
        since = state.at or now if steps else old_state.at
        before = display_score(decay(old_state.value, old_state.at, since or now, model))
        after = int(fields["score"])
        if before != after:
            derive(
                "score_changed",
                "",
                {"from": before, "to": after, "delta": after - before, "rule": ",".join(rules) or "decay"},
            )
    if activity != read_activity(profile):
        sets["activity"] = activity
    if new_complete != complete:
        sets[COMPLETE] = new_complete

    new_profile: dict[str, Any] = {**profile, **sets, "activity": activity}
    current = decay(state.value, state.at, now, model)

    def counts(did: Did) -> int:
        return count(activity, did, now)

    facts = Facts(profile=new_profile, now=now, score=current, counts=counts)
    fit = fit_score(model, facts)
    if (profile.get("fit_score") or 0) != fit:
        sets["fit_score"] = fit
    new_profile["fit_score"] = fit

    stage_from: tuple[str | None] | None = None
    hold = parse_iso(profile.get("stage_hold_until"))
    old_stage = profile.get("stage") if isinstance(profile.get("stage"), str) else None
    if not tombstone and (hold is None or hold <= now):
        moved = next_stage(model, old_stage, facts)
        if moved is not None:
            to, rule_id = moved
            sets["stage"] = to
            sets["stage_at"] = iso(now)
            stage_from = (old_stage,)
            new_profile["stage"] = to
            derive("stage_changed", to, {"from": old_stage, "to": to, "reason": f"rule {rule_id}"})

    members = {str(s) for s in (profile.get("segments") or [])}
    entering, leaving = _membership_changes(segments, members, facts, overrides, tombstone)
    new_members = {m for m in members if overrides.get(m, True)}
    new_members |= {s for s, inside in overrides.items() if inside}
    new_members = (new_members - set(leaving)) | set(entering)
    for segment_id in entering:
        derive("segment_entered", segment_id, {"segment": segment_id})
    for segment_id in leaving:
        derive("segment_left", segment_id, {"segment": segment_id})
    if new_members != members:
        if new_members:
            sets["segments"] = new_members
        else:
            removes.append("segments")

    if not sets and not removes:
        return None
    old_version = profile.get("lead_version")
    version = int(old_version) if isinstance(old_version, int | float) else None
    sets["lead_version"] = (version or 0) + 1
    return LeadDecision(
        contact_id=contact_id,
        sets=sets,
        removes=removes,
        version=version,
        stage_from=stage_from,
        events=derived,
        changes=changes,
        entering=entering,
        leaving=leaving,
    )


def _scored(
    old_state: ScoreState, steps: Sequence[Step], now: datetime, model: LeadModel, replayed: ScoreState | None
) -> tuple[ScoreState, list[str]]:
    """The behaviour score after ``steps`` (or the ``replayed`` one) and the rules that scored; with
    no steps (a re-evaluation) the score decayed to ``now`` when the displayed score changed."""
    state = old_state
    rules: list[str] = []
    if replayed is not None:
        state = replayed
        rules.append("replayed")
    for step in steps if replayed is None else []:
        prior = state
        if step.type == "points_awarded":
            awarded = step.properties.get("points")
            if isinstance(awarded, int | float) and not isinstance(awarded, bool) and awarded:
                state = add_points(state, float(awarded), step.at, model)
                rules.append("points_awarded")
        else:
            state, _granted, by = score_event(state, step.type, step.properties, step.at, model)
            rules += by
        if state != prior and step.event_id:
            state = replace(state, event_id=step.event_id)  # same-moment events: id order
    if not steps and state.at is not None and state.at < now and state.value > 0:
        # re-evaluation: the stored score is brought up to now when the displayed one changed
        decayed = decay(state.value, state.at, now, model)
        if display_score(decayed) != display_score(state.value):
            state = ScoreState(value=decayed, at=now, rule_points=state.rule_points)
    return state, rules


def _counted(
    profile: Mapping[str, Any],
    complete: list[str],
    tracked: Mapping[str, Counter],
    steps: Sequence[Step],
    now: datetime,
    history: Sequence[Step] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The activity counters after ``steps`` (those not yet recounted recounted from ``history``
    first, when given) and the counter keys complete afterwards."""
    activity = read_activity(profile)
    new_complete = [k for k in complete if k in tracked]  # a dropped key's counts are gone
    if history is not None:
        missing = uncounted(profile, tracked)
        if missing:
            activity = {k: v for k, v in activity.items() if k not in missing}
            for step in history:
                activity = count_event(activity, missing, step.type, step.properties, step.at)
        new_complete = sorted(tracked)
    for step in steps:
        activity = count_event(activity, tracked, step.type, step.properties, step.at)
    return trim_activity(activity, tracked, now), new_complete


def _membership_changes(
    segments: Sequence[Segment],
    members: set[str],
    facts: Facts,
    overrides: Mapping[str, bool],
    tombstone: bool,
) -> tuple[list[str], list[str]]:
    """The segments entered and left (at most ``MAX_SEGMENT_CHANGES`` together, in segment order)."""
    entering: list[str] = []
    leaving: list[str] = []
    for segment in segments:
        inside = False if tombstone else evaluate(segment.when, facts)
        was = overrides.get(segment.id, segment.id in members)
        if inside and not was:
            entering.append(segment.id)
        elif was and not inside:
            leaving.append(segment.id)
    if tombstone:
        known = {s.id for s in segments}
        leaving += sorted(m for m in members if m not in known and overrides.get(m, True))
    budget = MAX_SEGMENT_CHANGES
    if len(entering) + len(leaving) > budget:
        logger.info(
            "more segment changes than one transaction holds; the rest follow",
            extra={"changes": len(entering) + len(leaving), "applied": budget},
        )
        entering = entering[:budget]
        leaving = leaving[: budget - len(entering)]
    return entering, leaving
