"""Compile a journey to Amazon States Language: a pure function, deterministic output.

State names are what a marketer wrote ("Send email: welcome", "Wait 2 days", "Evaluate: Opened
the welcome email?"), so ops can follow an execution in the Step Functions console. Control flow
(order, waits, choices, loops) is ASL; every decision and effect is one call of the journey step
function (the ``send`` Lambda, placeholder ``${SendFunctionArn}``) whose payload carries the step's
own definition: a running execution keeps the journey version it started with — including the
version (content hash) of every template it sends, when compiled with ``templates_dir``.

Before every step the function checks the journey's exit rules; a contact that meets one raises
``ContactExited``, which every task catches and routes to "Leave journey (exited)".

Cost is a design constraint (Step Functions bills every state transition; four cost as much as the
email itself), so ASL decides what it can and nothing polls:

- a send is ONE task when it may go now; one that must wait (quiet hours, send window, frequency
  cap) fails with ``SendDeferred`` whose message is the time, and only then a Pass reads the time
  from the error, a Wait waits for it (``TimestampPath``) and the send runs again;
- ``random_split`` and ``holdout`` are Choice states on the contact's bucket (``$.buckets.<step
  id>``, a stable number in [0, 1) per contact and step that ``trigger`` puts into the input);
- ``wait_until`` a fixed ``at`` is a Wait with ``Timestamp``; any other ``wait_until`` right after a
  send is planned by that send (its result's ``at``), else by a Plan task;
- decisions fold into the task that acts on them (``fused_send``, ``fused_branch``): a
  ``random_split`` of one send per path is one send task picking the variant by the bucket; a
  ``holdout`` before the journey's final send is that task (held-out contacts leave there); a
  ``branch`` whose paths start with a send or a contact update is one task that decides (the
  decision recorded first-writer-wins), acts, and is followed by a Choice only where the paths
  continue differently. Their results carry the decision: ``$.decisions.<step id>.path``;
- ``wait_for`` is ONE callback task (``lambda:invoke.waitForTaskToken``): the function registers the
  task token with the enrollment, ``trigger`` answers it when the event arrives
  (``SendTaskSuccess``: the ``on_event`` path at once), ``TimeoutSeconds`` takes the ``on_timeout``
  path (``States.Timeout``), an exit answers it with ``ContactExited``;
- the leave task ends the execution; when the journey's last step is a send, a contact update or
  a hand-off, that task leaves the journey itself (``leave: completed`` in its payload) and ends it.

Every Wait state names the step it belongs to in its ``Comment`` (``step <id>``; a send's deferral
wait: the send's, or the folded decision's); ``waiting_steps`` reads them back, with the
``wait_for`` tasks' payload step ids: where an execution on an older version waits, by step
(``leadflow.ops.changes``). Only a journey with ``on_change: move_to_new`` starts with a Choice on
``$.resume_at`` (``RESUME``): a moved contact's execution begins at its target step, whose states
are never folded into another step's (targets count as ``_targeted``, like ``goto`` targets).

Transitions per contact: ``leadflow.journeys.cost``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadflow.journeys.conditions import describe
from leadflow.journeys.model import (
    BranchStep,
    EndStep,
    GotoStep,
    HoldoutStep,
    Journey,
    JourneyError,
    NotifySalesStep,
    RandomSplitStep,
    SendEmailStep,
    SendSmsStep,
    Step,
    UpdateContactStep,
    WaitForStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
    step_body,
    step_kind,
)
from leadflow.journeys.model import bucket as bucket  # the execution input's placement (re-exported)
from leadflow.journeys.model import buckets as buckets

SEND_FUNCTION_ARN = "${SendFunctionArn}"
CALLBACK = "arn:aws:states:::lambda:invoke.waitForTaskToken"
TIMEOUT_ERROR = "States.Timeout"
MAX_NAME = 80
TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
]
SEND_RETRY_ERRORS = [*TRANSIENT_ERRORS, "SendThrottled"]
EXITED_ERROR = "ContactExited"
DEFERRED_ERROR = "SendDeferred"
SEND_RESULT = {
    "message_id.$": "$.Payload.message_id",
    "status.$": "$.Payload.status",
    "reason.$": "$.Payload.reason",
}
"""What a send task keeps of the function's answer (its decision's result)."""
WEBHOOK_ERROR = "WebhookFailed"
WEBHOOK_REJECTED = "WebhookRejected"
HANDOFF_ERROR = "HandoffNotPublished"
COMPLETE = "Journey complete"
EXITED = "Contact exited"
HELD_OUT = "Held out"
RESUME = "Resume a moved contact"
"""The start Choice of a journey with ``on_change: move_to_new`` (``$.resume_at``)."""
LEAVE, LEAVE_EXITED, LEAVE_HELD_OUT = COMPLETE, EXITED, HELD_OUT
"""The leave tasks (the enrollment's bookkeeping) end the execution: named as its ending."""
ENDINGS = (COMPLETE, EXITED, HELD_OUT)
WEEKDAY_NAMES = {
    "mon": "Mon",
    "tue": "Tue",
    "wed": "Wed",
    "thu": "Thu",
    "fri": "Fri",
    "sat": "Sat",
    "sun": "Sun",
}

State = dict[str, Any]


def _retry(errors: list[str], *, interval: int = 2, attempts: int = 6, backoff: float = 2.0) -> list[State]:
    """A task's Retry: by default 6 attempts from 2 s, doubling, always with full jitter (a
    throttled or briefly unavailable service is not hit by every waiting execution at once)."""
    return [
        {
            "ErrorEquals": errors,
            "IntervalSeconds": interval,
            "MaxAttempts": attempts,
            "BackoffRate": backoff,
            "JitterStrategy": "FULL",
        }
    ]


def _truncate(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


class _Builder:
    def __init__(self, journey: Journey, fold: bool = True, templates_dir: Path | None = None) -> None:
        self.journey = journey
        self.fold = fold
        self.templates_dir = templates_dir
        self.template_versions: dict[str, str] = {}
        self.states: dict[str, State] = {}
        self.labels: dict[int, str] = {}
        self.journey_spec = {
            "exit": journey.exit.model_dump(mode="json", by_alias=True, exclude_defaults=False),
            "settings": journey.settings.model_dump(mode="json", exclude_none=True),
        }
        used: set[str] = set()
        for step in journey.walk():
            base = self._label(step)
            label, n = base, 2
            while label in used:
                label = f"{base} ({n})"
                n += 1
            used.add(label)
            self.labels[id(step)] = label

    # --- naming ------------------------------------------------------------------------------

    def _label(self, step: Step) -> str:
        body = step_body(step)
        if isinstance(step, SendEmailStep | SendSmsStep):
            return str(body.name or body.id)
        if isinstance(step, WaitStep):
            return step.wait.name or step.wait.describe()
        if isinstance(step, WaitUntilStep):
            return step.wait_until.name or f"Wait until {step.wait_until.describe()}"
        if isinstance(step, WaitForStep):
            return step.wait_for.name or step.wait_for.event
        if isinstance(step, BranchStep | RandomSplitStep):
            return str(body.name)
        if isinstance(step, HoldoutStep):
            return step.holdout.name or f"{step.holdout.percent:g}%"
        if isinstance(step, UpdateContactStep):
            return step.update_contact.name or _describe_update(step)
        if isinstance(step, NotifySalesStep):
            return step.notify_sales.name or step.notify_sales.reason[:50]
        if isinstance(step, WebhookStep):
            return step.webhook.name or urlsplit(step.webhook.url).hostname or "webhook"
        return step_kind(step)

    def entry(self, step: Step) -> str:
        """The name of the first state of a step (goto targets, chains)."""
        label = self.labels[id(step)]
        if isinstance(step, SendEmailStep):
            return _truncate(f"Send email: {label}")
        if isinstance(step, SendSmsStep):
            return _truncate(f"Send SMS: {label}")
        prefixes = {
            "wait": "Wait",
            "wait_for": "Wait for",
            "branch": "Evaluate:",
            "random_split": "Split:",
            "holdout": "Holdout:",
            "update_contact": "Update contact:",
            "notify_sales": "Notify sales:",
            "webhook": "Webhook:",
        }
        kind = step_kind(step)
        if kind == "wait_until":
            assert isinstance(step, WaitUntilStep)
            return _truncate(label if step.wait_until.at is not None else f"Plan: {label}")
        if kind == "wait_for":
            return _truncate(f"Wait for {label}")
        return _truncate(f"{prefixes[kind]} {label}")

    def _scheduled(self, purpose: str) -> bool:
        return purpose == "marketing" and self.journey.settings.schedules_sends

    def add(self, name: str, state: State) -> str:
        assert name not in self.states, f"state name {name!r} used twice"
        self.states[name] = state
        return name

    # --- building ----------------------------------------------------------------------------

    def chain(self, steps: list[Step], after: str) -> str:
        """Add the states of ``steps``, the last one continuing to ``after``; return the first's name.
        A ``holdout`` directly before the journey's final send (or send split) folds into it."""
        nxt = after
        i = len(steps) - 1
        while i >= 0:
            step, before = steps[i], steps[i - 1] if i > 0 else None
            if (
                self.fold
                and isinstance(before, HoldoutStep)
                and nxt == LEAVE
                and not self._targeted(before)
                and not self._targeted(step)
                and self._sends(step) is not None
            ):
                nxt = self.fused_send(step, nxt, holdout=before)
                i -= 2
                continue
            if (
                self.fold
                and isinstance(step, WaitUntilStep)
                and step.wait_until.at is None
                and isinstance(before, SendEmailStep | SendSmsStep)
                and not self._targeted(step)
            ):
                # the send before a wait_until plans it: no Plan task
                wait = self.add(
                    _truncate(self.labels[id(step)]),
                    {
                        "Type": "Wait",
                        "Comment": step_comment(self.journey.step_id(step)),
                        "TimestampPath": f"$.steps.{self.journey.step_id(before)}.at",
                        "Next": nxt,
                    },
                )
                plan = step.wait_until.model_dump(mode="json", exclude_none=True, exclude={"id", "name"})
                nxt = self.send(before, wait, plan=plan)
                i -= 2
                continue
            nxt = self.step(step, nxt)
            i -= 1
        return nxt

    # --- folds: decisions made by the task that acts on them (no Choice state) ----------------

    def _targeted(self, step: Step) -> bool:
        """Whether a ``goto`` jumps to this step, or ``on_change: move_to_new`` resumes moved
        contacts there (it then needs a state of its own)."""
        step_id = self.journey.step_id(step)
        if step_id in self.journey.move_to_new.values():
            return True
        return any(isinstance(s, GotoStep) and s.goto == step_id for s in self.journey.walk())

    def _sends(self, step: Step) -> list[SendEmailStep | SendSmsStep] | None:
        """The variants when ``step`` is a send, or a ``random_split`` whose paths are each one send
        of the same channel; else None."""
        if isinstance(step, SendEmailStep | SendSmsStep):
            return [step]
        if isinstance(step, RandomSplitStep):
            sends = [p.steps[0] for p in step.random_split.paths if len(p.steps) == 1]
            if len(sends) == len(step.random_split.paths) and (
                all(isinstance(s, SendEmailStep) for s in sends)
                or all(isinstance(s, SendSmsStep) for s in sends)
            ):
                found = [s for s in sends if isinstance(s, SendEmailStep | SendSmsStep)]
                if not any(self._targeted(s) for s in found):
                    return found
        return None

    def _send_spec(self, step: SendEmailStep | SendSmsStep) -> dict[str, Any]:
        body = step.send_email if isinstance(step, SendEmailStep) else step.send_sms
        channel = "email" if isinstance(step, SendEmailStep) else "sms"
        spec: dict[str, Any] = {"template": body.template, "purpose": body.purpose, "channel": channel}
        if self.templates_dir is not None:
            spec["template_version"] = self._template_version(body.template)
        if isinstance(step, SendEmailStep):
            spec.update(step.send_email.model_dump(include={"subject", "preheader"}, exclude_none=True))
        if self._scheduled(body.purpose):
            spec["deferrable"] = True  # may fail with SendDeferred (caught by the task)
        return spec

    def _template_version(self, template: str) -> str:
        """The content hash of the template the send renders: a template change is a definition
        change, and an execution renders the versions of the definition it started on."""
        # imported here: only synth and the local runtime compile with templates (the functions that
        # import this module for its buckets never load the template machinery at cold start)
        from leadflow.messaging.template_versions import TemplateVersionError, version_of

        if template not in self.template_versions:
            assert self.templates_dir is not None
            try:
                self.template_versions[template] = version_of(self.templates_dir, template)
            except TemplateVersionError as exc:
                raise JourneyError(f"journey {self.journey.id!r}: {exc}") from exc
        return self.template_versions[template]

    def _deferral_catch(self, step_id: str, label: str, task_name: str) -> list[State]:
        """The Catch of a send task that may be deferred: SendDeferred → ``_deferral``."""
        deferral = self._deferral(step_id, label, task_name)
        return [{"ErrorEquals": [DEFERRED_ERROR], "ResultPath": "$.deferred", "Next": deferral}]

    def _deferral(self, step_id: str, label: str, task_name: str) -> str:
        """Pass (the time from the SendDeferred error) → Wait → the task again; the Pass's name."""
        deferred_name = _truncate(f"Deferred: {label}")
        wait = self.add(
            _truncate(f"Wait for send window: {label}"),
            {
                "Type": "Wait",
                "Comment": step_comment(step_id, "until the send may go"),
                "TimestampPath": f"$.schedule.{step_id}.at.errorMessage",
                "Next": task_name,
            },
        )
        return self.add(
            deferred_name,
            {
                "Type": "Pass",
                "Comment": "quiet hours, send window or frequency cap: the error message is the time to send",
                "Parameters": {"at.$": "States.StringToJson($.deferred.Cause)"},
                "ResultPath": f"$.schedule.{step_id}",
                "Next": wait,
            },
        )

    def fused_send(self, step: Step, nxt: str, holdout: HoldoutStep | None = None) -> str:
        """ONE send task for a ``random_split`` of single sends (the variant picked by the contact's
        bucket, each variant's own step id on its message) and/or a ``holdout`` before the journey's
        final send (held-out contacts leave with outcome ``held_out`` in the same task). Its result
        (``$.decisions.<first folded step id>``) carries ``path`` and every decision it made."""
        sends = self._sends(step)
        assert sends is not None
        first = holdout or step
        decision_id = self.journey.step_id(first)
        name = self.entry(first)
        label = self.labels[id(first)]
        spec: dict[str, Any] = {}
        extra: dict[str, str] = {"entry_event_id.$": "$.entry_event_id"}
        comments = []
        if holdout is not None:
            holdout_id = self.journey.step_id(holdout)
            spec["holdout"] = {"step_id": holdout_id, "percent": holdout.holdout.percent}
            extra["holdout_bucket.$"] = f"$.buckets.{holdout_id}"
            comments.append(f"{holdout.holdout.percent:g}% held out on the contact's stable bucket")
        if isinstance(step, RandomSplitStep):
            split_id = self.journey.step_id(step)
            total = sum(p.weight for p in step.random_split.paths)
            running, variants = 0, []
            for path, send in zip(step.random_split.paths, sends, strict=True):
                running += path.weight
                variants.append(
                    {"step_id": self.journey.step_id(send), "below": running / total, **self._send_spec(send)}
                )
            spec["split"] = {"step_id": split_id, "variants": variants}
            extra["split_bucket.$"] = f"$.buckets.{split_id}"
            weights = " / ".join(f"{p.weight:g}" for p in step.random_split.paths)
            comments.append(f"random split {weights} of one send each, on the contact's stable bucket")
        else:
            spec["send"] = {"step_id": self.journey.step_id(step), **self._send_spec(sends[0])}
        deferrable = any(self._scheduled(self._body(s).purpose) for s in sends)
        channel = "email" if isinstance(sends[0], SendEmailStep) else "sms"
        catch = self._deferral_catch(decision_id, label, name) if deferrable else None
        task = self.task(
            name,
            f"send_{channel}",
            first,
            nxt,
            spec=spec,
            result={**SEND_RESULT, "path.$": "$.Payload.path", "decisions.$": "$.Payload.decisions"},
            result_path=f"$.decisions.{decision_id}",
            retry=_retry(SEND_RETRY_ERRORS),
            catch=catch,
            extra=extra,
            may_end=True,
        )
        self.states[task]["Comment"] = "; ".join(comments) or "send"
        return task

    @staticmethod
    def _body(step: SendEmailStep | SendSmsStep) -> Any:
        return step.send_email if isinstance(step, SendEmailStep) else step.send_sms

    def _target(self, goto: GotoStep) -> Step:
        return next(s for s in self.journey.walk() if self.journey.step_id(s) == goto.goto)

    def step(self, step: Step, nxt: str) -> str:
        if isinstance(step, GotoStep):
            target = self._target(step)
            if self.journey.position(target) < self.journey.position(step):
                # a loop: count the round so messages of the next round get their own ids
                return self.add(
                    _truncate(f"Repeat from {self.labels[id(target)]}"),
                    {
                        "Type": "Pass",
                        "Comment": f"goto {step.goto}",
                        "Parameters": {"n.$": "States.MathAdd($.round.n, 1)"},
                        "ResultPath": "$.round",
                        "Next": self.entry(target),
                    },
                )
            return self.entry(target)
        if isinstance(step, EndStep):
            return LEAVE
        if isinstance(step, SendEmailStep | SendSmsStep):
            return self.send(step, nxt)
        if isinstance(step, WaitStep):
            return self.add(
                self.entry(step),
                {
                    "Type": "Wait",
                    "Comment": step_comment(self.journey.step_id(step)),
                    "Seconds": step.wait.total_seconds,
                    "Next": nxt,
                },
            )
        if isinstance(step, WaitUntilStep):
            return self.wait_until(step, nxt)
        if isinstance(step, WaitForStep):
            return self.wait_for(step, nxt)
        if isinstance(step, BranchStep):
            return self.branch(step, nxt)
        if isinstance(step, RandomSplitStep):
            return self.random_split(step, nxt)
        if isinstance(step, HoldoutStep):
            return self.holdout(step, nxt)
        assert isinstance(step, UpdateContactStep | NotifySalesStep | WebhookStep)
        return self.effect(step, nxt)

    def task(
        self,
        name: str,
        action: str,
        step: Step,
        nxt: str,
        *,
        spec: Any = None,
        result: dict[str, str] | None = None,
        result_path: str | None = None,
        retry: list[State] | None = None,
        catch: list[State] | None = None,
        extra: dict[str, str] | None = None,
        may_end: bool = False,
    ) -> str:
        """A Lambda task. ``may_end``: when it is the journey's last step (``nxt`` is the leave
        task), the function leaves the journey itself after the step and the task ends the
        execution: one transition and one invocation less per contact."""
        ends = may_end and nxt == LEAVE
        payload: dict[str, Any] = {
            "action": action,
            "journey_id": self.journey.id,
            "step_id": self.journey.step_id(step),
            "journey": self.journey_spec,
            "contact_id.$": "$.contact_id",
            "execution_id.$": "$$.Execution.Id",
            "entered_at.$": "$$.Execution.StartTime",
            "round.$": "$.round.n",
        }
        if spec is not None:
            payload["step"] = spec
        if ends:
            payload["leave"] = "completed"
        payload.update(extra or {})
        state: State = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": SEND_FUNCTION_ARN, "Payload": payload},
            "ResultSelector": result or {"status.$": "$.Payload.status"},
            "ResultPath": result_path or f"$.steps.{self.journey.step_id(step)}",
            "Retry": retry or _retry(TRANSIENT_ERRORS),
            "Catch": [
                *(catch or []),
                {"ErrorEquals": [EXITED_ERROR], "ResultPath": "$.exit", "Next": LEAVE_EXITED},
            ],
        }
        if ends:
            state["End"] = True
        else:
            state["Next"] = nxt
        return self.add(name, state)

    def send(self, step: SendEmailStep | SendSmsStep, nxt: str, plan: dict[str, Any] | None = None) -> str:
        """The send task; ``plan``: the ``wait_until`` right after it, whose time the task returns
        (``at``, read by the Wait's ``TimestampPath``) instead of a Plan task of its own."""
        body = self._body(step)
        channel = "email" if isinstance(step, SendEmailStep) else "sms"
        send_name = self.entry(step)
        spec = self._send_spec(step)  # "deferrable" when it may fail with SendDeferred (caught below)
        if plan is not None:
            spec["plan"] = plan
        catch = (  # the deferral's states are added before the send
            self._deferral_catch(self.journey.step_id(step), self.labels[id(step)], send_name)
            if self._scheduled(body.purpose)
            else None
        )
        send = self.task(
            send_name,
            f"send_{channel}",
            step,
            nxt,
            spec=spec,
            result={**SEND_RESULT, **({"at.$": "$.Payload.at"} if plan is not None else {})},
            retry=_retry(SEND_RETRY_ERRORS),
            catch=catch,
            extra={"entry_event_id.$": "$.entry_event_id"},
            may_end=True,
        )
        self.states[send]["Comment"] = f"{body.purpose} {channel}, template {body.template}"
        return send

    def wait_until(self, step: WaitUntilStep, nxt: str) -> str:
        step_id = self.journey.step_id(step)
        label = self.labels[id(step)]
        if step.wait_until.at is not None:
            at = step.wait_until.at.astimezone(UTC)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S") + (
                f".{at.microsecond // 1000:03d}Z" if at.microsecond else "Z"
            )
            return self.add(
                self.entry(step),
                {"Type": "Wait", "Comment": step_comment(step_id), "Timestamp": stamp, "Next": nxt},
            )
        wait = self.add(
            _truncate(label),
            {
                "Type": "Wait",
                "Comment": step_comment(step_id),
                "TimestampPath": f"$.schedule.{step_id}.at",
                "Next": nxt,
            },
        )
        return self.task(
            self.entry(step),
            "schedule",
            step,
            wait,
            spec=step.wait_until.model_dump(mode="json", exclude_none=True, exclude={"id", "name"}),
            result={"at.$": "$.Payload.at"},
            result_path=f"$.schedule.{step_id}",
            extra={"entry_event_id.$": "$.entry_event_id"} if step.wait_until.event_property else None,
        )

    def wait_for(self, step: WaitForStep, nxt: str) -> str:
        spec = step.wait_for
        step_id = self.journey.step_id(step)
        on_event = self.chain(spec.on_event, nxt)
        on_timeout = self.chain(spec.on_timeout, nxt)
        name = self.task(
            self.entry(step),
            "wait_for",
            step,
            on_event,
            spec={"event": spec.event, "where": spec.where, "count_from": spec.count_from},
            extra={"token.$": "$$.Task.Token"},
            result={"event_id.$": "$.event_id", "occurred_at.$": "$.occurred_at"},
            result_path=f"$.waits.{step_id}",
            catch=[{"ErrorEquals": [TIMEOUT_ERROR], "ResultPath": None, "Next": on_timeout}],
        )
        state = self.states[name]
        state["Resource"] = CALLBACK
        state["TimeoutSeconds"] = spec.timeout.total_seconds
        state["Comment"] = (
            f"wait for {spec.event}, at most {spec.timeout.describe()}: the task token is answered "
            "by trigger when the event arrives"
        )
        return name

    def path_choice(self, name: str, step_id: str, paths: list[tuple[str, str]]) -> str:
        """A Choice on the path a task decided (``$.decisions.<step>.path``); the last path is the default."""
        *choices, (_, last_target) = paths
        return self.add(
            _truncate(name),
            {
                "Type": "Choice",
                "Choices": [
                    {"Variable": f"$.decisions.{step_id}.path", "StringEquals": path, "Next": target}
                    for path, target in choices
                ],
                "Default": last_target,
            },
        )

    def _decision(self, step: Step, name: str, paths: list[tuple[str, str]], spec: Any, action: str) -> str:
        step_id = self.journey.step_id(step)
        choice = self.path_choice(name, step_id, paths)
        return self.task(
            self.entry(step),
            action,
            step,
            choice,
            spec=spec,
            result={"path.$": "$.Payload.path"},
            result_path=f"$.decisions.{step_id}",
        )

    def branch(self, step: BranchStep, nxt: str) -> str:
        branch = step.branch
        spec = branch.model_dump(mode="json", by_alias=True, exclude_none=True, include={"if_", "cases"})
        if "cases" in spec:
            spec["cases"] = [{"if": case["if"]} for case in spec["cases"]]
        label = self.labels[id(step)]
        name = label if label.endswith("?") else f"{label}?"
        comment = describe(branch.if_) if branch.if_ is not None else None
        if self.fold and self._foldable(branch.paths()):
            first = self.fused_branch(step, spec, name, nxt)
        else:
            targets = [(path, self.chain(steps, nxt)) for path, steps in branch.paths()]
            first = self._decision(step, name, targets, spec, "evaluate")
        if comment:
            self.states[first]["Comment"] = comment
        return first

    def _foldable(self, paths: list[tuple[str, list[Step]]]) -> bool:
        """Every path empty or starting with a send or a contact update (no ``goto`` to it)."""
        firsts = [steps[0] for _, steps in paths if steps]
        return bool(firsts) and all(
            isinstance(s, SendEmailStep | SendSmsStep | UpdateContactStep) and not self._targeted(s)
            for s in firsts
        )

    def _act(self, step: Step) -> dict[str, Any]:
        """What a fused branch task does on a path: the path's first step (a send or an update)."""
        if isinstance(step, SendEmailStep | SendSmsStep):
            channel = "email" if isinstance(step, SendEmailStep) else "sms"
            return {
                "action": f"send_{channel}",
                "step_id": self.journey.step_id(step),
                "step": self._send_spec(step),
            }
        assert isinstance(step, UpdateContactStep)
        spec = step.update_contact.model_dump(mode="json", exclude_none=True, exclude={"id", "name"})
        return {"action": "update_contact", "step_id": self.journey.step_id(step), "step": spec}

    def fused_branch(self, step: BranchStep, spec: dict[str, Any], choice_name: str, nxt: str) -> str:
        """ONE task that decides a ``branch`` and does the chosen path's first step (a send or a
        contact update). The decision is recorded by a conditional write (first writer wins): a
        retried task takes the same path and can never send both emails. A Choice follows only
        where the paths continue differently. Result: ``$.decisions.<step id>.path``."""
        step_id = self.journey.step_id(step)
        label = self.labels[id(step)]
        name = self.entry(step)
        paths = step.branch.paths()
        rests = [(path, self.chain(steps[1:], nxt)) for path, steps in paths]
        after = rests[0][1]
        if any(target != after for _, target in rests):
            after = self.path_choice(choice_name, step_id, rests)
        acts = {path: self._act(steps[0]) if steps else None for path, steps in paths}
        sends = [s for _, steps in paths for s in steps[:1] if isinstance(s, SendEmailStep | SendSmsStep)]
        deferrable = any(self._scheduled(self._body(s).purpose) for s in sends)
        catch = self._deferral_catch(step_id, label, name) if deferrable else None
        return self.task(
            name,
            "evaluate",
            step,
            after,
            spec={**spec, "act": acts},
            result={"path.$": "$.Payload.path", **SEND_RESULT},
            result_path=f"$.decisions.{step_id}",
            retry=_retry(SEND_RETRY_ERRORS),
            catch=catch,
            extra={"entry_event_id.$": "$.entry_event_id"},
            may_end=True,
        )

    def random_split(self, step: RandomSplitStep, nxt: str) -> str:
        """A Choice on the contact's bucket: path i when bucket < (weights up to i) / total; a split
        whose paths are each one send is ONE send task that picks the variant (``fused_send``)."""
        if self.fold and self._sends(step) is not None:
            return self.fused_send(step, nxt)
        split = step.random_split
        step_id = self.journey.step_id(step)
        targets = [self.chain(p.steps, nxt) for p in split.paths]
        total = sum(p.weight for p in split.paths)
        choices, running = [], 0
        for path, target in zip(split.paths[:-1], targets[:-1], strict=True):
            running += path.weight
            choices.append(
                {"Variable": f"$.buckets.{step_id}", "NumericLessThan": running / total, "Next": target}
            )
        weights = " / ".join(f"{p.weight:g}" for p in split.paths)
        return self.add(
            self.entry(step),
            {
                "Type": "Choice",
                "Comment": f"random split {weights} on the contact's stable bucket",
                "Choices": choices,
                "Default": targets[-1],
            },
        )

    def holdout(self, step: HoldoutStep, nxt: str) -> str:
        step_id = self.journey.step_id(step)
        share = step.holdout.percent / 100
        return self.add(
            self.entry(step),
            {
                "Type": "Choice",
                "Comment": f"{step.holdout.percent:g}% held out on the contact's stable bucket",
                "Choices": [
                    {"Variable": f"$.buckets.{step_id}", "NumericLessThan": share, "Next": LEAVE_HELD_OUT}
                ],
                "Default": nxt,
            },
        )

    def effect(self, step: UpdateContactStep | NotifySalesStep | WebhookStep, nxt: str) -> str:
        kind = step_kind(step)
        spec = step_body(step).model_dump(mode="json", exclude_none=True, exclude={"id", "name"})
        if isinstance(step, WebhookStep):
            return self.webhook(step, spec, nxt)
        retry = None
        if isinstance(step, NotifySalesStep):
            retry = _retry([*TRANSIENT_ERRORS, HANDOFF_ERROR], interval=5)
        return self.task(self.entry(step), kind, step, nxt, spec=spec, retry=retry, may_end=True)

    def webhook(self, step: WebhookStep, spec: dict[str, Any], nxt: str) -> str:
        """The delivery, retried with back-off; one that fails every retry (or that the endpoint
        refuses) is dead-lettered and the journey continues: a CRM outage does not stop it."""
        step_id = self.journey.step_id(step)
        dead_letter = self.task(
            _truncate(f"Dead-letter: {self.labels[id(step)]}"),
            "dead_letter",
            step,
            nxt,
            spec={"url": step.webhook.url},
            extra={"failure.$": f"$.failures.{step_id}"},
            result_path=f"$.steps.{step_id}",
            retry=_retry(["States.ALL"]),
        )
        self.states[dead_letter]["Comment"] = (
            "the delivery failed every retry: to the webhook dead-letter queue"
        )
        return self.task(
            self.entry(step),
            "webhook",
            step,
            nxt,
            spec=spec,
            retry=_retry([*TRANSIENT_ERRORS, WEBHOOK_ERROR], interval=10, attempts=5, backoff=3.0),
            catch=[
                {
                    "ErrorEquals": [WEBHOOK_ERROR, WEBHOOK_REJECTED],
                    "ResultPath": f"$.failures.{step_id}",
                    "Next": dead_letter,
                }
            ],
        )

    def terminal(self) -> None:
        """The leave tasks: the enrollment's bookkeeping, and the end of the execution."""
        leave = {"action": "leave", "journey_id": self.journey.id, "contact_id.$": "$.contact_id"}
        for name, outcome in ((LEAVE, "completed"), (LEAVE_EXITED, "exited"), (LEAVE_HELD_OUT, "held_out")):
            payload = {**leave, "outcome": outcome, "execution_id.$": "$$.Execution.Id"}
            if outcome == "exited":
                payload["reason.$"] = "$.exit.Cause"
            self.states[name] = {
                "Type": "Task",
                "Comment": {
                    "completed": "The contact reached the end of the journey.",
                    "exited": "An exit rule held: no further step.",
                    "held_out": "In the holdout group: receives nothing more.",
                }[outcome],
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": SEND_FUNCTION_ARN, "Payload": payload},
                "ResultSelector": {"status.$": "$.Payload.status"},
                "ResultPath": "$.left",
                "Retry": [
                    {
                        "ErrorEquals": TRANSIENT_ERRORS,
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2.0,
                    }
                ],
                "End": True,
            }


