"""What a deploy does to contacts in flight when it changes a journey (the journey's ``on_change``).

After a deploy moved a journey's alias to its new version, every RUNNING execution on an older
version (or started on the state machine before it had versions) is handled as the journey file
says:

- ``finish_on_old`` (the default): left alone; it finishes on its version (counted as ``left``);
- ``exit``: stopped on purpose (``leadflow.journeys.runtime.stops.stop_on_purpose``, reason ``changed``: ``leadflow ops
  redrive`` never resumes it), its enrollment closed as ``exited`` with reason ``journey changed``
  and a ``journey_exited`` event recorded — the bookkeeping trigger does for an exit rule, with the
  same deterministic event id, so a contact that also hit an exit rule is counted once;
- ``{move_to_new: {OLD_STEP: NEW_STEP}}``: an execution waiting at a mapped step continues on the
  live version at the new step. Where it waits is the newest ``…StateEntered`` of its history
  (read newest first); the step that state belongs to is read from ITS version's definition
  (``leadflow.journeys.compiler.waiting_steps``: Wait states name their step in ``Comment``,
  ``wait_for`` tasks in their payload). The move, in this order: the enrollment is handed to the
  new execution (``JourneyStore.move``: exits, ``wait_for`` answers, erasure and the leave
  bookkeeping then reach it), the new execution starts on the alias with the old one's input plus
  ``resume_at`` (the journey's start Choice jumps there), fresh ``buckets`` for the new version's
  splits, the loop ``round`` it was in and ``moved_from``; then the old one is stopped on purpose
  (reason ``moved``: redrive never resumes it). Its name is the original's plus ``.v<live
  version>`` (``leadflow.kernel.ids.moved_execution_name``); every id derived from an execution is
  derived from its lineage (``leadflow.kernel.ids.lineage``), so a step done on the old version is
  "already handled" on the new one: nothing is sent twice.
  Not moved, and reported: an execution waiting at a step the mapping does not name, or on a
  version whose definition does not name its waiting steps (``refused``, it stays on its
  version); an execution between states or running a task (``busy``: the next run moves it); a
  mapped old step that the old version does not have (``refused``, the others still move).

Idempotent: a second run finds no running execution on an older version (a move interrupted
half-way is finished: the enrollment move and the start are repeatable). The report (per journey:
the mode, the live version, per older version the executions left, exited, moved per old step ->
new step, busy, and the refusals with their reasons) is returned, printed by ``leadflow journeys
apply-changes`` and logged.

``apply_changes`` runs it for every deployed journey: the deploy's ``journey_changes`` function (a
CDK Trigger, after every alias moved) and ``leadflow journeys apply-changes`` (a re-run) both call
it. This module ships in the Lambda layer for that function (``infra/leadflow_infra/layer.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from leadflow.events.store import EventStore
from leadflow.journeys.compiler import buckets, waiting_steps
from leadflow.journeys.model import Journey
from leadflow.journeys.runtime.enrollments import JourneyStore, close_stopped
from leadflow.journeys.runtime.stops import CHANGED, MOVED, stop_on_purpose
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.observability import count_by, logger
from leadflow.platform.paging import token_pages

EXIT_REASON = "journey changed"
MAX_EXECUTION_NAME = 80


@dataclass
class ChangeReport:
    journey_id: str
    mode: str
    live: list[str]
    """The version ARNs the alias routes new executions to."""
    left: dict[str, int] = field(default_factory=dict)
    """Per older version (``v<n>`` or ``unversioned``): executions left running on it."""
    exited: dict[str, int] = field(default_factory=dict)
    """Per older version: executions ended (``on_change: exit``)."""
    moved: dict[str, int] = field(default_factory=dict)
    """Per ``"<older version>: <old step> -> <new step>"``: executions moved (``move_to_new``)."""
    busy: dict[str, int] = field(default_factory=dict)
    """Per older version: executions not waiting at the moment (running a task): the next run moves them."""
    refused: list[dict[str, str]] = field(default_factory=list)
    """What ``move_to_new`` could not do: ``{version, step, execution, reason}`` (``execution`` empty
    for a mapping problem); such an execution stays on its version."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        parts = [f"{k}: {n} left" for k, n in sorted(self.left.items())]
        parts += [f"{k}: {n} exited" for k, n in sorted(self.exited.items())]
        parts += [f"{k.replace(': ', ': ' + str(n) + ' moved ', 1)}" for k, n in sorted(self.moved.items())]
        parts += [f"{k}: {n} busy (moved by the next run)" for k, n in sorted(self.busy.items())]
        parts += [f"refused: {r['reason']}" for r in self.refused]
        live = ", ".join(f"v{a.rsplit(':', 1)[1]}" for a in self.live) or "none"
        return f"{self.journey_id} (on_change: {self.mode}, live {live}): {'; '.join(parts) or 'no contact in flight'}"


