"""``leadflow journeys simulate``: replay a history through one journey before it goes live.

The replay runs on the embedded runtime ``make run`` uses (``LocalSystem``: moto, the real
handlers, the journey's compiled ASL, the virtual clock) with ONLY the given journey loaded. Each
history line is one event in the ``POST /events`` body shape plus ``"at"`` (ISO 8601, with a zone):
the clock moves to ``at`` and the event arrives the way the real system would receive it, so it is
recorded with ``occurred_at`` = ``at``:

- business events (``trial_started``, ``purchase`` …): ``POST /admin/events``, as a server sends
  them; browser types (``identify`` and the stage's public types): ``POST /events``;
- ``form_submitted`` (``properties.form_id``): the form post ``POST /forms/{form_id}``;
- ``email_opened`` / ``email_clicked`` (optional ``properties.template``): the pixel / first link
  of the contact's latest email (of that template) sent in this replay; none sent: ignored, counted;
- ``consent_confirmed``: the double opt-in link of the contact's confirmation email;
- ``unsubscribed``: the unsubscribe link of the contact's latest email, else the admin upsert
  revoking email consent.

Other types leadflow records itself (``stage_changed``, ``journey_*`` …) are refused naming the
line. Contacts (``--contacts``, rows in the ``POST /admin/contacts/import`` shape) are imported at
the first event's time. After the last event the clock runs on until every execution has ended or
is parked beyond the last event + the journey's maximum duration.

Outcomes are read back exactly: entries from the executions; refused entries from trigger's own
counts (entry condition false, re-entry refused / already in the journey) and executions that an
exit rule ended at their first step; paths from the execution histories (a branch's decision and
a split's/holdout's bucket from the Choice state's input, a ``wait_for`` callback task's success
vs its ``States.Timeout`` catch); sends and skips from the messages table; deferrals as the send
function raises them (``SendDeferred``), each told apart by the rule that held at that moment in the
contact's time zone (quiet hours, else the send window, else the frequency cap); exits from ``journey_exited`` events. Cost: the
model of ``make bench`` (``leadflow.journeys.cost``).

Invariants: nothing leaves the machine (moto only; no deployed resource is read or written);
the same history and journey give the same result. Not shipped to Lambda (``local/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadflow.events.model import RESERVED_EVENT_PREFIXES, RESERVED_EVENT_TYPES
from leadflow.journeys import compile_journey, load_journey
from leadflow.journeys.compiler import CALLBACK, DEFERRED_ERROR, EXITED, TIMEOUT_ERROR
from leadflow.journeys.cost import Usage, gb_seconds, history_usage
from leadflow.journeys.model import (
    BranchStep,
    HoldoutStep,
    Journey,
    RandomSplitStep,
    WaitForStep,
)
from leadflow.journeys.timing import next_send_time, zone
from leadflow.kernel import ids, observability
from leadflow.kernel.settings import get_settings
from leadflow.local.history_export import REPLAYED
from leadflow.local.metering import SEND_MEMORY_MB, DynamoMeter, enrollment_journey
from leadflow.local.system import ROOT, LocalSystem, resource_name
from leadflow.platform.tables import EVENTS, MESSAGES

"""The journey step function's deployed memory (GB-seconds, as ``make bench`` prices them)."""
JSON = {"content-type": "application/json"}
NOT_ENTERED_METRICS = {
    "JourneyEntryConditionFalse": "entry condition",
    "JourneyReEntryRefused": "re-entry rule",
    "JourneyAlreadyEntered": "re-entry rule (already in the journey)",
}


class SimulationError(ValueError):
    """Bad input (a history line, a contacts file, a journey): the message names file and line."""


@dataclass(frozen=True)
class HistoryEvent:
    line: int
    at: datetime
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def email(self) -> str | None:
        value = self.body.get("email")
        return str(value).strip().lower() if value else None


def parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise SimulationError(f"{where}: 'at' is required (an ISO 8601 time with a zone)")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SimulationError(f"{where}: 'at' is not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise SimulationError(f"{where}: 'at' needs a zone (e.g. 'Z' or '+01:00'): {value!r}")
    return moment.astimezone(UTC)


def read_events(path: Path) -> list[HistoryEvent]:
    """The history, in time order (lines with the same ``at`` keep their file order)."""
    events = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc}") from exc
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SimulationError(f"{where}: not JSON: {exc.msg}") from exc
        if not isinstance(body, dict):
            raise SimulationError(f"{where}: an event must be a JSON object")
        at = parse_time(body.pop("at", None), where)
        kind = body.get("type")
        if not isinstance(kind, str) or not kind:
            raise SimulationError(f"{where}: 'type' is required")
        if not body.get("email") and kind != "email_opened":
            raise SimulationError(f"{where}: 'email' is required (the contact the event is about)")
        if (
            kind in RESERVED_EVENT_TYPES or kind.startswith(RESERVED_EVENT_PREFIXES)
        ) and kind not in REPLAYED:
            raise SimulationError(
                f"{where}: {kind!r} is recorded by leadflow itself and cannot be replayed "
                f"(replayable system events: {', '.join(REPLAYED)})"
            )
        if kind == "form_submitted" and not (body.get("properties") or {}).get("form_id"):
            raise SimulationError(f"{where}: form_submitted needs properties.form_id")
        events.append(HistoryEvent(number, at, body))
    if not events:
        raise SimulationError(f"{path}: no events")
    return sorted(events, key=lambda e: e.at)