def _describe_update(step: UpdateContactStep) -> str:
    spec = step.update_contact
    parts = []
    if spec.stage:
        parts.append(f"stage {spec.stage}")
    if spec.add_points:
        parts.append(f"{spec.add_points:+d} points")
    parts += [f"tag {t}" for t in spec.add_tags]
    parts += [f"untag {t}" for t in spec.remove_tags]
    parts += [f"set {k}" for k in spec.set]
    parts += [f"clear {k}" for k in spec.unset]
    text = ", ".join(parts)
    return text if len(text) <= 50 else text[:49] + "…"


def _resume_choice(builder: _Builder, start: str) -> State:
    """The first state of a journey with ``on_change: move_to_new``: an execution the deploy
    started for a moved contact (input ``resume_at``: a step id) begins at that step's first
    state; every other execution at the journey's start (``resume_at`` absent: ``IsPresent``)."""
    journey = builder.journey
    choices = []
    for step_id in sorted(set(journey.move_to_new.values())):
        step = journey.step_by_id(step_id)
        assert step is not None
        target = builder.entry(step)
        assert target in builder.states, f"resume target {step_id!r} has no state of its own"
        choices.append(
            {
                "And": [
                    {"Variable": "$.resume_at", "IsPresent": True},
                    {"Variable": "$.resume_at", "StringEquals": step_id},
                ],
                "Next": target,
            }
        )
    return {
        "Type": "Choice",
        "Comment": "on_change: move_to_new: a contact moved from an older version resumes at its step",
        "Choices": choices,
        "Default": start,
    }


