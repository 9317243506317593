"""What a deploy does to contacts in flight when it changes a journey (the journey's ``on_change``).

After a deploy moved a journey's alias to its new version, every RUNNING execution on an older
version (or started on the state machine before it had versions) is handled as the journey file
says:

- ``finish_on_old`` (the default): left alone; it finishes on its version (counted as ``left``);
- ``exit``: stopped on purpose (``leadflow.stops.stop_on_purpose``, reason ``changed``: ``leadflow ops
  redrive`` never resumes it), its enrollment closed as ``exited`` with reason ``journey changed``
  and a ``journey_exited`` event recorded — the bookkeeping trigger does for an exit rule, with the
  same deterministic event id, so a contact that also hit an exit rule is counted once.

Idempotent: a second run finds no running execution on an older version. The report (per journey:
the mode, the live version, per older version the executions left or exited) is returned, printed
by ``leadflow journeys apply-changes`` and logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from leadflow import ids
from leadflow.enrollments import JourneyStore
from leadflow.journeys.model import Journey
from leadflow.models import Event, iso, utc_now
from leadflow.observability import logger
from leadflow.stops import CHANGED, stop_on_purpose
from leadflow.store import EventStore

EXIT_REASON = "journey changed"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        parts = [f"{k}: {n} left" for k, n in sorted(self.left.items())]
        parts += [f"{k}: {n} exited" for k, n in sorted(self.exited.items())]
        live = ", ".join(f"v{a.rsplit(':', 1)[1]}" for a in self.live) or "none"
        return f"{self.journey_id} (on_change: {self.mode}, live {live}): {'; '.join(parts) or 'no contact in flight'}"


def _pages(sfn: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        page = getattr(sfn, operation)(**params, **({"nextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


def _in_flight(sfn: Any, machine: str, live: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, execution) of every RUNNING execution that is not on a live version."""
    for item in _pages(sfn, "list_state_machine_versions", "stateMachineVersions", stateMachineArn=machine):
        arn = str(item["stateMachineVersionArn"])
        if arn in live:
            continue
        for execution in _pages(
            sfn, "list_executions", "executions", stateMachineArn=arn, statusFilter="RUNNING"
        ):
            yield f"v{arn.rsplit(':', 1)[1]}", execution
    for execution in _pages(
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
    report = ChangeReport(journey.id, journey.on_change, live)
    for label, execution in _in_flight(sfn, machine, live):
        if journey.on_change == "finish_on_old":
            report.left[label] = report.left.get(label, 0) + 1
            continue
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
    arn, name = str(execution["executionArn"]), str(execution["name"])
    described = sfn.describe_execution(executionArn=arn)
    contact_id = str(json.loads(described.get("input") or "{}").get("contact_id") or "")
    to = ", ".join(f"v{a.rsplit(':', 1)[1]}" for a in live)
    stop_on_purpose(sfn, arn, CHANGED, f"{EXIT_REASON}: {label} -> {to}")
    if not contact_id:
        return
    at = iso(now())
    store.leave(contact_id, journey_id, name, "exited", EXIT_REASON, at, stopped_reason=EXIT_REASON)
    try:
        events.record(
            Event(
                event_id=ids.deterministic_id(arn, "leave", "exited"),
                type="journey_exited",
                occurred_at=at,
                contact_id=contact_id,
                journey_id=journey_id,
                source="journey",
                properties={"reason": EXIT_REASON},
            )
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