def read_contacts(path: Path) -> str:
    """The contacts file's text (JSON Lines; the import route validates every row)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                raise SimulationError(f"{path}:{number}: not JSON: {exc.msg}") from exc
    return text


# --- decision steps, as the compiler names them ------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """A decision step of the journey: its kind, name and path names (in the file's order)."""

    step_id: str
    kind: str
    name: str
    paths: tuple[str, ...]
    choose: Callable[[Mapping[str, Any]], str] | None = None
    """For Choice states: the path, from the Choice state's input."""


def decisions(journey: Journey) -> dict[str, Decision]:
    found: dict[str, Decision] = {}
    for step in journey.walk():
        step_id = journey.step_id(step)
        if isinstance(step, BranchStep):
            branch = step.branch
            names = {f"case{i + 1}": case.name or f"case{i + 1}" for i, case in enumerate(branch.cases or [])}
            paths = tuple(names.get(p, p) for p, _ in branch.paths())

            def chosen(data: Mapping[str, Any], step_id: str = step_id, names: dict[str, str] = names) -> str:
                raw = str(data.get("decisions", {}).get(step_id, {}).get("path"))
                return names.get(raw, raw)

            found[step_id] = Decision(step_id, "branch", str(branch.name), paths, chosen)
        elif isinstance(step, RandomSplitStep):
            split = step.random_split
            split_names = tuple(p.name or f"path {i + 1}" for i, p in enumerate(split.paths))
            total = sum(p.weight for p in split.paths)
            bounds = []
            running = 0
            for p in split.paths[:-1]:
                running += p.weight
                bounds.append(running / total)

            def drawn(
                data: Mapping[str, Any],
                step_id: str = step_id,
                bounds: list[float] = bounds,
                names: tuple[str, ...] = split_names,
            ) -> str:
                value = float(data["buckets"][step_id])
                return next((names[i] for i, b in enumerate(bounds) if value < b), names[-1])

            found[step_id] = Decision(step_id, "random_split", split.name, split_names, drawn)
        elif isinstance(step, HoldoutStep):
            share = step.holdout.percent / 100

            def held(data: Mapping[str, Any], step_id: str = step_id, share: float = share) -> str:
                return "held out" if float(data["buckets"][step_id]) < share else "continued"

            found[step_id] = Decision(
                step_id,
                "holdout",
                step.holdout.name or f"{step.holdout.percent:g}%",
                ("held out", "continued"),
                held,
            )
        elif isinstance(step, WaitForStep):
            found[step_id] = Decision(
                step_id, "wait_for", step.wait_for.name or step.wait_for.event, ("event", "timeout")
            )
    return found


def state_steps(definition: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(Choice state name -> step id of a branch/split/holdout, callback task name -> wait_for step id)."""
    choices: dict[str, str] = {}
    callbacks: dict[str, str] = {}
    for name, state in definition["States"].items():
        if state["Type"] == "Choice":
            variable = str(state["Choices"][0].get("Variable", ""))  # "And": the resume Choice
            found = re.match(r"^\$\.(decisions|buckets)\.([a-z0-9_]+)", variable)
            if found:
                choices[name] = found.group(2)
        elif state.get("Resource") == CALLBACK:
            callbacks[name] = str(state["Parameters"]["Payload"]["step_id"])
    return choices, callbacks


# --- what one execution did ---------------------------------------------------------------------


@dataclass
class Walk:
    contact_id: str
    paths: list[tuple[str, str]] = field(default_factory=list)
    exited_at_entry: bool = False
    usage: Usage = field(default_factory=Usage)


def walk_history(
    events: list[dict[str, Any]], decided: Mapping[str, Decision], definition: Mapping[str, Any]
) -> Walk:
    """The paths an execution took, read from its history (``GetExecutionHistory`` events)."""
    choices, callbacks = state_steps(definition)
    started = next(e for e in events if e["type"] == "ExecutionStarted")
    contact_id = str(json.loads(started["executionStartedEventDetails"]["input"])["contact_id"])
    walk = Walk(contact_id=contact_id, usage=history_usage(events))
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    non_choice = [e["stateEnteredEventDetails"]["name"] for e in entered if e["type"] != "ChoiceStateEntered"]
    walk.exited_at_entry = len(non_choice) >= 2 and non_choice[1] == EXITED and non_choice[0] != EXITED
    waiting: str | None = None
    by_choice = set(choices.values())
    recorded: set[str] = set()
    for event in events:
        kind = event["type"]
        exited = event.get("stateExitedEventDetails")
        if exited and kind == "TaskStateExited":
            # a decision folded into a task (a branch that decides and sends, a holdout or split of
            # sends): the task's output carries the chosen path under ``$.decisions.<step id>``
            for step_id, raw in _folded_paths(json.loads(exited.get("output") or "{}")):
                if step_id in decided and step_id not in by_choice and step_id not in recorded:
                    recorded.add(step_id)
                    walk.paths.append((step_id, _path_name(decided[step_id], raw)))
            continue
        details = event.get("stateEnteredEventDetails")
        if details:
            name = details["name"]
            if name in choices:
                step_id = choices[name]
                choose = decided[step_id].choose
                assert choose is not None
                walk.paths.append((step_id, choose(json.loads(details.get("input") or "{}"))))
            elif name in callbacks:
                waiting = callbacks[name]
            continue
        if waiting is None:
            continue
        if kind == "TaskSucceeded":
            walk.paths.append((waiting, "event"))
            waiting = None
        elif kind == "TaskTimedOut" or (
            kind == "TaskFailed" and event.get("taskFailedEventDetails", {}).get("error") == TIMEOUT_ERROR
        ):
            walk.paths.append((waiting, "timeout"))
            waiting = None
        elif kind in ("TaskFailed", "ExecutionAborted", "ExecutionTimedOut"):
            waiting = None  # exited while waiting (or the journey's time ran out): no path
    return walk


def _folded_paths(output: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(step id, raw path) of every decision in a state's output, nested ones of a fold included."""
    found = output.get("decisions") if isinstance(output, Mapping) else None
    if not isinstance(found, Mapping):
        return
    for step_id, decision in found.items():
        if not isinstance(decision, Mapping):
            continue
        if decision.get("path") is not None:
            yield str(step_id), str(decision["path"])
        yield from _folded_paths(decision)


def _path_name(decision: Decision, raw: str) -> str:
    """A raw path (``then``, ``case2``, ``path1``, ``held_out``) by the name the report uses."""
    if decision.kind == "branch" and decision.choose is not None:
        return decision.choose({"decisions": {decision.step_id: {"path": raw}}})
    if decision.kind == "holdout":
        return "held out" if raw == "held_out" else "continued"
    if decision.kind == "random_split" and raw.startswith("path") and raw[4:].isdigit():
        return decision.paths[int(raw[4:]) - 1]
    return raw


# --- cost metering: the same accounting as ``make bench`` ------------------------------------------


class _Meter(DynamoMeter):
    """DynamoDB units of the journey step function's calls and of trigger's enrollment calls, and
    the step function's GB-seconds (its in-process CPU time at the deployed memory size)."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self.usage = Usage()
        self.now = now
        self.deferred: list[tuple[str, float]] = []
        """(contact id, virtual time) of every send the journey step function deferred."""

    def add(self, usage: Usage) -> None:
        with self.lock:
            self.usage = self.usage + usage

    def charge(self, scope: Any, params: Any, usage: Usage) -> None:
        if scope == "send" or enrollment_journey(params) is not None:
            self.add(usage)

    def wrap(self, scope: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(event: Any, context: Any) -> Any:
            self.local.scope = scope
            start = time.thread_time()
            try:
                return handler(event, context)
            except Exception as exc:
                if type(exc).__name__ == DEFERRED_ERROR:
                    with self.lock:
                        self.deferred.append((str(event.get("contact_id")), self.now()))
                raise
            finally:
                self.local.scope = None
                if scope == "send":
                    elapsed_ms = (time.thread_time() - start) * 1000
                    self.add(Usage(gb_seconds=gb_seconds(elapsed_ms, SEND_MEMORY_MB)))

        return wrapped


@contextmanager
def _counting_metrics(counts: Counter[str]) -> Iterator[None]:
    """Count the metrics the handlers emit (trigger's refused entries among them)."""
    metrics = observability.metrics
    original = metrics.add_metric

    def add_metric(name: str, *args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return original(name, *args, **kwargs)

    metrics.add_metric = add_metric  # type: ignore[method-assign]
    try:
        yield
    finally:
        del metrics.add_metric  # the class's method again


@contextmanager
def _replayable_contact_ids(now: Callable[[], float]) -> Iterator[None]:
    """Contact ids made from the virtual time and a count: the same history creates the same ids
    in every replay, so stable draws (splits, holdouts) are the same for a contact in both
    versions of ``--compare``."""
    original = ids.new_contact_id
    made = [0]

    def new_contact_id() -> str:
        made[0] += 1
        randomness = hashlib.sha256(f"contact {made[0]}".encode()).hexdigest()[:16]
        return "c" + ids.ulid(int(now() * 1000))[:10].lower() + randomness

    ids.new_contact_id = new_contact_id
    try:
        yield
    finally:
        ids.new_contact_id = original


@contextmanager
def _quiet() -> Iterator[None]:
    """The handlers' INFO logs and metric documents stay out of the report (stdout): warnings and
    errors still reach stderr."""
    level = observability.logger.log_level
    observability.logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        observability.logger.setLevel(level)


# --- the result -----------------------------------------------------------------------------------


@dataclass
class ContactOutcome:
    email: str
    contact_id: str = ""
    entries: int = 0
    paths: list[tuple[str, str]] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    sms: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)


@dataclass
class SimulationResult:
    journey_id: str
    events: int
    entered: int
    not_entered: dict[str, int]
    paths: dict[str, dict[str, Any]]
    emails: dict[str, int]
    sms: dict[str, int]
    skipped: dict[str, int]
    exited: dict[str, int]
    timing: dict[str, dict[str, int]]
    state_transitions_per_contact: float
    cost_usd_per_contact: float
    usage: Usage
    ignored: list[str]
    contacts: dict[str, ContactOutcome]

    def summary(self) -> dict[str, Any]:
        """The JSON document (``--json``): everything but the per-contact detail."""
        return {
            "journey": self.journey_id,
            "events": self.events,
            "entered": self.entered,
            "not_entered": self.not_entered,
            "paths": self.paths,
            "emails": self.emails,
            "sms": self.sms,
            "skipped": self.skipped,
            "exited": self.exited,
            "timing": self.timing,
            "state_transitions_per_contact": self.state_transitions_per_contact,
            "cost_usd_per_contact": self.cost_usd_per_contact,
            "ignored": self.ignored,
        }


# --- the replay -------------------------------------------------------------------------------------


class _Replay:
    def __init__(self, system: LocalSystem, journey_id: str) -> None:
        self.system = system
        self.journey_id = journey_id
        self.ignored: list[str] = []

    def post(self, path: str, body: Mapping[str, Any], *, admin: bool = False) -> dict[str, Any]:
        headers = dict(JSON)
        if admin:
            headers["authorization"] = f"Bearer {self.system.admin_key}"
        return self.system.invoke_http("POST", path, headers=headers, body=json.dumps(body))

    def deliver(self, event: HistoryEvent) -> None:
        where = f"line {event.line} ({event.type})"
        handler = {
            "form_submitted": self._form,
            "email_opened": self._engagement,
            "email_clicked": self._engagement,
            "consent_confirmed": self._confirm,
            "unsubscribed": self._unsubscribe,
            "journey_enrollment_requested": self._enroll,
            "sales_feedback": self._sales_feedback,
        }.get(event.type, self._business)
        handler(event, where)

    def _check(self, reply: Mapping[str, Any], where: str, accepted: tuple[int, ...]) -> None:
        if reply["statusCode"] not in accepted:
            raise SimulationError(f"{where}: refused with HTTP {reply['statusCode']}: {reply.get('body')}")

    def _business(self, event: HistoryEvent, where: str) -> None:
        # events by trust, as in production: browser types on the public route, the rest from a server
        if event.type in get_settings().browser_event_types:
            reply = self.post("/events", event.body)
        else:
            reply = self.post("/admin/events", event.body, admin=True)
        self._check(reply, where, (200, 201, 202))

    def _enroll(self, event: HistoryEvent, where: str) -> None:
        """A manual enrollment (``POST /admin/journeys/{id}/enrollments``) of the contact."""
        journey_id = str((event.body.get("properties") or {}).get("journey_id") or self.journey_id)
        contact_id = self._contact_id(event, where)
        reply = self.post(f"/admin/journeys/{journey_id}/enrollments", {"contact_id": contact_id}, admin=True)
        self._check(reply, where, (200, 201, 202))

    def _sales_feedback(self, event: HistoryEvent, where: str) -> None:
        """Sales' feedback on a lead (``POST /admin/contacts/{id}/sales-feedback``, the properties as body)."""
        contact_id = self._contact_id(event, where)
        body = dict(event.body.get("properties") or {})
        self._check(
            self.post(f"/admin/contacts/{contact_id}/sales-feedback", body, admin=True), where, (200, 201)
        )

    def _contact_id(self, event: HistoryEvent, where: str) -> str:
        found = next((c["contact_id"] for c in self.system.contacts() if c.get("email") == event.email), None)
        if found is None:
            raise SimulationError(f"{where}: no contact {event.email} yet (import it with --contacts)")
        return str(found)

    def _form(self, event: HistoryEvent, where: str) -> None:
        properties = dict(event.body.get("properties") or {})
        form_id = str(properties.pop("form_id"))
        properties.pop("double_opt_in", None)  # the form's own setting, not a field
        body = {"email": event.email, "consent": True, **properties}
        self._check(self.post(f"/forms/{form_id}", body), where, (200, 201))

    def _latest_email(self, email: str, template: str | None) -> dict[str, Any] | None:
        wanted: set[str] | None = None
        if template:
            wanted = {
                str(m.get("message_id"))
                for m in self.system._scan(MESSAGES.name)
                if m.get("template") == template and m.get("status") == "sent"
            }
        found = None
        for message in self.system.outbox():
            if message["channel"] != "email" or email not in message["to"]:
                continue
            leadflow_id = message.get("headers", {}).get("X-Leadflow-Message-Id", "")
            if wanted is None or leadflow_id in wanted:
                found = message
        return found

    def _engagement(self, event: HistoryEvent, where: str) -> None:
        template = (event.body.get("properties") or {}).get("template")
        message = self._latest_email(str(event.email), str(template) if template else None)
        html = (message or {}).get("html") or ""
        if event.type == "email_opened":
            urls = re.findall(r'src="([^"]+/t/o/[^"]+)"', html)
        else:
            urls = list(re.findall(r'href="([^"]+/t/c/[^"]+)"', html))
        if not urls:
            self.ignored.append(f"{where}: no email{f' of {template}' if template else ''} to {event.email}")
            return
        reply = self.system.invoke_http("GET", urlsplit(urls[0].replace("&amp;", "&")).path)
        self._check(reply, where, (200, 302, 303))

    def _confirm(self, event: HistoryEvent, where: str) -> None:
        for message in reversed(self.system.outbox()):
            if event.email in message["to"]:
                links = re.findall(r"(https?://\S+/confirm/[A-Za-z0-9._~-]+)", message.get("text") or "")
                if links:
                    reply = self.system.invoke_http("GET", urlsplit(links[0]).path)
                    self._check(reply, where, (200, 302, 303))
                    return
        self.ignored.append(f"{where}: no confirmation email to {event.email}")

    def _unsubscribe(self, event: HistoryEvent, where: str) -> None:
        for message in reversed(self.system.outbox()):
            if message["channel"] == "email" and event.email in message["to"]:
                links = re.findall(r"https?://\S+?(/unsubscribe/[A-Za-z0-9._~-]+)", message.get("text") or "")
                if links:
                    reply = self.system.invoke_http("POST", links[0])
                    self._check(reply, where, (200, 302, 303))
                    return
        body = {"email": event.email, "consent_email": "revoked"}
        self._check(self.post("/admin/contacts", body, admin=True), where, (200, 201))


def _content_dir(journey_path: Path, into: Path) -> Path:
    """A content folder holding only this journey, with the templates next to it (or the project's)."""
    (into / "journeys").mkdir()
    (into / "journeys" / journey_path.name).write_text(journey_path.read_text(encoding="utf-8"))
    templates = journey_path.resolve().parent.parent / "templates"
    (into / "templates").symlink_to(templates if templates.is_dir() else ROOT / "templates")
    for shared in ("leads.yaml", "segments"):
        if (ROOT / shared).exists():
            (into / shared).symlink_to(ROOT / shared)
    return into


def simulate(journey_path: Path, events: list[HistoryEvent], contacts: str | None = None) -> SimulationResult:
    """Replay ``events`` through the journey at ``journey_path`` (see the module docstring)."""
    from leadflow.journeys import JourneyError

    try:
        journey = load_journey(journey_path)
    except JourneyError as exc:
        raise SimulationError(str(exc)) from exc
    definition = json.loads(compile_journey(journey))
    decided = decisions(journey)
    metric_counts: Counter[str] = Counter()
    meter = _Meter(lambda: 0.0)
    start = events[0].at
    end = events[-1].at + timedelta(seconds=journey.timeout_seconds + 60)
    with tempfile.TemporaryDirectory(prefix="leadflow-simulate-") as folder:
        content = _content_dir(journey_path, Path(folder))
        with (
            _quiet(),
            LocalSystem(background_pump=False, content_dir=content, clock_start=start.timestamp()) as system,
            meter.counting(),
            _counting_metrics(metric_counts),
            _replayable_contact_ids(system.clock.now),
        ):
            meter.now = system.clock.now
            send = resource_name("send")
            system.handlers[send] = meter.wrap("send", system.handlers[send])
            for consumer in system.pump.consumers:
                if consumer.name == resource_name("trigger"):
                    consumer.handler = meter.wrap("trigger", consumer.handler)
            replay = _Replay(system, journey.id)
            if contacts:
                reply = system.invoke_http(
                    "POST",
                    "/admin/contacts/import",
                    headers={
                        "content-type": "application/x-ndjson",
                        "authorization": f"Bearer {system.admin_key}",
                    },
                    body=contacts,
                )
                report = json.loads(reply["body"])
                if reply["statusCode"] >= 300 or report.get("failed"):
                    raise SimulationError(f"contacts: the import refused rows: {json.dumps(report)[:1000]}")
                system.settle(timeout=120)
            metric_counts.clear()  # only the history's own refusals count
            for event in events:
                ahead = event.at.timestamp() - system.clock.now()
                if ahead > 0:
                    system.advance(ahead)
                replay.deliver(event)
                system.settle(timeout=120)
            system.advance(max(0.0, end.timestamp() - system.clock.now()))
            system.settle(timeout=120)
            return _collect(
                system, journey, definition, decided, metric_counts, meter, events, replay.ignored
            )


def _collect(
    system: LocalSystem,
    journey: Journey,
    definition: Mapping[str, Any],
    decided: Mapping[str, Decision],
    metric_counts: Counter[str],
    meter: _Meter,
    events: list[HistoryEvent],
    ignored: list[str],
) -> SimulationResult:
    sfn = system.client("stepfunctions")
    arn = system.state_machines[journey.id]
    emails_of = {str(c.get("contact_id")): str(c.get("email", "")) for c in system.contacts()}
    contacts: dict[str, ContactOutcome] = {}

    def outcome(contact_id: str) -> ContactOutcome:
        email = emails_of.get(contact_id, contact_id)
        return contacts.setdefault(email, ContactOutcome(email=email, contact_id=contact_id))

    not_entered: Counter[str] = Counter()
    for metric, reason in NOT_ENTERED_METRICS.items():
        if metric_counts[metric]:
            not_entered[reason] += metric_counts[metric]
    counts: dict[str, Counter[str]] = {step_id: Counter() for step_id in decided}
    usage = Usage()
    entered = executions = 0
    exited_at_entry: Counter[str] = Counter()
    started: set[str] = set()  # contacts the journey started an execution for
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
        for execution in page["executions"]:
            history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
            walk = walk_history(history["events"], decided, definition)
            executions += 1
            usage = usage + walk.usage
            started.add(walk.contact_id)
            if walk.exited_at_entry:
                not_entered["exit rule"] += 1
                exited_at_entry[walk.contact_id] += 1
                continue
            entered += 1
            who = outcome(walk.contact_id)
            who.entries += 1
            who.paths += walk.paths
            for step_id, path in walk.paths:
                counts[step_id][path] += 1
    emails: Counter[str] = Counter()
    sms: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    timing: dict[str, Counter[str]] = defaultdict(Counter)
    for message in sorted(system._scan(MESSAGES.name), key=lambda m: str(m.get("finished_at", ""))):
        if message.get("journey_id") != journey.id:
            continue
        status, template = message.get("status"), str(message.get("template"))
        if status == "sent":
            channel = message.get("channel")
            (sms if channel == "sms" else emails)[template] += 1
            who = outcome(str(message.get("contact_id")))
            (who.sms if channel == "sms" else who.emails).append(template)
            sent_at = parse_time(str(message.get("finished_at")), "message")
            timing[sent_at.strftime("%Y-%m-%d %a")][f"{sent_at.hour:02d}"] += 1
        elif status == "skipped":
            skipped[str(message.get("reason"))] += 1
    skipped.update(_deferrals(journey, meter.deferred, system.contacts()))
    exited: Counter[str] = Counter()
    for item in system._scan(EVENTS.name):
        if item.get("type") == "journey_exited" and item.get("journey_id") == journey.id:
            if exited_at_entry[str(item.get("contact_id"))] > 0:
                exited_at_entry[str(item.get("contact_id"))] -= 1  # counted as not entered
                continue
            reason = str((item.get("properties") or {}).get("reason", "exited"))
            exited[reason] += 1
            outcome(str(item.get("contact_id"))).exited.append(reason)
    usage = usage + meter.usage
    usage.emails = sum(emails.values())
    people = max(1, len(started))
    return SimulationResult(
        journey_id=journey.id,
        events=len(events),
        entered=entered,
        not_entered=dict(sorted(not_entered.items())),
        paths={
            step_id: {
                "kind": d.kind,
                "name": d.name,
                "counts": {p: counts[step_id][p] for p in d.paths},
            }
            for step_id, d in decided.items()
        },
        emails=dict(sorted(emails.items())),
        sms=dict(sorted(sms.items())),
        skipped=dict(sorted(skipped.items())),
        exited=dict(sorted(exited.items())),
        timing={day: dict(sorted(hours.items())) for day, hours in sorted(timing.items())},
        state_transitions_per_contact=round(usage.transitions / people, 2) if started else 0.0,
        cost_usd_per_contact=round(usage.orchestration_cost() / people, 8) if started else 0.0,
        usage=usage,
        ignored=ignored,
        contacts=dict(sorted(contacts.items())),
    )


def _held_back(now: datetime, tz: Any, quiet: Any, window: Any) -> bool:
    """Whether these quiet hours / this send window alone keep a send from going at ``now``."""
    moment = next_send_time(
        now, tz, quiet=quiet, window=window, cap=None, sent_on_day=lambda _d: 0, sent_in_week=lambda _w: 0
    )
    return moment > now


def _deferrals(
    journey: Journey, deferred: list[tuple[str, float]], contacts: list[dict[str, Any]]
) -> Counter[str]:
    """Deferred sends by the rule that held when the send was deferred, in the contact's zone."""
    settings = journey.settings
    zones = {str(c.get("contact_id")): c.get("timezone") for c in contacts}
    found: Counter[str] = Counter()
    for contact_id, at in deferred:
        now = datetime.fromtimestamp(at, UTC)
        tz = zone(zones.get(contact_id), settings.timezone)

        if settings.quiet_hours is not None and _held_back(now, tz, settings.quiet_hours, None):
            found["deferred: quiet hours"] += 1
        elif settings.send_window is not None and _held_back(now, tz, None, settings.send_window):
            found["deferred: send window"] += 1
        else:
            found["deferred: frequency cap"] += 1
    return found


# --- output ---------------------------------------------------------------------------------------


def render(result: SimulationResult) -> list[str]:
    """The human-readable report."""
    lines = [f"journey '{result.journey_id}': {result.events} events replayed"]
    refused = ", ".join(f"{n} {reason}" for reason, n in result.not_entered.items()) or "none"
    lines.append(f"  entered: {result.entered}    not entered: {refused}")
    if result.paths:
        lines.append("  paths:")
        for step_id, path in result.paths.items():
            shares = "  ".join(f"{name}: {n}" for name, n in path["counts"].items())
            lines.append(f"    {path['kind']} {step_id} ({path['name']}): {shares}")
    for label, sends in (("emails", result.emails), ("sms", result.sms)):
        if sends:
            lines.append(f"  {label}: " + ", ".join(f"{t} {n}" for t, n in sends.items()))
    if not result.emails and not result.sms:
        lines.append("  emails: none")
    if result.skipped:
        lines.append("  skipped: " + ", ".join(f"{r} {n}" for r, n in result.skipped.items()))
    if result.exited:
        lines.append("  exited: " + ", ".join(f"{r} {n}" for r, n in result.exited.items()))
    if result.timing:
        hours = sorted({h for row in result.timing.values() for h in row})
        lines.append("  sends by day and hour (UTC):")
        lines.append("    " + " " * 14 + " ".join(f"{h:>3}" for h in hours))
        for day, row in result.timing.items():
            lines.append(f"    {day:<14}" + " ".join(f"{row.get(h, 0) or '.':>3}" for h in hours))
    lines.append(
        f"  state transitions per contact: {result.state_transitions_per_contact:g}    "
        f"orchestration cost per contact: ${result.cost_usd_per_contact:.6f} "
        f"(${result.cost_usd_per_contact * 1000:.4f} per 1,000)"
    )
    for note in result.ignored:
        lines.append(f"  ignored: {note}")
    return lines


def compare(old: SimulationResult, new: SimulationResult) -> tuple[list[str], dict[str, Any]]:
    """Both versions side by side, and the contacts whose paths or sends differ."""
    a, b = old.summary(), new.summary()
    lines = [f"{'':<34}{'old':>14}{'new':>14}"]

    def row(label: str, x: Any, y: Any) -> None:
        mark = "" if x == y else "   *"
        lines.append(f"{label:<34}{x!s:>14}{y!s:>14}{mark}")

    row("entered", a["entered"], b["entered"])
    for reason in sorted(set(a["not_entered"]) | set(b["not_entered"])):
        row(f"not entered: {reason}", a["not_entered"].get(reason, 0), b["not_entered"].get(reason, 0))
    for key in ("emails", "sms", "skipped", "exited"):
        for name in sorted(set(a[key]) | set(b[key])):
            row(f"{key}: {name}"[:33], a[key].get(name, 0), b[key].get(name, 0))
    for step_id in list(a["paths"]) + [s for s in b["paths"] if s not in a["paths"]]:
        before = a["paths"].get(step_id, {}).get("counts", {})
        after = b["paths"].get(step_id, {}).get("counts", {})
        for name in list(before) + [n for n in after if n not in before]:
            row(f"{step_id}: {name}"[:33], before.get(name, "-"), after.get(name, "-"))
    row("transitions per contact", a["state_transitions_per_contact"], b["state_transitions_per_contact"])
    row(
        "cost per 1,000 contacts ($)",
        round(a["cost_usd_per_contact"] * 1000, 4),
        round(b["cost_usd_per_contact"] * 1000, 4),
    )
    changed: dict[str, dict[str, Any]] = {}
    for email in sorted(set(old.contacts) | set(new.contacts)):
        before = old.contacts.get(email) or ContactOutcome(email=email)
        after = new.contacts.get(email) or ContactOutcome(email=email)
        if (before.paths, before.emails, before.sms, before.entries) != (
            after.paths,
            after.emails,
            after.sms,
            after.entries,
        ):
            changed[email] = {
                "old": {
                    "entries": before.entries,
                    "paths": before.paths,
                    "emails": before.emails,
                    "sms": before.sms,
                },
                "new": {
                    "entries": after.entries,
                    "paths": after.paths,
                    "emails": after.emails,
                    "sms": after.sms,
                },
            }
    lines.append(f"contacts whose path or messages change: {len(changed)}")
    for email, change in changed.items():
        lines.append(f"  {email}:")
        for version in ("old", "new"):
            c = change[version]
            paths = ", ".join(f"{s}={p}" for s, p in c["paths"]) or "-"
            sends = ", ".join(c["emails"] + [f"sms {t}" for t in c["sms"]]) or "nothing"
            lines.append(
                f"    {version}: {'entered' if c['entries'] else 'not entered'}; paths {paths}; sends {sends}"
            )
    return lines, {"old": a, "new": b, "changed": changed}


# --- on the running local system (``POST /_local/journeys/{id}/simulate``) ------------------------

SUBPROCESS_TIMEOUT = 600.0


def local_history(system: LocalSystem) -> tuple[str, str]:
    """The running local system's whole history as simulate's input (events, contacts; JSON Lines)."""
    from leadflow.local.history_export import export_history

    exported = export_history(system.client("dynamodb"), "local", datetime(1970, 1, 1, tzinfo=UTC))
    return (
        "".join(json.dumps(e) + "\n" for e in exported.events),
        "".join(json.dumps(c) + "\n" for c in exported.contacts),
    )


def simulate_apart(
    journey_yaml: str, events: str, contacts: str | None, *, templates: Path = ROOT / "templates"
) -> dict[str, Any]:
    """``leadflow journeys simulate --json`` in a process of its own (its own moto and clock, so a
    running local system is left alone): ``{"report": [lines], "result": {...}}`` or ``{"error": …}``."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="leadflow-simulate-") as folder:
        root = Path(folder)
        (root / "journeys").mkdir()
        journey = root / "journeys" / "journey.yaml"
        journey.write_text(journey_yaml, encoding="utf-8")
        (root / "templates").symlink_to(templates)
        (root / "events.jsonl").write_text(events, encoding="utf-8")
        command = [sys.executable, "-m", "leadflow.ops.cli", "journeys", "simulate", str(journey)]
        command += ["--events", str(root / "events.jsonl"), "--json"]
        if contacts:
            (root / "contacts.jsonl").write_text(contacts, encoding="utf-8")
            command += ["--contacts", str(root / "contacts.jsonl")]
        # our own interpreter and CLI on files we wrote: no shell, no outside input in the command
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        return {"error": errors[-1].removeprefix("error: ") if errors else done.stderr.strip()[-2000:]}
    return {"report": lines[:-1], "result": json.loads(lines[-1])}