def _in_flight(sfn: Any, machine: str, live: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, execution) of every RUNNING execution that is not on a live version."""
    for item in token_pages(
        sfn, "list_state_machine_versions", "stateMachineVersions", stateMachineArn=machine
    ):
        arn = str(item["stateMachineVersionArn"])
        if arn in live:
            continue
        for execution in token_pages(
            sfn, "list_executions", "executions", stateMachineArn=arn, statusFilter="RUNNING"
        ):
            yield f"v{arn.rsplit(':', 1)[1]}", execution
    for execution in token_pages(
        sfn, "list_executions", "executions", stateMachineArn=machine, statusFilter="RUNNING"
    ):
        if not execution.get("stateMachineVersionArn"):
            yield "unversioned", execution


def apply_on_change(
    sfn: Any,
    journey: Journey,
    machine: str,
    alias: str,
    *,
    store: JourneyStore,
    events: EventStore,
    now: Callable[[], datetime] = utc_now,
) -> ChangeReport:
    """Carry out ``journey.on_change`` for the executions in flight on older versions."""
    routing = sfn.describe_state_machine_alias(stateMachineAliasArn=f"{machine}:{alias}")[
        "routingConfiguration"
    ]
    live = sorted(str(r["stateMachineVersionArn"]) for r in routing if int(r["weight"]) > 0)
    report = ChangeReport(journey.id, journey.on_change_mode, live)
    mover = _Mover(sfn, journey, machine, alias, live, store, now, report) if journey.move_to_new else None
    for label, execution in list(_in_flight(sfn, machine, live)):
        if mover is not None:
            mover.move(label, execution)
        elif journey.on_change_mode == "finish_on_old":
            report.left[label] = report.left.get(label, 0) + 1
        else:
            _exit(sfn, journey.id, execution, label, live, store, events, now)
            report.exited[label] = report.exited.get(label, 0) + 1
    logger.info("journey change applied", extra={"change": report.to_dict()})
    return report


def _exit(
    sfn: Any,
    journey_id: str,
    execution: dict[str, Any],
    label: str,
    live: list[str],
    store: JourneyStore,
    events: EventStore,
    now: Callable[[], datetime],
) -> None:
    arn = str(execution["executionArn"])
    described = sfn.describe_execution(executionArn=arn)
    contact_id = str(json.loads(described.get("input") or "{}").get("contact_id") or "")
    to = ", ".join(f"v{a.rsplit(':', 1)[1]}" for a in live)
    stop_on_purpose(sfn, arn, CHANGED, f"{EXIT_REASON}: {label} -> {to}")
    if not contact_id:
        return
    close_stopped(
        store,
        events,
        execution_arn=arn,
        contact_id=contact_id,
        journey_id=journey_id,
        reason=EXIT_REASON,
        at=iso(now()),
    )


def current_state(sfn: Any, execution_arn: str) -> tuple[str, dict[str, Any]] | None:
    """The state the execution is in and that state's input, from its newest ``…StateEntered``
    event (history read newest first); None when it left a state and has not entered the next."""
    token: str | None = None
    while True:
        page = sfn.get_execution_history(
            executionArn=execution_arn,
            reverseOrder=True,
            maxResults=200,
            includeExecutionData=True,
            **({"nextToken": token} if token else {}),
        )
        # newest first within the page too (the local runtime answers in one page, oldest first)
        for event in sorted(page.get("events", []), key=lambda e: int(e["id"]), reverse=True):
            kind = str(event.get("type", ""))
            if kind.endswith("StateExited"):
                return None
            if kind.endswith("StateEntered"):
                details = event.get("stateEnteredEventDetails") or {}
                return str(details.get("name", "")), json.loads(details.get("input") or "{}")
        token = page.get("nextToken")
        if not token:
            return None


def definition_step_ids(definition: dict[str, Any]) -> set[str]:
    """Every step id a compiled definition names (Wait states' comments, every ``step_id`` of the
    tasks' payloads: their own step, a split's variants, a folded holdout)."""
    found = {step for step in waiting_steps(definition).values() if step}

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "step_id" and isinstance(item, str):
                    found.add(item)
                else:
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for state in definition.get("States", {}).values():
        collect(state.get("Parameters"))
    return found


class _Mover:
    """``on_change: move_to_new`` for one journey: see the module docstring."""

    def __init__(
        self,
        sfn: Any,
        journey: Journey,
        machine: str,
        alias: str,
        live: list[str],
        store: JourneyStore,
        now: Callable[[], datetime],
        report: ChangeReport,
    ) -> None:
        self._sfn, self._journey, self._store, self._now, self._report = sfn, journey, store, now, report
        self._alias_arn = f"{machine}:{alias}"
        self._live_version = max((int(a.rsplit(":", 1)[1]) for a in live), default=0)
        self._waiting: dict[str, dict[str, str]] = {}

    def _refuse(self, label: str, step: str, execution: str, reason: str) -> None:
        self._report.refused.append(
            {"version": label, "step": step, "execution": execution, "reason": reason}
        )

    def _version_states(self, label: str, version_arn: str) -> dict[str, str]:
        """The waiting states of that version (state -> step id), read once per version; the
        mapping's old steps that version does not have are refused once."""
        if version_arn not in self._waiting:
            definition = json.loads(
                self._sfn.describe_state_machine(stateMachineArn=version_arn)["definition"]
            )
            self._waiting[version_arn] = waiting_steps(definition)
            has = definition_step_ids(definition)
            for old in sorted(set(self._journey.move_to_new) - has):
                self._refuse(
                    label,
                    old,
                    "",
                    f"{self._journey.id} {label} has no step {old!r} (move_to_new maps it): "
                    f"its steps are {', '.join(sorted(has)) or 'unnamed'}",
                )
        return self._waiting[version_arn]

    def move(self, label: str, execution: dict[str, Any]) -> None:
        journey, name = self._journey, str(execution["executionArn"]).rsplit(":", 1)[1]
        arn = str(execution["executionArn"])
        version_arn = execution.get("stateMachineVersionArn")
        if not version_arn:
            self._refuse(
                label,
                "",
                name,
                f"{name} of {journey.id} started before the journey had versions: where it waits is unknown",
            )
            return
        states = self._version_states(label, str(version_arn))
        where = current_state(self._sfn, arn)
        if where is None or where[0] not in states:
            self._report.busy[label] = self._report.busy.get(label, 0) + 1
            return
        state, state_input = where
        old = states[state]
        if not old:
            self._refuse(
                label, "", name, f"{name} waits in {state!r} of {journey.id} {label}, which names no step"
            )
            return
        new = journey.move_to_new.get(old)
        if new is None:
            self._refuse(
                label,
                old,
                name,
                f"{name} waits at step {old!r} ({state}) of {journey.id} {label}, which move_to_new does not map",
            )
            return
        moved_name = ids.moved_execution_name(name, self._live_version)
        if len(moved_name) > MAX_EXECUTION_NAME:
            self._refuse(label, old, name, f"{name}: the moved execution's name would be too long")
            return
        described = self._sfn.describe_execution(executionArn=arn)
        original = json.loads(described.get("input") or "{}")
        contact_id = str(original.get("contact_id") or "")
        if not contact_id or not self._store.move(contact_id, journey.id, name, moved_name, iso(self._now())):
            self._refuse(
                label, old, name, f"{name}: its enrollment is not active or belongs to another execution"
            )
            return
        payload = {
            **original,
            "round": state_input.get("round", original.get("round", {"n": 0})),
            "buckets": buckets(journey, contact_id),
            "resume_at": new,
            "moved_from": {"execution": name, "version": label, "step": old},
        }
        try:
            self._sfn.start_execution(
                stateMachineArn=self._alias_arn, name=moved_name, input=json.dumps(payload)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                self._store.move(contact_id, journey.id, moved_name, name, iso(self._now()))  # undo
                raise
            # started by an earlier run that stopped before stopping the old execution
        stop_on_purpose(
            self._sfn, arn, MOVED, f"journey changed: {label} -> v{self._live_version} at step {new}"
        )
        key = f"{label}: {old} -> {new}"
        self._report.moved[key] = self._report.moved.get(key, 0) + 1


TIME_MARGIN_MS = 30_000
"""A journey is not started with less than this left of the caller's time (the deploy's trigger
function): it is reported as not done rather than cut off half-way."""


@dataclass
class DeployChanges:
    """Every deployed journey's ``on_change`` after a deploy: the reports and the journeys that
    failed (their contacts stay on their version, as ``finish_on_old``; a re-run finishes them)."""

    reports: list[ChangeReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Per journey id: why its ``on_change`` was not (completely) carried out."""

    def to_dict(self) -> dict[str, Any]:
        return {"journeys": [r.to_dict() for r in self.reports], "failed": dict(self.failed)}

    def lines(self) -> list[str]:
        return [r.line() for r in self.reports] + [
            f"{journey_id}: not carried out: {reason}" for journey_id, reason in sorted(self.failed.items())
        ]


def apply_changes(
    sfn: Any,
    journeys: list[Journey],
    machine_of: Callable[[str], str],
    alias: str,
    *,
    store: JourneyStore,
    events: EventStore,
    now: Callable[[], datetime] = utc_now,
    time_left_ms: Callable[[], int] | None = None,
) -> DeployChanges:
    """``apply_on_change`` for every deployed journey (the journey files of the deploy: their
    aliases point at their newest versions), one after the other. The selection both the deploy's
    trigger function and ``leadflow journeys apply-changes`` make. A journey that fails is logged
    and reported, and the others still run: nothing of a failed journey is lost (what it did is
    done; the rest stays on its version until the next run)."""
    result = DeployChanges()
    for journey in journeys:
        if time_left_ms is not None and time_left_ms() < TIME_MARGIN_MS:
            result.failed[journey.id] = "not started: out of time (run leadflow journeys apply-changes)"
            continue
        try:
            report = apply_on_change(
                sfn, journey, machine_of(journey.id), alias, store=store, events=events, now=now
            )
        except Exception as exc:  # one journey's failure neither stops the others nor fails the
            # deploy (a rollback would re-point the aliases under contacts already moved)
            logger.exception("journey change failed", extra={"journey_id": journey.id})
            count_by("JourneyChangesFailed", "journey", journey.id)
            result.failed[journey.id] = f"{type(exc).__name__}: {exc}"
            continue
        logger.info(report.line())
        result.reports.append(report)
    return result
