"""The lead engine: the ``score`` consumer of the events stream.

Per event, in time independent of the contact's history (one consistent profile read, one
transaction; no history query except the one-time fold below, and an event that scores but is not
newer than the score's time — redriven or late — which replays the stored events up to then, as the
floor at 0 and the caps make the score depend on the order of the events):

1. resolve the contact: ``contact_id``; an anonymous event through the visitor link
   (``V#<vid>``/``LINK``; without a link yet it waits for ``contact_identified``); a merged
   contact's tombstone is followed once;
2. behaviour score (decay, rule points, caps; ``points_awarded`` adds its points directly), activity
   counters for ``did`` conditions, fit score, lifecycle stage (rules move forward only, never
   while ``stage_hold_until`` is in the future) and every segment's membership — decided by
   ``leadflow.leads.decision.decide`` from what was read, with no I/O;
3. one transaction: the profile's lead fields under the optimistic lock ``lead_version``, the marker
   ``SCORE#<event id>`` (a redelivered event changes nothing: ``duplicate``), the derived events
   (``score_changed``, ``stage_changed``, ``segment_entered``/``segment_left``, ``source: leads``,
   deterministic ids) and the segment member items and counters. A lock conflict re-reads and
   retries (at most ``MAX_ATTEMPTS`` times, then the record fails and the stream retries it).

``contact_identified`` folds the visitor's events that no one applied yet (``V#<vid>`` partition,
oldest first) through scoring and activity, in chunks, each chunk with the ``SCORE#`` markers of its
events: every anonymous event counts exactly once, whether the stream brought it before the link
(skipped then, folded now), after the link (applied on its own, skipped by the fold) or while the
fold ran — no reliance on clocks or timestamps.

Activity counters count from the moment a ``did`` condition exists. ``reevaluate`` (the full
segment re-evaluation) recounts, once per contact and counter, the counters the profile does not
list in ``activity_complete`` from the contact's stored events — so a segment defined later with a
``did`` condition sees the history. (An event stored before that recount but applied by the stream
after it may be counted twice; the window is the stream's lag.)

A transaction holds at most 100 items: an event that changes more than ``MAX_SEGMENT_CHANGES``
memberships applies that many (in segment order) and leaves the rest to the contact's next event
or the next full re-evaluation (``reevaluate``), which recompute them from the profile.

Events the engine writes itself (``source: leads``) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from leadflow.contacts.store import ContactStore, VisitorLinks
from leadflow.events.model import Event
from leadflow.events.store import EventStore, IdempotencyMarks, stored_events
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, parse_iso, utc_now
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.decision import (
    LEADS_SOURCE,
    MAX_ITEMS,
    LeadDecision,
    Step,
    decide,
    tracked_counters,
    uncounted,
)
from leadflow.leads.model import LeadModel
from leadflow.leads.scoring import ScoreState, replay, rule_matches
from leadflow.platform.dynamo import Op, Transaction, TransactionCancelled
from leadflow.platform.tables import keys
from leadflow.segments.definitions import Segment
from leadflow.segments.store import SegmentMembership

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MARK_KIND = "SCORE"
MAX_ATTEMPTS = 5
FOLD_CHUNK = 60
"""Anonymous events folded per transaction (their markers + the lead state's items fit in 100)."""


class LeadStateConflict(RuntimeError):
    """The profile kept changing under the engine; the stream retries the record."""


class LeadStore:
    """The reads and the profile write the engine needs, over the stores that own the items: the
    profile and visitor links (``leadflow.contacts.store``), the stored events
    (``leadflow.events.store``)."""

    def __init__(self, client: DynamoDBClient, contacts_table: str, events_table: str) -> None:
        self._client = client
        self._contacts = ContactStore(client, contacts_table)
        self._links = VisitorLinks(client, contacts_table)
        self._events_table = events_table

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        return self._contacts.profile(contact_id, consistent=True)

    def resolve(self, contact_id: str) -> tuple[str, dict[str, Any]] | None:
        """The live profile and its contact id (``ContactStore.resolve``)."""
        return self._contacts.resolve(contact_id)

    def link(self, visitor_id: str) -> str | None:
        """The contact a visitor id is linked to (consistent), or None."""
        return self._links.linked_contact(visitor_id)

    def visitor_events(self, visitor_id: str) -> list[dict[str, Any]]:
        """Every stored event of an anonymous visitor (one partition, paged)."""
        return stored_events(self._client, self._events_table, keys.visitor(visitor_id))

    def contact_events(self, contact_id: str) -> list[dict[str, Any]]:
        """Every stored event of a contact (full re-evaluation only: never on the stream path)."""
        return stored_events(self._client, self._events_table, keys.contact(contact_id))

    def update_op(
        self,
        contact_id: str,
        sets: Mapping[str, Any],
        removes: Sequence[str],
        version: int | None,
        stage_from: tuple[str | None] | None,
    ) -> dict[str, Any]:
        """SET/REMOVE lead fields under the lock (``ContactStore.locked_update_op``)."""
        return self._contacts.locked_update_op(
            contact_id, version, sets=sets, remove=removes, stage_from=stage_from
        )

    def transact(self, txn: Transaction) -> None:
        txn.commit(self._client)


@dataclass
class Plan:
    """What one evaluation writes, by part; ``transaction()`` names each operation so a
    cancellation says which part failed."""

    contact_id: str
    profile_op: Op | None = None
    """``profile``: the lead fields under the ``lead_version`` lock."""
    markers: dict[str, Op] = field(default_factory=dict)
    """Idempotency markers by name: ``marker`` (the event applied: failing means a duplicate) or
    ``fold[i]`` (folded events: one failing means the stream applied it meanwhile — re-read and
    fold the rest)."""
    event_ops: list[Op] = field(default_factory=list)
    """``events[i]``: the derived events."""
    membership_ops: dict[str, list[Op]] = field(default_factory=dict)
    """Per segment entered or left: ``member:<id>`` (conditional) and ``count:<id>``."""
    changes: list[str] = field(default_factory=list)
    entering: list[str] = field(default_factory=list)
    leaving: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return (
            (self.profile_op is not None)
            + len(self.markers)
            + len(self.event_ops)
            + sum(len(ops) for ops in self.membership_ops.values())
        )

    def transaction(self) -> Transaction:
        txn = Transaction()
        if self.profile_op is not None:
            txn.add(self.profile_op, "profile")
        for name, op in self.markers.items():
            txn.add(op, name)
        txn.extend(self.event_ops, "events")
        for segment_id, (member, counter) in self.membership_ops.items():
            txn.add(member, f"member:{segment_id}")
            txn.add(counter, f"count:{segment_id}")
        return txn


def _keyed(*parts: str) -> Callable[[str, str], str]:
    """Derived event ids from the cause's key parts, the kind and the detail."""

    def event_id(kind: str, detail: str) -> str:
        return ids.deterministic_id(*parts, kind, detail)

    return event_id


class LeadEngine:
    def __init__(
        self,
        *,
        store: LeadStore,
        marks: IdempotencyMarks,
        events: EventStore,
        membership: SegmentMembership,
        model: LeadModel,
        segments: Callable[[], Sequence[Segment]],
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._marks = marks
        self._events = events
        self._membership = membership
        self._model = model
        self._segments = segments
        self._now = now

    # --- the stream ------------------------------------------------------------------------------

    def handle(self, event: Event) -> str:
        """Apply one event; returns what happened (for counting and tests): ``applied``,
        ``unchanged``, ``duplicate``, ``own_event``, ``anonymous`` (no link yet: folded in by
        ``contact_identified``), ``unknown_contact``."""
        if event.source == LEADS_SOURCE:
            return "own_event"
        at = parse_iso(event.occurred_at)
        if at is None:
            logger.warning("event without a readable time skipped", extra={"event_id": event.event_id})
            return "unreadable"
        overrides: dict[str, bool] = {}
        for _attempt in range(MAX_ATTEMPTS):
            contact_id = event.contact_id
            if contact_id is None:
                linked = self._store.link(event.visitor_id or "")
                if linked is None:
                    return self._count("anonymous")  # no marker: contact_identified folds it in
                contact_id = linked
            resolved = self._resolve(contact_id)
            if resolved is None:
                logger.info("event of an unknown contact skipped", extra={"event_id": event.event_id})
                return self._count("unknown_contact")
            contact_id, profile = resolved
            if event.type == "contact_identified" and not self._marks.exists(MARK_KIND, event.event_id):
                self._fold(event, contact_id)
                resolved = self._resolve(contact_id)
                if resolved is None:
                    return self._count("unknown_contact")
                contact_id, profile = resolved
            steps = [Step(event.type, event.properties, at, event.event_id)]
            if self._out_of_order(ScoreState.of(profile), steps) and self._marks.exists(
                MARK_KIND, event.event_id
            ):
                return self._count("duplicate")  # applied already: no history replay for a redelivery
            now = self._now()
            plan = self._plan(
                contact_id,
                profile,
                steps,
                now,
                event_id=_keyed(event.event_id),
                overrides=overrides,
                applying=frozenset({event.event_id}),
            )
            if plan is None:
                return "unchanged"
            plan.markers["marker"] = self._marks.put_op(MARK_KIND, event.event_id)
            outcome = self._commit(plan, overrides)
            if outcome == "retry":
                continue
            return self._count(outcome)
        raise LeadStateConflict(
            f"lead state of event {event.event_id} kept changing; retried {MAX_ATTEMPTS}x"
        )

    # --- full re-evaluation --------------------------------------------------------------------------

    def reevaluate(self, contact_id: str, run_id: str) -> list[str]:
        """Recompute one contact at now — the score decayed to now, fit, stage, every segment — and
        write what changed under the same lock; derived event ids are keyed by ``run_id``. Returns
        the changes written (``segment_entered:<id>``, ``segment_left:<id>``, ``stage_changed:<to>``,
        ``score_changed``); empty when nothing changed. A merged contact's tombstone leaves all its
        segments."""
        overrides: dict[str, bool] = {}
        for _attempt in range(MAX_ATTEMPTS):
            profile = self._store.profile(contact_id)
            if profile is None:
                return []
            now = self._now()
            version = str(profile.get("lead_version", 0))
            plan = self._plan(
                contact_id,
                profile,
                [],
                now,
                event_id=_keyed(run_id, contact_id, version),
                overrides=overrides,
                tombstone=bool(profile.get("merged_into")),
                recount=True,
            )
            if plan is None:
                return []
            outcome = self._commit(plan, overrides)
            if outcome == "retry":
                continue
            return plan.changes if outcome == "applied" else []
        raise LeadStateConflict(f"lead state of contact kept changing; retried {MAX_ATTEMPTS}x")

    # --- internals -----------------------------------------------------------------------------------

    def _count(self, outcome: str) -> str:
        name = {
            "duplicate": "DuplicateScoreRecords",
            "unknown_contact": "LeadEventsOfUnknownContacts",
            "anonymous": "LeadEventsOfUnlinkedVisitors",
            "folded": "LeadVisitorEventsFolded",
            "applied": "LeadEventsApplied",
        }.get(outcome)
        if name:
            metrics.add_metric(name=name, unit="Count", value=1)
        return outcome

    def _resolve(self, contact_id: str) -> tuple[str, dict[str, Any]] | None:
        """The contact's profile; a merged contact's survivor (followed once)."""
        return self._store.resolve(contact_id)

    def _fold(self, event: Event, contact_id: str) -> None:
        """``contact_identified``: apply the visitor's events nobody applied yet, oldest first, in
        chunks of ``FOLD_CHUNK`` — each chunk with the events' ``SCORE#`` markers in its
        transaction, so an event the stream applies on its own (or a retried fold) never counts
        twice. One-time work proportional to the visitor's anonymous history."""
        visitor_id = event.properties.get("visitor_id")
        if not isinstance(visitor_id, str) or not visitor_id:
            return
        if self._store.link(visitor_id) != contact_id:
            return
        pending = sorted(
            (
                (at, str(item.get("event_id", "")), item)
                for item in self._store.visitor_events(visitor_id)
                if item.get("source") != LEADS_SOURCE
                and (at := parse_iso(item.get("occurred_at"))) is not None
                and item.get("event_id")
            ),
            key=lambda entry: (entry[0], entry[1]),
        )
        overrides: dict[str, bool] = {}
        size, attempts = FOLD_CHUNK, 0
        while pending and attempts < MAX_ATTEMPTS * 10:
            attempts += 1
            pending = [entry for entry in pending if not self._marks.exists(MARK_KIND, entry[1])]
            resolved = self._resolve(contact_id)
            if not pending or resolved is None:
                return
            contact_id, profile = resolved
            todo = pending[:size]
            plan = self._plan(
                contact_id,
                profile,
                [
                    Step(str(item.get("type")), item.get("properties") or {}, at, event_id)
                    for at, event_id, item in todo
                ],
                self._now(),
                event_id=_keyed(event.event_id, "fold", todo[0][1]),
                overrides=overrides,
                applying=frozenset(event_id for _, event_id, _ in todo),
            ) or Plan(contact_id=contact_id)  # nothing changes: only remember they were seen
            if plan.size + len(todo) > MAX_ITEMS:
                size = max(1, size // 2)  # many segment changes at once: a smaller chunk
                continue
            for i, (_, event_id, _) in enumerate(todo):
                plan.markers[f"fold[{i}]"] = self._marks.put_op(MARK_KIND, event_id)
            if self._commit(plan, overrides) == "retry":
                continue
            self._count("folded")
            pending = pending[len(todo) :]
        if pending:
            raise LeadStateConflict("visitor history kept changing while it was folded in; retried")

    def _out_of_order(self, state: ScoreState, steps: Sequence[Step]) -> bool:
        """True when a step that scores is older than the score's time (one at the same moment
        adds in any order: the floor and the caps see the same time)."""
        if state.at is None:
            return False
        last = (state.at, state.event_id or "")
        return any((step.at, step.event_id) < last and self._scores(step) for step in steps)

    def _scores(self, step: Step) -> bool:
        if step.type == "points_awarded":
            return True
        return any(rule_matches(rule, step.type, step.properties) for rule in self._model.scoring.rules)

    def _replayed(
        self, contact_id: str, profile: Mapping[str, Any], until: datetime, applying: frozenset[str]
    ) -> ScoreState:
        """The behaviour score of the contact's stored events up to ``until`` (the score's time),
        oldest first (what ``leadflow.leads.scoring.replay`` defines). Every stored event older than
        ``until`` is in it, so one applied later (redriven) replays again rather than adding to it;
        of the events at ``until`` itself only those applied already (their ``SCORE#`` marker) and
        those being applied (``applying``): one still to come adds to the score when it arrives."""
        items = []
        for item in self._history_items(contact_id, profile):
            at = parse_iso(item.get("occurred_at"))
            if at is None or at > until:
                continue
            event_id = str(item.get("event_id", ""))
            if at == until and event_id not in applying and not self._marks.exists(MARK_KIND, event_id):
                continue
            items.append(item)
        return replay(items, self._model)

    def _history(self, contact_id: str, profile: Mapping[str, Any]) -> list[Step]:
        """The contact's stored events (its own, its merged duplicates' and its visitors'), for
        recounting activity in a full re-evaluation."""
        steps = []
        for item in self._history_items(contact_id, profile):
            at = parse_iso(item.get("occurred_at"))
            if at is not None:
                steps.append(Step(str(item.get("type")), item.get("properties") or {}, at))
        return steps

    def _history_items(self, contact_id: str, profile: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The stored event items of the contact, its merged duplicates and its linked visitors
        (the engine's own ``source: leads`` events left out)."""
        items = self._store.contact_events(contact_id)
        for merged in profile.get("merged_ids") or []:
            items += self._store.contact_events(str(merged))
        for visitor_id in profile.get("visitor_ids") or []:
            if self._store.link(str(visitor_id)) == contact_id:
                items += self._store.visitor_events(str(visitor_id))
        return [item for item in items if item.get("source") != LEADS_SOURCE]

    def _plan(
        self,
        contact_id: str,
        profile: dict[str, Any],
        steps: Sequence[Step],
        now: datetime,
        *,
        event_id: Callable[[str, str], str],
        overrides: Mapping[str, bool],
        tombstone: bool = False,
        recount: bool = False,
        applying: frozenset[str] = frozenset(),
    ) -> Plan | None:
        """The transaction items of the new lead state, or None when nothing changes. ``recount``
        (re-evaluation): counters the profile does not list as complete are recounted from history.
        Reads what the decision (``leadflow.leads.decision.decide``) needs, then names its writes."""
        segments = list(self._segments())
        history: list[Step] | None = None
        if recount and not tombstone:
            missing = uncounted(profile, tracked_counters(self._model, segments))
            history = self._history(contact_id, profile) if missing else []
        replayed: ScoreState | None = None
        old_state = ScoreState.of(profile)
        if steps and not recount and self._out_of_order(old_state, steps):
            # an event older than the score's time (a redriven or late record): the score is
            # replayed from the stored events, in time order, up to the newest of them — the
            # floor at 0 and the caps make it depend on the order, not only on the sum
            until = max([s.at for s in steps] + ([old_state.at] if old_state.at else []))
            replayed = self._replayed(contact_id, profile, until, applying)
        decision = decide(
            contact_id,
            profile,
            steps,
            now,
            model=self._model,
            segments=segments,
            event_id=event_id,
            overrides=overrides,
            tombstone=tombstone,
            history=history,
            replayed=replayed,
        )
        return None if decision is None else self._writes(decision, now)

    def _writes(self, decision: LeadDecision, now: datetime) -> Plan:
        """The named operations of a decision (``Plan.transaction``)."""
        plan = Plan(
            contact_id=decision.contact_id,
            changes=decision.changes,
            entering=decision.entering,
            leaving=decision.leaving,
        )
        plan.profile_op = self._store.update_op(
            decision.contact_id, decision.sets, decision.removes, decision.version, decision.stage_from
        )
        plan.event_ops = [self._events.put_op(e) for e in decision.events]
        at = iso(now)
        for segment_id in decision.entering:
            plan.membership_ops[segment_id] = self._membership.enter_ops(segment_id, decision.contact_id, at)
        for segment_id in decision.leaving:
            plan.membership_ops[segment_id] = self._membership.leave_ops(segment_id, decision.contact_id)
        return plan

    def _commit(self, plan: Plan, overrides: dict[str, bool]) -> str:
        """``applied``, ``duplicate`` or ``retry`` (re-read: the lock or a membership item differed)."""
        try:
            self._store.transact(plan.transaction())
        except TransactionCancelled as exc:
            if exc.failed_condition("marker"):
                return "duplicate"
            if any(exc.failed_condition(name) for name in plan.markers if name.startswith("fold[")):
                return "retry"
            repaired = False
            for segment_id in plan.entering + plan.leaving:
                if exc.failed_condition(f"member:{segment_id}"):
                    # the member item already says otherwise: the profile follows the member item
                    overrides[segment_id] = segment_id in plan.entering
                    repaired = True
            if repaired:
                logger.warning("segment membership out of step with the profile; repaired")
            if exc.failed_condition("profile") or repaired or exc.conflicted():
                metrics.add_metric(name="LeadStateConflicts", unit="Count", value=1)
                return "retry"
            raise
        if plan.entering or plan.leaving:
            metrics.add_metric(
                name="SegmentMembershipChanges", unit="Count", value=len(plan.entering) + len(plan.leaving)
            )
        if any(c.startswith("stage_changed") for c in plan.changes):
            metrics.add_metric(name="LeadStageChanges", unit="Count", value=1)
        return "applied"
