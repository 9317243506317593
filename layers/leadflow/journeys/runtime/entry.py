"""Journey entries and exits, and email engagement bookkeeping, from the event stream.

- ``email_opened``/``email_clicked`` set the message's first-open/first-click time, which journey
  conditions read.
- An event that is a journey's entry trigger — an event type with property filters, a stage
  change, a score crossing, a segment entry, or a manual enrollment request — enters the contact
  when the entry condition holds and the re-entry rule allows it, with at most one active
  execution per contact and journey. The enrollment is written before the execution starts, under
  a deterministic name: a redelivered or repeated event cannot start the journey twice.
- An event that is one of a journey's exit events (or a stage it exits on, or an unsubscribe for
  a journey with ``exit.unsubscribed``) marks the contact's active enrollment to leave and ends a
  waiting execution at once: one waiting on a ``wait_for`` token gets ``SendTaskFailure
  (ContactExited)`` (its Catch leaves the journey as exited); any other running execution (in a
  Wait: a delay, a ``wait_until``, a deferred send) is stopped on purpose
  (``leadflow.journeys.runtime.stops.stop_on_purpose``: error ``leadflow.stopped``, cause ``exit: <reason>``, so
  ``leadflow ops redrive`` leaves it alone) and trigger does the leave bookkeeping itself,
  recording ``stopped_reason`` on the enrollment. (``exit.if`` conditions are checked before each step.)
- An event that a ``wait_for`` step of an enrolled journey awaits (type and ``where``) is recorded
  on the enrollment (``seen_<step id>``) and answers the step's registered task token
  (``SendTaskSuccess``): the execution takes the ``on_event`` path at once. Only those events cost
  anything (an index of awaited event types is built when the journeys load). Duplicate and
  out-of-order deliveries answer nothing twice (see ``leadflow.journeys.runtime.enrollments``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.journeys.conditions import Facts, evaluate, matches_where
from leadflow.journeys.model import Journey, ReEntryAfter, Trigger, WaitForStep, buckets
from leadflow.journeys.runtime.enrollments import JourneyStore, answer_wait, close_stopped, fail_wait
from leadflow.journeys.runtime.stops import EXIT, stop_on_purpose
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, parse_iso, utc_now
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.model import LeadModel
from leadflow.leads.scoring import current_score
from leadflow.messaging.store import MessageStore
from leadflow.platform.tables import keys

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

ENGAGEMENT_ATTRIBUTE = {"email_opened": "first_opened_at", "email_clicked": "first_clicked_at"}
MANUAL_ENROLLMENT = "journey_enrollment_requested"
UNSUBSCRIBED = "unsubscribed"
EXECUTION_GONE = ("ExecutionDoesNotExist", "ExecutionNotFound", "InvalidArn")


def execution_name(journey_id: str, contact_id: str, entry: int = 1) -> str:
    """Deterministic, PII-free and within Step Functions' 80-character limit."""
    suffix = "" if entry == 1 else f"-{entry}"
    return f"{journey_id}-{contact_id}"[: 80 - len(suffix)] + suffix


def is_entry(journey: Journey, event: Event) -> bool:
    """Whether the event is one of the journey's entry triggers (its ``if`` condition is checked
    apart). With ``any`` several triggers may fire for one contact: the enrollment rules (at most
    one active execution, re-entry) enrol it once."""
    return any(_is_trigger(trigger, journey, event) for trigger in journey.entry.triggers)


def _is_trigger(trigger: Trigger, journey: Journey, event: Event) -> bool:
    props = event.properties
    if trigger.kind == "event":
        return trigger.matches(event.type, props)
    if trigger.kind == "stage":
        return event.type == "stage_changed" and props.get("to") == trigger.stage
    if trigger.kind == "score":
        assert trigger.score_reaches is not None
        before, after = _number(props.get("from")), _number(props.get("to"))
        return (
            event.type == "score_changed"
            and before is not None
            and after is not None
            and before < trigger.score_reaches <= after
        )
    if trigger.kind == "segment":
        return event.type == "segment_entered" and props.get("segment") == trigger.segment
    return event.type == MANUAL_ENROLLMENT and props.get("journey_id") == journey.id


def exit_reason(journey: Journey, event: Event) -> str | None:
    rules = journey.exit
    for rule in rules.events:
        if event.type == rule.event and all(
            event.properties.get(k) in (v if isinstance(v, list) else [v]) for k, v in rule.where.items()
        ):
            return f"converted: {event.type}"
    if event.type == "stage_changed" and event.properties.get("to") in rules.stages:
        return f"reached stage {event.properties.get('to')}"
    if rules.unsubscribed and event.type == UNSUBSCRIBED:
        return "unsubscribed"
    return None


