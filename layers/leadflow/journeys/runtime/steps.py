"""The journey step function: every decision and effect a journey's state machine asks for.

The compiled ASL calls this (through the ``send`` Lambda) with the step's own definition in the
payload, parsed once into the task's typed request (``leadflow.journeys.runtime.tasks``) and dispatched
through one table, action → handler. Before every step the contact is checked against the journey's exit rules; a contact that
meets one raises ``ContactExited`` (the state machine routes it to "Leave journey (exited)").

Exactly once: sends are claimed per (execution, step, round) by ``SendService``; contact updates,
sales hand-offs and webhooks write an idempotency marker in the same transaction as their effect;
frequency-cap reservations are keyed by the message id; a folded branch (one task that decides and
acts) records its decision first-writer-wins (``DECISION#<execution>#<step>``) and a retry takes
the recorded path. A Step Functions retry or a redrive repeats nothing.

Sales hand-offs (``notify_sales``) assign an owner by the lead model's routing rules and publish the
complete hand-off document (``leadflow.leads.handoff``) to the sales SNS topic and the EventBridge
bus. A webhook whose retries are exhausted (or that the endpoint refused) is dead-lettered: the
``dead_letter`` action sends a record of it to the webhook dead-letter queue and the journey goes on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore, IdempotencyMarks
from leadflow.journeys.conditions import Facts, evaluate
from leadflow.journeys.model import WaitUntil
from leadflow.journeys.model import bucket as _bucket
from leadflow.journeys.runtime.enrollments import (
    CAP_DAY,
    CAP_WEEK,
    CapExceeded,
    JourneyStore,
    answer_wait,
    cap_limits,
)
from leadflow.journeys.runtime.tasks import (
    BranchSpec,
    ChannelSchedule,
    DeadLetterTask,
    EvaluateTask,
    FusedSendSpec,
    HoldoutTask,
    LeaveTask,
    NotifySalesTask,
    ScheduleTask,
    SendEmailTask,
    SendSmsTask,
    SendSpec,
    SendTask,
    SplitTask,
    StepTask,
    Task,
    UpdateContactTask,
    WaitForTask,
    WebhookTask,
    derive,
)
from leadflow.journeys.timing import next_send_time, rfc3339, wait_until_time, zone
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, parse_iso, utc_now
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.handoff import HandoffPublisher, InteractionHistory, build_document
from leadflow.leads.model import LeadModel
from leadflow.leads.routing import Assignment, Assignments
from leadflow.leads.scoring import current_score
from leadflow.messaging.model import SendRequest, SendResult
from leadflow.messaging.store import MessageStore
from leadflow.platform.dynamo import Transaction, commit_once
from leadflow.platform.tables import keys, time_key

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

WEBHOOK_TIMEOUT_SECONDS = 10
HELD_OUT = "held_out"
"""Status of a send task with a folded holdout whose contact is held out (it left the journey)."""


class ContactExited(Exception):
    """An exit rule holds: the state machine catches this error name and ends the journey."""


class SendDeferred(Exception):
    """The send may not go now (quiet hours, send window, frequency cap). The message is the time
    it may (RFC 3339, what a Wait's ``TimestampPath`` takes): the state machine waits for it and
    sends again. (Definitions compiled before sends deferred themselves go to their Schedule task.)"""


class WebhookFailed(Exception):
    """The endpoint did not accept the delivery (timeout, 5xx, 408, 429): retried with back-off."""


class WebhookRejected(Exception):
    """The endpoint refused the delivery for good (a 4xx other than 408/429): not retried."""


class Sender(Protocol):
    def send_email(self, request: SendRequest) -> SendResult: ...

    def send_sms(self, request: SendRequest) -> SendResult: ...


Poster = Callable[[str, bytes, Mapping[str, str]], int]
"""POST a body with headers to a URL; the HTTP status (raises OSError when there is no answer)."""


def http_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST without following redirects (a redirect is an answer, not a place to send data)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class JourneyStepRunner:
    def __init__(
        self,
        *,
        store: JourneyStore,
        messages: MessageStore,
        events: EventStore,
        marks: IdempotencyMarks,
        sender: Sender,
        transact: Callable[[Transaction], None],
        contacts: ContactStore,
        handoffs: HandoffPublisher,
        history: InteractionHistory,
        assignments: Assignments,
        lead_model: Callable[[], LeadModel],
        sqs: SQSClient,
        dead_letter_queue_url: str,
        webhook_keys: Callable[[], Mapping[str, str]],
        allow_plain_http: bool = False,
        post: Poster = http_post,
        now: Callable[[], datetime] = utc_now,
        sfn: SFNClient,
    ) -> None:
        """``handoffs``/``history``/``assignments``: sales hand-offs (where they go, the interaction
        history, the owner); ``lead_model``: the lead model (``leads.yaml``, read once and cached by
        the caller); ``sqs``/``dead_letter_queue_url``: where failed webhook deliveries go;
        ``sfn``: Step Functions, to answer a ``wait_for`` token whose event came before the wait."""
        self._store = store
        self._messages = messages
        self._events = events
        self._marks = marks
        self._sender = sender
        self._transact = transact
        self._contacts = contacts
        self._handoffs = handoffs
        self._history = history
        self._assignments = assignments
        self._lead_model = lead_model
        self._sqs = sqs
        self._dead_letter_queue_url = dead_letter_queue_url
        self._webhook_keys = webhook_keys
        self._allow_plain_http = allow_plain_http
        self._post = post
        self._now = now
        self._sfn = sfn
        # action → the step it runs (after the exit check); a new step type is one entry here
        # and one request model in ``leadflow.journeys.runtime.tasks``
        self._steps: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
            "send_email": self._send,
            "send_sms": self._send,
            "schedule": self._schedule,
            "evaluate": self._evaluate,
            "split": self._split,
            "holdout": self._holdout,
            "wait_for": self._wait_for,
            "update_contact": self._update_contact,
            "notify_sales": self._notify_sales,
            "webhook": self._webhook,
        }

    def run(self, request: StepTask) -> dict[str, Any]:
        """Run one task's step (``request``: parsed by ``leadflow.journeys.runtime.tasks.TASK``)."""
        if isinstance(request, LeaveTask):
            return self._leave(request)
        if isinstance(request, DeadLetterTask):
            # the record of a failed delivery is kept whatever the contact did meanwhile
            return self._dead_letter(request)
        profile = self._check_exit(request)
        result = self._steps[request.action](request, profile)
        if isinstance(request, SendEmailTask | SendSmsTask) and isinstance(request.step, SendSpec):
            plan = request.step.plan
            if plan is not None:
                # the wait_until right after this send: its time, planned by this task
                result = {**result, "at": rfc3339(self._wait_time(request, plan, profile))}
        if request.leave is not None and result.get("status") != HELD_OUT:
            # the last step: its task ends the execution, the leave bookkeeping rides along (both
            # idempotent: a retry finds the step done and the enrollment left)
            self._leave(request.model_copy(update={"outcome": request.leave}))
        return result

    # --- exit rules ------------------------------------------------------------------------------

    def _facts(self, request: Task, profile: Mapping[str, Any]) -> Facts:
        def engagement(step_id: str) -> Mapping[str, Any]:
            ref = step_id if request.round == 0 else f"{step_id}@{request.round}"
            message = self._messages.get(ids.deterministic_id(request.lineage_id, ref))
            if message is None and request.round:
                # the send ran in an earlier round only
                message = self._messages.get(ids.deterministic_id(request.lineage_id, step_id))
            return message or {}

        now = self._now()
        return Facts(
            profile=profile,
            now=now,
            engagement=engagement,
            events=lambda since: self._store.events_since(request.contact_id, since),
            score=current_score(profile, now, self._lead_model()),
        )

    def _check_exit(self, request: Task) -> dict[str, Any]:
        profile, enrollment = self._store.profile_and_enrollment(request.contact_id, request.journey_id)
        rules = request.journey.exit
        reason: str | None = None
        if profile is None:
            reason = "contact no longer exists"
        elif (
            enrollment
            and enrollment.get("exit_reason")
            and enrollment.get("execution_name")
            in (
                request.execution_name,
                None,
            )
        ):
            reason = str(enrollment["exit_reason"])
        elif rules.unsubscribed and profile.get("consent_email") == "revoked":
            reason = "unsubscribed"
        elif rules.stages and profile.get("stage") in rules.stages:
            reason = f"reached stage {profile.get('stage')}"
        elif rules.if_ is not None and evaluate(rules.if_, self._facts(request, profile)):
            reason = "exit condition met"
        if reason is not None:
            metrics.add_metric(name="JourneyExits", unit="Count", value=1)
            logger.info("contact exits journey", extra={"journey": request.journey_id, "reason": reason})
            raise ContactExited(reason)
        assert profile is not None
        return profile

    # --- sends -----------------------------------------------------------------------------------

    def _send_request(self, request: SendTask, spec: SendSpec) -> SendRequest:
        return SendRequest(
            action=request.action,
            purpose=spec.purpose,
            journey_id=request.journey_id,
            step_id=request.round_step_id,
            template=spec.template,
            template_version=spec.template_version,
            contact_id=request.contact_id,
            execution_id=request.execution_id,
            subject=spec.subject,
            preheader=spec.preheader,
            entry_event_id=request.entry_event_id,
        )

    def _reserve(self, request: Task, spec: SendSpec, profile: Mapping[str, Any], channel: str) -> None:
        """Count the message against the frequency cap (once per message id). A send that may not
        go now raises ``SendDeferred``: with the time it may when the definition catches it that
        way (``deferrable``), else (older definitions) for their Schedule task."""
        settings = request.journey.settings
        deferrable = spec.deferrable
        marketing = spec.purpose == "marketing"
        tz = zone(profile.get("timezone"), settings.timezone)
        now = self._now()
        if deferrable and marketing:
            # quiet hours and send window first: no read needed to know them
            at = next_send_time(
                now,
                tz,
                quiet=settings.quiet_hours,
                window=settings.send_window,
                cap=None,
                sent_on_day=lambda _day: 0,
                sent_in_week=lambda _week: 0,
            )
            if at > now:
                metrics.add_metric(name="SendsDeferred", unit="Count", value=1)
                raise SendDeferred(rfc3339(at))
        cap = settings.frequency_cap
        if cap is None or not marketing:
            return
        limits = cap_limits(now.astimezone(tz).date(), cap.per_day, cap.per_week)
        message_id = ids.deterministic_id(request.lineage_id, request.round_step_id)
        try:
            self._store.reserve(request.contact_id, channel, message_id, limits)
        except CapExceeded as exc:
            metrics.add_metric(name="SendsDeferred", unit="Count", value=1)
            if not deferrable:
                raise SendDeferred(f"{channel} frequency cap reached") from exc
            raise SendDeferred(rfc3339(self._next_send_time(request, profile, channel))) from exc

    def _next_send_time(self, request: Task, profile: Mapping[str, Any], channel: str) -> datetime:
        """When the send may go: quiet hours, send window and the frequency cap's counts."""
        settings = request.journey.settings
        tz = zone(profile.get("timezone"), settings.timezone)
        now = self._now()
        counts: dict[str, int] = {}

        def count(period: str) -> int:
            if period not in counts:
                counts.update(self._store.cap_counts(request.contact_id, channel, [period]))
            return counts[period]

        at = next_send_time(
            now,
            tz,
            quiet=settings.quiet_hours,
            window=settings.send_window,
            cap=settings.frequency_cap,
            sent_on_day=lambda day: count(CAP_DAY(str(day))),
            sent_in_week=lambda week: count(CAP_WEEK(week)),
        )
        # the cap was full a moment ago: never "now" (a whole second on, so the wait is real)
        return at if at > now else now.replace(microsecond=0) + timedelta(seconds=1)

    def _send(self, request: SendTask, profile: dict[str, Any]) -> dict[str, Any]:
        spec = request.step
        if isinstance(spec, FusedSendSpec):
            return self._fused_send(request, spec, profile)
        if isinstance(request, SendEmailTask):
            self._reserve(request, spec, profile, "email")
            return self._sender.send_email(self._send_request(request, spec)).model_dump()
        self._reserve(request, spec, profile, "sms")
        return self._sender.send_sms(self._send_request(request, spec)).model_dump()

    def _fused_send(self, request: SendTask, spec: FusedSendSpec, profile: dict[str, Any]) -> dict[str, Any]:
        """A send task with its decisions folded in (``compiler.fused_send``): a ``holdout`` (held-out
        contacts leave the journey here, nothing is sent) and/or a ``random_split`` of one send per
        path (the variant by the contact's bucket: a retry picks the same one, and its message id,
        made from the variant's step id, is claimed once). The result names every decision."""
        decisions: dict[str, dict[str, str]] = {}
        result: dict[str, Any] = {"message_id": None, "status": "none", "reason": None}
        holdout = spec.holdout
        if holdout is not None:
            held = float(request.holdout_bucket if request.holdout_bucket is not None else 1.0) < (
                holdout.percent / 100
            )
            decisions[holdout.step_id] = {"path": "held_out" if held else "treated"}
            if held:
                # the held-out contact leaves here (run() leaves as completed everyone else)
                self._leave(request.model_copy(update={"outcome": "held_out", "leave": None}))
                first = next(iter(decisions.values()))
                return {**result, "status": HELD_OUT, "path": first["path"], "decisions": decisions}
        chosen: SendSpec
        if spec.split is not None:
            point = float(request.split_bucket if request.split_bucket is not None else 0.0)
            variants = spec.split.variants
            index = next((i for i, v in enumerate(variants) if point < v.below), len(variants) - 1)
            decisions[spec.split.step_id] = {"path": f"path{index + 1}"}
            chosen, step_id = variants[index], variants[index].step_id
        elif spec.send is not None:
            chosen, step_id = spec.send, spec.send.step_id
        else:
            raise ValueError("a fused send task names its send or its split variants")
        result = self._send(request.model_copy(update={"step_id": step_id, "step": chosen}), profile)
        first = next(iter(decisions.values()), {"path": "sent"})
        return {**result, "path": first["path"], "decisions": decisions}

    # --- time --------------------------------------------------------------------------------------

    def _schedule(self, request: ScheduleTask, profile: dict[str, Any]) -> dict[str, Any]:
        """When a ``wait_until`` ends (and, for definitions compiled before sends deferred
        themselves, when a send may go)."""
        return {"at": rfc3339(self._wait_time(request, request.step, profile))}

    def _wait_time(
        self, request: Task, spec: WaitUntil | ChannelSchedule, profile: dict[str, Any]
    ) -> datetime:
        settings = request.journey.settings
        tz = zone(profile.get("timezone"), settings.timezone)
        now = self._now()
        if isinstance(spec, ChannelSchedule):
            at = self._next_send_time(request, profile, spec.channel)
            if at <= now + timedelta(seconds=1):
                at = now
            else:
                metrics.add_metric(name="SendsDeferred", unit="Count", value=1)
        else:
            value: object = None
            if spec.attribute:
                value = profile.get(spec.attribute)
            elif spec.event_property and request.entry_event_id:
                entry = self._events.get(keys.contact(request.contact_id), request.entry_event_id)
                value = ((entry or {}).get("properties") or {}).get(spec.event_property)
            at = wait_until_time(now, tz, spec, value)
        return at

    def _wait_for(self, request: WaitForTask, profile: dict[str, Any]) -> dict[str, Any]:
        """Register the callback task's token with the enrollment (``trigger`` answers it when the
        event arrives); an event seen already at or after the wait's start answers it now."""
        if request.token is None:
            return self._poll_wait_for(request)
        assert request.step_id is not None
        enrollment = self._store.enrollment(request.contact_id, request.journey_id) or {}
        start = self._now()
        if request.step.count_from == "entry":
            start = parse_iso(enrollment.get("entered_at")) or parse_iso(request.entered_at) or start
        since = time_key(start)
        outcome = self._store.register_wait(
            request.contact_id,
            request.journey_id,
            execution_name=request.execution_name,
            step_id=request.step_id,
            round=request.round,
            token=request.token,
            since=since,
        )
        if outcome == "exited":
            current = self._store.enrollment(request.contact_id, request.journey_id) or {}
            raise ContactExited(str(current.get("exit_reason") or "left the journey"))
        if outcome == "seen":
            current = self._store.enrollment(request.contact_id, request.journey_id) or {}
            seen = str(current.get(self._store.seen_attribute(request.step_id), ""))
            answer_wait(self._sfn, request.token, seen)
            return {"status": "seen"}
        return {"status": "waiting", "since": since}

    def _poll_wait_for(self, request: WaitForTask) -> dict[str, Any]:
        """``wait_for`` of definitions compiled before the callback pattern (a running execution
        keeps its definition): one check, then the state machine pauses and asks again."""
        now = self._now()
        since = parse_iso(request.since) or now
        spec = request.step
        if spec.timeout_seconds is None or spec.check_every_seconds is None:
            raise ValueError("a wait_for without a task token needs timeout_seconds and check_every_seconds")
        deadline = since + timedelta(seconds=spec.timeout_seconds)
        for event in self._store.events_since(request.contact_id, since):
            if event.get("type") == spec.event and _matches(event, spec.where):
                return {"since": iso(since), "outcome": "event", "pause_seconds": 0}
        if now >= deadline:
            return {"since": iso(since), "outcome": "timeout", "pause_seconds": 0}
        pause = min(spec.check_every_seconds, int((deadline - now).total_seconds()) + 1)
        return {"since": iso(since), "outcome": "waiting", "pause_seconds": max(1, pause)}

    # --- decisions -------------------------------------------------------------------------------

    def _evaluate(self, request: EvaluateTask, profile: dict[str, Any]) -> dict[str, Any]:
        if request.step.act is not None:
            return self._decide_and_act(request, profile)
        return {"path": self._decide(request, request.step, profile)}

    def _decide(self, request: Task, spec: BranchSpec, profile: dict[str, Any]) -> str:
        """The path of a ``branch``: then/else by its ``if``, else the first matching case."""
        facts = self._facts(request, profile)
        if spec.if_ is not None:
            return "then" if evaluate(spec.if_, facts) else "else"
        for i, case in enumerate(spec.cases or []):
            if evaluate(case.if_, facts):
                return f"case{i + 1}"
        return "default"

    def _decide_and_act(self, request: EvaluateTask, profile: dict[str, Any]) -> dict[str, Any]:
        """A fused ``branch`` (``compiler.fused_branch``): decide, record the decision with a
        conditional write (first writer wins: a retry, or a run after a deferred send, reads the
        recorded path instead of deciding again, so a contact never gets both paths), then do the
        chosen path's first step (a send or a contact update, each exactly once on its own)."""
        decided = self._decide(request, request.step, profile)
        path = self._marks.decide("DECISION", f"{request.lineage_id}#{request.round_step_id}", decided)
        result: dict[str, Any] = {"path": path, "message_id": None, "status": "none", "reason": None}
        act = (request.step.act or {}).get(path)
        if act:
            inner: Task
            if act.action == "update_contact":
                inner = derive(
                    request, UpdateContactTask, action=act.action, step_id=act.step_id, step=act.step
                )
            else:
                model = SendEmailTask if act.action == "send_email" else SendSmsTask
                inner = derive(request, model, action=act.action, step_id=act.step_id, step=act.step)
            done = self._steps[act.action](inner, profile)
            result.update({k: done.get(k) for k in ("message_id", "status", "reason")})
        return result

    def _split(self, request: SplitTask, profile: dict[str, Any]) -> dict[str, Any]:
        weights = request.step.weights
        point = _bucket("split", request.journey_id, str(request.step_id), request.contact_id) * sum(weights)
        total = 0
        for i, weight in enumerate(weights):
            total += weight
            if point < total:
                return {"path": f"path{i + 1}"}
        return {"path": f"path{len(weights)}"}

    def _holdout(self, request: HoldoutTask, profile: dict[str, Any]) -> dict[str, Any]:
        share = request.step.percent / 100
        held = _bucket("holdout", request.journey_id, str(request.step_id), request.contact_id) < share
        return {"path": "held_out" if held else "treated"}

    # --- effects ---------------------------------------------------------------------------------

    def _once(self, request: Task, txn: Transaction, kind: str = "STEP") -> bool:
        """Commit ``txn`` with this step's marker; False when an earlier attempt already did."""
        txn.add(self._marks.put_op(kind, f"{request.lineage_id}#{request.round_step_id}"), "marker")
        if not commit_once(self._transact, txn, "marker"):
            metrics.add_metric(name="DuplicateStepsPrevented", unit="Count", value=1)
            return False
        return True

    def _event(self, request: Task, kind: str, properties: dict[str, Any]) -> Event:
        return Event(
            event_id=ids.deterministic_id(request.lineage_id, request.round_step_id, kind),
            type=kind,
            occurred_at=iso(self._now()),
            contact_id=request.contact_id,
            journey_id=request.journey_id,
            source="journey",
            properties=properties,
        )

    def _update_contact(self, request: UpdateContactTask, profile: dict[str, Any]) -> dict[str, Any]:
        spec = request.step
        at = iso(self._now())
        sets: dict[str, Any] = {"updated_at": at, **dict(sorted(spec.set.items()))}
        add: dict[str, Any] = {}
        old_stage = profile.get("stage")
        stage_changes = bool(spec.stage) and spec.stage != old_stage
        if stage_changes:
            # the lead engine's optimistic lock (lead_version) sees the change and re-reads
            sets |= {"stage": spec.stage, "stage_at": at}
            add["lead_version"] = 1
        if spec.add_tags:
            add["tags"] = set(spec.add_tags)
        txn = Transaction()
        txn.add(
            self._contacts.journey_update_op(
                request.contact_id,
                sets=sets,
                add=add,
                delete={"tags": set(spec.remove_tags)} if spec.remove_tags else None,
                remove=spec.unset,
            ),
            "profile",
        )
        if stage_changes:
            stage_event = self._event(
                request,
                "stage_changed",
                {"from": old_stage or "", "to": spec.stage, "reason": f"journey {request.journey_id}"},
            )
            txn.add(self._events.put_op(stage_event), "stage_changed")
        if spec.add_points:
            # the lead engine applies the points (with decay and caps) and emits score_changed
            points = self._event(
                request,
                "points_awarded",
                {"points": spec.add_points, "reason": f"journey {request.journey_id}/{request.step_id}"},
            )
            txn.add(self._events.put_op(points), "points_awarded")
        done = self._once(request, txn)
        return {"status": "updated" if done else "duplicate"}

    def _handoff(
        self, request: Task, profile: Mapping[str, Any], reason: str, assignment: Assignment
    ) -> dict[str, Any]:
        """The complete hand-off document (profile, owner, full interaction history)."""
        history, truncated = self._history.of(profile)
        return build_document(
            handoff_id=ids.deterministic_id(request.lineage_id, request.round_step_id, "handoff"),
            reason=reason,
            journey_id=request.journey_id,
            step_id=request.step_id,
            profile=profile,
            assignment=assignment,
            history=history,
            history_truncated=truncated,
            now=self._now(),
            model=self._lead_model(),
        )

    def _already_done(self, request: Task, kind: str = "STEP") -> bool:
        return self._marks.exists(kind, f"{request.lineage_id}#{request.round_step_id}")

    def _notify_sales(self, request: NotifySalesTask, profile: dict[str, Any]) -> dict[str, Any]:
        if self._already_done(request):
            return {"status": "duplicate"}
        reason = request.step.reason
        # one owner per hand-off: the first notify_sales of the execution picks it, a retry or a
        # reminder of the same execution reuses it
        assignment, new = self._assignments.assign(
            request.lineage_id, profile, self._now(), made_by=request.round_step_id
        )
        document = self._handoff(request, profile, reason, assignment)
        # Published before the marker commits: a crash in between publishes again with the same
        # handoff_id, which subscribers use to drop the repeat (SNS and EventBridge are at-least-once).
        self._handoffs.publish(document)
        txn = Transaction()
        txn.add(
            self._events.put_op(self._event(request, "sales_notified", {"reason": reason[:200]})),
            "sales_notified",
        )
        if new and assignment.owner is not None:
            at = iso(self._now())
            txn.add(self._contacts.owner_op(request.contact_id, assignment.owner, at), "owner")
            assigned = {"owner": assignment.owner, "rule": assignment.rule}
            txn.add(self._events.put_op(self._event(request, "lead_assigned", assigned)), "lead_assigned")
        self._once(request, txn)
        metrics.add_metric(name="SalesHandoffs", unit="Count", value=1)
        return {"status": "notified"}

    def _webhook(self, request: WebhookTask, profile: dict[str, Any]) -> dict[str, Any]:
        if self._already_done(request):
            return {"status": "duplicate"}
        spec = request.step
        url = spec.url
        if url.startswith("http://") and not self._allow_plain_http:
            raise WebhookRejected("webhooks need https:// outside the local runtime")
        secret = self._webhook_keys().get(spec.secret)
        if not secret:
            raise WebhookRejected(f"no webhook secret named {spec.secret!r}")
        delivery_id = ids.deterministic_id(request.lineage_id, request.round_step_id, "webhook")
        document: dict[str, Any] = {
            "delivery_id": delivery_id,
            "journey_id": request.journey_id,
            "step_id": request.step_id,
            "contact_id": request.contact_id,
            "sent_at": iso(self._now()),
            "payload": dict(spec.payload),
        }
        if spec.include_handoff:
            # the owner of the contact's current hand-off, if any (a webhook never assigns one)
            owner = profile.get("owner")
            current = Assignment(owner=str(owner) if owner else None, rule=None)
            document["handoff"] = self._handoff(request, profile, "CRM sync", current)
        body = json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()
        timestamp = str(int(time.time()))
        signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "leadflow-webhook/1",
            "X-Leadflow-Delivery": delivery_id,
            "X-Leadflow-Signature": f"t={timestamp},v1={signature}",
        }
        try:
            status = self._post(url, body, headers)
        except OSError as exc:
            raise WebhookFailed(f"no answer: {type(exc).__name__}") from exc
        if status >= 500 or status in (408, 429):
            raise WebhookFailed(f"endpoint answered {status}")
        if not 200 <= status < 300:
            raise WebhookRejected(f"endpoint refused the delivery with {status}")
        txn = Transaction()
        txn.add(self._events.put_op(self._event(request, "webhook_delivered", {"status": status})), "event")
        self._once(request, txn)
        metrics.add_metric(name="WebhooksDelivered", unit="Count", value=1)
        return {"status": "delivered"}

    def _dead_letter(self, request: DeadLetterTask) -> dict[str, Any]:
        """A webhook delivery failed for good: a record of it goes to the dead-letter queue (once:
        a marker after the send; a crash in between sends it again with the same delivery id)."""
        if self._already_done(request, "DEADLETTER"):
            return {"status": "duplicate"}
        failure = request.failure or {}
        error = str(failure.get("Error") or "unknown")[:100]
        at = iso(self._now())
        record = {
            "delivery_id": ids.deterministic_id(request.lineage_id, request.round_step_id, "webhook"),
            "journey_id": request.journey_id,
            "step_id": request.step_id,
            "execution_id": request.execution_id,
            "contact_id": request.contact_id,
            "url_host": urlsplit(request.step.url).hostname or "",
            "error": error,
            "message": _exit_reason(failure.get("Cause"))[:300] if failure.get("Cause") else "",
            "at": at,
        }
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=json.dumps(record, separators=(",", ":"), sort_keys=True),
            MessageAttributes={
                "journey_id": {"DataType": "String", "StringValue": request.journey_id},
                "error": {"DataType": "String", "StringValue": error},
            },
        )
        txn = Transaction()
        failed = self._event(request, "webhook_failed", {"error": error, "url_host": record["url_host"]})
        txn.add(self._events.put_op(failed), "event")
        self._once(request, txn, "DEADLETTER")
        metrics.add_metric(name="WebhooksDeadLettered", unit="Count", value=1)
        logger.warning(
            "webhook dead-lettered",
            extra={"journey": request.journey_id, "step": request.step_id, "error": error},
        )
        return {"status": "dead_lettered"}

    # --- leaving -----------------------------------------------------------------------------------

    def _leave(self, request: Task) -> dict[str, Any]:
        outcome = request.outcome or "completed"
        reason = _exit_reason(request.reason) if outcome == "exited" else None
        at = iso(self._now())
        self._store.leave(request.contact_id, request.journey_id, request.execution_name, outcome, reason, at)
        event = Event(
            event_id=ids.deterministic_id(request.lineage_id, "leave", outcome),
            type=f"journey_{outcome}",
            occurred_at=at,
            contact_id=request.contact_id,
            journey_id=request.journey_id,
            source="journey",
            properties={"reason": reason} if reason else {},
        )
        try:
            self._events.record(event)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        metrics.add_metric(name=f"Journeys{outcome.title().replace('_', '')}", unit="Count", value=1)
        return {"status": outcome}


def _matches(event: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    properties = event.get("properties") or {}
    for key, expected in where.items():
        allowed = expected if isinstance(expected, list) else [expected]
        if key not in properties or properties[key] not in allowed:
            return False
    return True


def _exit_reason(cause: str | None) -> str:
    """The reason from a caught ContactExited error's Cause (Lambda's error JSON)."""
    if not cause:
        return "exit rule"
    try:
        data = json.loads(cause)
    except json.JSONDecodeError:
        return cause[:200]
    return str(data.get("errorMessage") or "exit rule")[:200] if isinstance(data, dict) else cause[:200]