def step_comment(step_id: str, detail: str = "") -> str:
    """The ``Comment`` of a Wait state: the step it belongs to (``waiting_steps`` reads it back)."""
    return f"step {step_id}: {detail}" if detail else f"step {step_id}"


def waiting_steps(definition: Mapping[str, Any]) -> dict[str, str]:
    """The states of a compiled definition where an execution waits (Wait states, ``wait_for``
    callback tasks), each with the id of the step it belongs to ('' when the definition does not
    say: compiled before waits carried their step)."""
    found: dict[str, str] = {}
    for name, state in definition.get("States", {}).items():
        if state.get("Type") == "Wait":
            match = re.match(r"step ([a-z][a-z0-9_]*)", str(state.get("Comment") or ""))
            found[name] = match.group(1) if match else ""
        elif state.get("Type") == "Task" and state.get("Resource") == CALLBACK:
            found[name] = str(state.get("Parameters", {}).get("Payload", {}).get("step_id") or "")
    return found


def _targets(states: Any) -> set[str]:
    found: set[str] = set()
    for state in states:
        found.update(t for t in (state.get("Next"), state.get("Default")) if t)
        found.update(c["Next"] for c in state.get("Choices", []))
        found.update(c["Next"] for c in state.get("Catch", []))
    return found


def compile_journey(journey: Journey, *, fold: bool = True, templates_dir: Path | None = None) -> str:
    """The journey's state machine definition (ASL JSON text). ``fold=False``: every decision a
    state of its own (what the diagrams draw); the deployed definition folds them (``fused_*``).
    ``templates_dir``: every send names the version of its template there (``template_version``,
    ``leadflow.messaging.template_versions``); every deployed definition is compiled with it, so
    a running execution renders the templates it started with. Without it (diagrams, control
    flow) sends name no version and render the current template."""
    builder = _Builder(journey, fold, templates_dir)
    start = builder.chain(journey.steps, LEAVE)
    builder.terminal()
    # states in reading order: first state first, terminal states last
    terminal_names = (LEAVE, LEAVE_EXITED, LEAVE_HELD_OUT)
    body = [(k, v) for k, v in builder.states.items() if k not in terminal_names]
    ordered = dict(reversed(body))
    referenced = _targets(ordered.values()) | {start}
    for leave in terminal_names:
        if leave in referenced:
            ordered[leave] = builder.states[leave]
    if journey.move_to_new:
        ordered = {RESUME: _resume_choice(builder, start), **ordered}
        start = RESUME
    definition = {
        "Comment": f"leadflow journey '{journey.id}': {journey.name}",
        "StartAt": start,
        "TimeoutSeconds": journey.timeout_seconds,
        "States": ordered,
    }
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"