def revokes_email_consent(event: Event) -> bool:
    """A profile update that changed email consent (the contacts API, an import): whether it is
    now revoked needs the profile."""
    fields = event.properties.get("fields")
    return event.type == "contact_updated" and isinstance(fields, list) and "consent_email" in fields


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class TriggerService:
    def __init__(
        self,
        *,
        journeys: Sequence[Journey],
        messages: MessageStore,
        store: JourneyStore,
        sfn: SFNClient,
        state_machine_arn: Callable[[str], str],
        now: Callable[[], datetime] = utc_now,
        events: EventStore | None = None,
        lead_model: LeadModel | None = None,
        start_arn: Callable[[str], str] | None = None,
    ) -> None:
        """``events``: where ``journey_entered`` is recorded with each entry (reports count it);
        ``lead_model``: its score decay applies to ``score`` conditions of entries;
        ``start_arn``: what executions start on (the journey's alias: its live version; default
        the state machine itself). Execution ARNs name the state machine either way."""
        self._events = events
        self._lead_model = lead_model or LeadModel()
        self._journeys = journeys
        self._messages = messages
        self._store = store
        self._sfn = sfn
        self._state_machine_arn = state_machine_arn
        self._start_arn = start_arn or state_machine_arn
        self._now = now
        # event type -> the wait_for steps awaiting it: (journey, step id, where)
        self._awaited: dict[str, list[tuple[Journey, str, dict[str, Any]]]] = {}
        for journey in journeys:
            for step in journey.walk():
                if isinstance(step, WaitForStep):
                    entry = (journey, journey.step_id(step), dict(step.wait_for.where))
                    self._awaited.setdefault(step.wait_for.event, []).append(entry)

    def handle(self, event: Event) -> list[str]:
        """React to one event; returns the ids of the journeys it started (for counting and tests)."""
        attribute = ENGAGEMENT_ATTRIBUTE.get(event.type)
        if (
            attribute
            and event.message_id
            and not self._messages.mark_engaged(event.message_id, attribute, event.occurred_at)
        ):
            logger.info("engagement for unknown message", extra={"event_id": event.event_id})
        if event.contact_id is None:
            return []
        self._exits(event, event.contact_id)
        started = []
        profile: Mapping[str, Any] | None = None
        contact_id = event.contact_id

        def history(since: datetime | None) -> Sequence[Mapping[str, Any]]:
            return self._store.events_since(contact_id, since)

        for journey in self._journeys:
            if not is_entry(journey, event):
                continue
            if journey.entry.if_ is not None:
                if profile is None:
                    profile = self._store.profile(event.contact_id) or {}
                now = self._now()
                facts = Facts(
                    profile=profile,
                    now=now,
                    events=history,
                    score=current_score(profile, now, self._lead_model),
                )
                if not evaluate(journey.entry.if_, facts):
                    metrics.add_metric(name="JourneyEntryConditionFalse", unit="Count", value=1)
                    continue
            if self._enter(journey, event):
                started.append(journey.id)
        self._answer_waits(event, contact_id)
        return started

    # --- exits -------------------------------------------------------------------------------------

    def _exits(self, event: Event, contact_id: str) -> None:
        revoked: bool | None = None
        for journey in self._journeys:
            reason = exit_reason(journey, event)
            if reason is None and journey.exit.unsubscribed and revokes_email_consent(event):
                if revoked is None:
                    revoked = (self._store.profile(contact_id) or {}).get("consent_email") == "revoked"
                reason = "unsubscribed" if revoked else None
            if reason is None:
                continue
            enrollment = self._store.request_exit(contact_id, journey.id, reason, iso(self._now()))
            if enrollment is not None:
                metrics.add_metric(name="JourneyExitsRequested", unit="Count", value=1)
                self._end_now(journey.id, contact_id, enrollment, reason)

    def _end_now(self, journey_id: str, contact_id: str, enrollment: Mapping[str, Any], reason: str) -> None:
        """End the execution of an enrollment that must leave, now rather than at its next step."""
        waiting = enrollment.get("waiting")
        if isinstance(waiting, Mapping) and waiting.get("token"):
            token = str(waiting["token"])
            if fail_wait(self._sfn, token, reason):
                metrics.add_metric(name="WaitsEndedByExit", unit="Count", value=1)
            self._store.clear_wait(contact_id, journey_id, token)
            return
        name = str(enrollment.get("execution_name") or "")
        if not name:
            return
        arn = self._execution_arn(journey_id, name)
        try:
            # marked as a stop on purpose: `leadflow ops redrive` never resumes it
            stop_on_purpose(self._sfn, arn, EXIT, reason[:200])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in EXECUTION_GONE:
                raise
        close_stopped(
            self._store,
            self._events,
            execution_arn=arn,
            contact_id=contact_id,
            journey_id=journey_id,
            reason=reason,
            at=iso(self._now()),
        )
        metrics.add_metric(name="ExecutionsStoppedByExit", unit="Count", value=1)
        logger.info("execution stopped by an exit", extra={"journey": journey_id, "execution": name})

    # --- wait_for ----------------------------------------------------------------------------------

    def _answer_waits(self, event: Event, contact_id: str) -> None:
        awaited = self._awaited.get(event.type)
        if not awaited:
            return
        occurred = parse_iso(event.occurred_at)
        if occurred is None:
            return
        seen = keys.event_time(occurred, event.event_id)
        for journey, step_id, where in awaited:
            if not matches_where(event.properties, where):
                continue
            enrollment = self._store.record_seen(contact_id, journey.id, step_id, seen)
            waiting = enrollment.get("waiting") if enrollment else None
            if not isinstance(waiting, Mapping) or waiting.get("step_id") != step_id:
                continue
            if str(waiting.get("since", "")) > seen:
                continue  # the event happened before the wait started
            token = str(waiting["token"])
            if answer_wait(self._sfn, token, seen):
                metrics.add_metric(name="WaitsAnswered", unit="Count", value=1)
            self._store.clear_wait(contact_id, journey.id, token)

    # --- entering ----------------------------------------------------------------------------------

    def _journey(self, journey_id: str) -> Journey:
        return next(j for j in self._journeys if j.id == journey_id)

    def _execution_arn(self, journey_id: str, name: str) -> str:
        machine = self._state_machine_arn(journey_id)
        return machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"

    def _running(self, journey_id: str, name: str) -> bool:
        try:
            status = self._sfn.describe_execution(executionArn=self._execution_arn(journey_id, name))[
                "status"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return False
            raise
        return bool(status == "RUNNING")

    def _may_reenter(self, journey: Journey, left_at: str | None) -> bool:
        rule = journey.re_entry
        if rule == "always":
            return True
        if rule == "never":
            return False
        assert isinstance(rule, ReEntryAfter)
        if not left_at:
            return True
        left = datetime.fromisoformat(left_at.replace("Z", "+00:00"))
        return self._now() >= left + timedelta(seconds=rule.after.total_seconds)

    def _enter(self, journey: Journey, event: Event) -> bool:
        assert event.contact_id is not None
        contact_id = event.contact_id
        enrollment = self._store.enrollment(contact_id, journey.id)
        previous = int(enrollment["entries"]) if enrollment else None
        if enrollment is not None:
            if enrollment.get("entry_event_id") == event.event_id:
                # this very event entered the contact: the start may not have happened yet
                return self._start(journey.id, str(enrollment["execution_name"]), event)
            left_at = enrollment.get("left_at")
            if enrollment.get("status") == "active":
                if self._running(journey.id, str(enrollment["execution_name"])):
                    metrics.add_metric(name="JourneyAlreadyEntered", unit="Count", value=1)
                    logger.info("contact already in journey", extra={"journey": journey.id})
                    return False
                left_at = None  # it ended without leaving (failed, timed out): re-entry rules apply
            if not self._may_reenter(journey, left_at if isinstance(left_at, str) else None):
                metrics.add_metric(name="JourneyReEntryRefused", unit="Count", value=1)
                return False
        entries = (previous or 0) + 1
        name = execution_name(journey.id, contact_id, entries)
        at = iso(self._now())
        entered = (
            [
                self._events.put_op(
                    Event(
                        event_id=ids.deterministic_id(journey.id, name, "entered"),
                        type="journey_entered",
                        occurred_at=at,
                        contact_id=contact_id,
                        journey_id=journey.id,
                        source="journey",
                        properties={"entry_event_id": event.event_id, "entries": entries},
                    )
                )
            ]
            if self._events is not None
            else []
        )
        if not self._store.enter(
            contact_id,
            journey.id,
            entries=entries,
            previous_entries=previous,
            execution_name=name,
            entry_event_id=event.event_id,
            at=at,
            with_ops=entered,
        ):
            metrics.add_metric(name="JourneyAlreadyEntered", unit="Count", value=1)
            return False  # another event entered the contact a moment ago
        return self._start(journey.id, name, event)

    def _start(self, journey_id: str, name: str, event: Event) -> bool:
        assert event.contact_id is not None
        try:
            self._sfn.start_execution(
                stateMachineArn=self._start_arn(journey_id),
                name=name,
                input=json.dumps(
                    {
                        "contact_id": event.contact_id,
                        "journey_id": journey_id,
                        "entry_event_id": event.event_id,
                        "round": {"n": 0},
                        "buckets": buckets(self._journey(journey_id), event.contact_id),
                    }
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                metrics.add_metric(name="JourneyAlreadyEntered", unit="Count", value=1)
                logger.info("contact already in journey", extra={"journey": journey_id, "execution": name})
                return False
            raise
        metrics.add_metric(name="JourneysStarted", unit="Count", value=1)
        logger.info("journey started", extra={"journey": journey_id, "execution": name})
        return True
