"""The operator pages under ``/_local/``: the picture ops get from the AWS console, locally.

Server-rendered HTML (Jinja2, every value autoescaped: contact fields are visitor input) plus JSON
twins for tests and scripts:

- ``/_local/``                  dashboard figures and links (JSON: ``/_local/figures``)
- ``/_local/executions/page``   journey executions
- ``/_local/execution?arn=``    one execution's state-by-state history (JSON: ``/_local/execution.json``)
- ``/_local/outbox/page``       every email and SMS sent
- ``/_local/contacts``          contact profiles (JSON: ``/_local/contacts.json``)
- ``/_local/journeys``          the loaded journeys; ``/_local/journey?id=`` one journey's diagram and ASL

Times are virtual (the local clock that Wait states run on). moto stamps execution history with the
wall clock, so an execution's virtual times are rebuilt from its history: it starts when its entry
event occurred (the clock cannot move before the stream is drained), stays there while tasks run,
and each Wait state moves it to the Wait's due time — exactly what the virtual clock does.

The caller settles the system (under the server's clock lock) before rendering."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from botocore.exceptions import ClientError
from jinja2 import DictLoader, Environment, StrictUndefined
from markupsafe import Markup, escape

from leadflow.journeys import Journey, JourneyError, compile_journey, load_journeys
from leadflow.journeys.model import EndStep, GotoStep
from leadflow.local.system import LocalSystem, resource_name
from leadflow.platform.tables import EVENTS, keys

Page = tuple[int, str, bytes]
"""Status, content type, body."""

HTML = "text/html; charset=utf-8"
JSON = "application/json"
MAX_DETAIL = 400
CONTACT_COLUMNS = (
    "contact_id",
    "email",
    "first_name",
    "last_name",
    "status",
    "stage",
    "lifecycle_stage",
    "consent_email",
    "consent_source",
    "score",
    "created_at",
    "updated_at",
)
ROUTES = frozenset(
    {
        "/_local/",
        "/_local/figures",
        "/_local/executions/page",
        "/_local/execution",
        "/_local/execution.json",
        "/_local/outbox/page",
        "/_local/contacts",
        "/_local/contacts.json",
        "/_local/journeys",
        "/_local/journey",
        "/_local/journey/versions",
        "/_local/report",
    }
)


def handles(method: str, path: str) -> bool:
    return method == "GET" and path in ROUTES


# --- execution histories in virtual time ---------------------------------------------------------


@dataclass
class HistoryRow:
    id: int
    type: str
    state: str | None
    detail: str
    virtual: datetime | None
    """When it happened in virtual time (None once a Wait's duration cannot be worked out)."""
    recorded: datetime
    """The wall-clock timestamp moto recorded."""


@dataclass
class ExecutionView:
    journey: str
    name: str
    arn: str
    status: str
    state: str | None
    started: datetime | None
    stopped: datetime | None
    start_source: str
    rows: list[HistoryRow] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "journey": self.journey,
            "name": self.name,
            "arn": self.arn,
            "status": self.status,
            "state": self.state,
            "started": iso(self.started),
            "stopped": iso(self.stopped),
            "start_source": self.start_source,
            "history": [
                {
                    "id": r.id,
                    "type": r.type,
                    "state": r.state,
                    "detail": r.detail,
                    "time": iso(r.virtual),
                    "recorded": iso(r.recorded),
                }
                for r in self.rows
            ],
        }


class ExecutionNotFound(LookupError):
    pass


def _states(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition by name, nested branches and item processors included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in (definition.get("States") or {}).items():
        found[name] = state
        for nested in [*state.get("Branches", []), state.get("Iterator"), state.get("ItemProcessor")]:
            if isinstance(nested, Mapping):
                found |= _states(nested)
    return found


def _path(document: Any, path: Any) -> Any:
    """A simple reference path (``$.a.b``) into a JSON document; None when it does not resolve."""
    if not isinstance(path, str) or not path.startswith("$"):
        return None
    for part in [p for p in path[1:].split(".") if p]:
        if not isinstance(document, Mapping) or part not in document:
            return None
        document = document[part]
    return document


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _wait_due(state: Mapping[str, Any], state_input: Any, now: datetime) -> datetime | None:
    """When a Wait state entered at virtual ``now`` wakes up (the clock parks it until then)."""
    seconds = state.get("Seconds")
    if seconds is None and "SecondsPath" in state:
        seconds = _path(state_input, state["SecondsPath"])
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return now + timedelta(seconds=max(0.0, float(seconds)))
    stamp = state.get("Timestamp")
    if stamp is None and "TimestampPath" in state:
        stamp = _path(state_input, state["TimestampPath"])
    due = _timestamp(stamp)
    return max(now, due) if due else None


def _detail(event: Mapping[str, Any]) -> str:
    details = next(
        (v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, Mapping)), None
    )
    if details is None or "name" in details:  # state entered/exited: the state column says it
        return ""
    parts = []
    if "resourceType" in details:
        parts.append(f"{details['resourceType']}:{details.get('resource', '')}")
    for key in ("error", "cause", "output"):
        if details.get(key) not in (None, ""):
            parts.append(f"{key}: {details[key]}")
    text = " — ".join(parts)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _entry_time(system: LocalSystem, execution_input: str | None) -> datetime | None:
    """When the execution's entry event occurred (virtual time), from the events table."""
    try:
        data = json.loads(execution_input or "null")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.get("contact_id") or not data.get("entry_event_id"):
        return None
    item = (
        system.client("dynamodb")
        .get_item(
            TableName=resource_name(EVENTS.name),
            Key={
                "pk": {"S": keys.contact(str(data["contact_id"]))},
                "sk": {"S": keys.event(str(data["entry_event_id"]))},
            },
            ProjectionExpression="occurred_at",
        )
        .get("Item")
    )
    return _timestamp(item["occurred_at"]["S"]) if item else None


def execution_view(system: LocalSystem, arn: str) -> ExecutionView:
    """One execution and its history, state by state, in virtual time."""
    sfn = system.client("stepfunctions")
    try:
        described = sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        raise ExecutionNotFound(arn) from exc
    machine_arn = described["stateMachineArn"]
    journey = next((j for j, a in system.state_machines.items() if a == machine_arn), machine_arn)
    # the definition the execution runs: its version's (an older one after a journeys deploy)
    runs_on = described.get("stateMachineVersionArn") or machine_arn
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=runs_on)["definition"])
    states = _states(definition)
    started = _entry_time(system, described.get("input"))
    source = "entry event"
    if started is None:
        started, source = described["startDate"], "wall clock"
    now: datetime | None = started
    due: datetime | None = None
    state: str | None = None
    rows = []
    for event in system.history(arn):
        kind = str(event["type"])
        entered = event.get("stateEnteredEventDetails")
        if entered:
            state = str(entered["name"])
            if kind == "WaitStateEntered":
                try:
                    state_input = json.loads(entered.get("input") or "null")
                except json.JSONDecodeError:
                    state_input = None
                due = _wait_due(states.get(state, {}), state_input, now) if now else None
        if kind == "WaitStateExited":
            now = due
        rows.append(HistoryRow(int(event["id"]), kind, state, _detail(event), now, event["timestamp"]))
    status = str(described["status"])
    return ExecutionView(
        journey=journey,
        name=str(described["name"]),
        arn=arn,
        status=status,
        state=state,
        started=started,
        stopped=now if status != "RUNNING" else None,
        start_source=source,
        rows=rows,
    )


def execution_views(system: LocalSystem) -> list[ExecutionView]:
    sfn = system.client("stepfunctions")
    views = []
    for arn in system.state_machines.values():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            views += [execution_view(system, e["executionArn"]) for e in page["executions"]]
    return sorted(views, key=lambda v: (v.started or datetime.min.replace(tzinfo=UTC), v.name))


# --- rendering --------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if moment else "—"


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    present = {key for row in rows for key in row}
    return [c for c in CONTACT_COLUMNS if c in present] + sorted(present - set(CONTACT_COLUMNS))


_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %} · leadflow local</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#1d2733}
nav a{margin-right:1rem}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccd3db;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#eef2f6}td.n{text-align:right}
.status-SUCCEEDED{color:#176b2c}.status-FAILED,.status-TIMED_OUT,.status-ABORTED{color:#a61b1b}
.status-RUNNING{color:#1d4fa6}pre{white-space:pre-wrap;max-width:70rem}.muted{color:#66717d}
</style></head><body>
<nav><a href="/_local/">Dashboard</a><a href="/_local/executions/page">Executions</a>
<a href="/_local/outbox/page">Outbox</a><a href="/_local/contacts">Contacts</a>
<a href="/_local/journeys">Journeys</a><a href="/_local/report">Report</a>
<span class="muted">virtual time {{ now }}</span></nav>
<h1>{{ self.title() }}</h1>
{% block body %}{% endblock %}
</body></html>
"""

_REPORT = """{% extends "base.html" %}{% block title %}Report{% endblock %}{% block body %}
<p class="muted">Counters maintained from the events stream by <code>report</code>; the same figures as
<code>GET /admin/reports/...</code> and <code>leadflow report</code>. Opens and clicks of privacy
proxies and scanners are counted apart.</p>
{{ body }}
{% endblock %}"""

_INDEX = """{% extends "base.html" %}{% block title %}Dashboard{% endblock %}{% block body %}
<p>Figures as of virtual time {{ f.now }} · <a href="/_local/figures">JSON</a></p>
<h2>Contacts</h2><p><a href="/_local/contacts">{{ f.contacts }} contacts</a></p>
<h2>Journeys</h2><p><a href="/_local/journeys">Journeys and their diagrams</a></p>
<h2>Events recorded ({{ f.events.total }})</h2>
<table><tr><th>Type</th><th>Count</th></tr>
{% for type, n in f.events.by_type.items() %}<tr><td>{{ type }}</td><td class="n">{{ n }}</td></tr>
{% else %}<tr><td colspan="2" class="muted">none yet</td></tr>{% endfor %}</table>
<h2>Journey executions</h2>
<table><tr><th>Journey</th><th>Status</th><th>Count</th></tr>
{% for journey, statuses in f.executions.items() %}{% for status, n in statuses.items() %}
<tr><td>{{ journey }}</td><td class="status-{{ status }}">{{ status }}</td><td class="n">{{ n }}</td></tr>
{% else %}<tr><td>{{ journey }}</td><td colspan="2" class="muted">no executions</td></tr>{% endfor %}
{% endfor %}</table><p><a href="/_local/executions/page">All executions</a></p>
<h2>Messages ({{ f.messages.total }})</h2>
<table><tr><th>Status</th><th>Reason</th><th>Count</th></tr>
{% for status, n in f.messages.by_status.items() %}
<tr><td>{{ status }}</td><td></td><td class="n">{{ n }}</td></tr>
{% for reason, m in f.messages.by_reason.get(status, {}).items() %}
<tr><td></td><td>{{ reason }}</td><td class="n">{{ m }}</td></tr>{% endfor %}
{% else %}<tr><td colspan="3" class="muted">none yet</td></tr>{% endfor %}</table>
<p><a href="/_local/outbox/page">Outbox</a></p>
<h2>Public requests refused</h2>
<table><tr><th>Reason</th><th>Count</th></tr>
{% for reason, n in f.refusals.items() %}<tr><td>{{ reason }}</td><td class="n">{{ n }}</td></tr>
{% else %}<tr><td colspan="2" class="muted">none</td></tr>{% endfor %}</table>
<h2>Stream consumers</h2>
<table><tr><th>Consumer</th><th>Function</th><th>Delivered</th><th>Dead-lettered</th><th>Pending</th>
<th>On-failure queue depth</th></tr>
{% for name, c in f.consumers.items() %}<tr><td>{{ name }}</td><td>{{ c.function }}</td>
<td class="n">{{ c.delivered }}</td><td class="n">{{ c.dead_lettered }}</td><td class="n">{{ c.pending }}</td>
<td class="n">{{ f.dead_letter_queues.get(name, "") }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_EXECUTIONS = """{% extends "base.html" %}{% block title %}Executions{% endblock %}{% block body %}
<table><tr><th>Journey</th><th>Execution</th><th>Status</th><th>Current / last state</th>
<th>Started</th><th>Stopped</th></tr>
{% for e in executions %}<tr><td>{{ e.journey }}</td>
<td><a href="/_local/execution?arn={{ e.arn | urlencode }}">{{ e.name }}</a></td>
<td class="status-{{ e.status }}">{{ e.status }}</td><td>{{ e.state or "" }}</td>
<td>{{ when(e.started) }}</td><td>{{ when(e.stopped) }}</td></tr>
{% else %}<tr><td colspan="6" class="muted">no executions yet</td></tr>{% endfor %}</table>
<p><a href="/_local/executions">JSON</a></p>
{% endblock %}"""

_EXECUTION = """{% extends "base.html" %}{% block title %}Execution {{ e.name }}{% endblock %}
{% block body %}
<table>
<tr><th>Journey</th><td>{{ e.journey }}</td></tr><tr><th>Status</th>
<td class="status-{{ e.status }}">{{ e.status }}</td></tr>
<tr><th>Current / last state</th><td>{{ e.state or "" }}</td></tr>
<tr><th>Started</th><td>{{ when(e.started) }} <span class="muted">({{ e.start_source }})</span></td></tr>
<tr><th>Stopped</th><td>{{ when(e.stopped) }}</td></tr><tr><th>ARN</th><td>{{ e.arn }}</td></tr>
</table>
<h2>History</h2>
<table><tr><th>#</th><th>Virtual time</th><th>State</th><th>Event</th><th>Detail</th>
<th>Recorded (wall clock)</th></tr>
{% for r in e.rows %}<tr data-type="{{ r.type }}"><td class="n">{{ r.id }}</td><td>{{ when(r.virtual) }}</td>
<td>{{ r.state or "" }}</td><td>{{ r.type }}</td><td>{{ r.detail }}</td>
<td class="muted">{{ when(r.recorded) }}</td></tr>{% endfor %}</table>
<p><a href="/_local/execution.json?arn={{ e.arn | urlencode }}">JSON</a> ·
<a href="/_local/executions/page">All executions</a></p>
{% endblock %}"""

_OUTBOX = """{% extends "base.html" %}{% block title %}Outbox{% endblock %}{% block body %}
<table><tr><th>Time</th><th>Channel</th><th>To</th><th>From</th><th>Subject</th><th>Message id</th></tr>
{% for m in messages %}<tr><td>{{ m.time or "" }}</td><td>{{ m.channel }}</td><td>{{ m.to | unique | join(", ") }}</td>
<td>{{ m.get("from") or "" }}</td><td>{{ m.get("subject") or "" }}
{% if m.text %}<details><summary>text</summary><pre>{{ m.text }}</pre></details>{% endif %}</td>
<td>{{ m.id }}</td></tr>
{% else %}<tr><td colspan="6" class="muted">nothing sent yet</td></tr>{% endfor %}</table>
<p><a href="/_local/outbox">JSON</a></p>
{% endblock %}"""

_CONTACTS = """{% extends "base.html" %}{% block title %}Contacts{% endblock %}{% block body %}
<p>{{ contacts | length }} contacts · <a href="/_local/contacts.json">JSON</a></p>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for contact in contacts %}<tr>{% for c in columns %}<td>{{ cell(contact.get(c)) }}</td>{% endfor %}</tr>
{% else %}<tr><td class="muted">no contacts yet</td></tr>{% endfor %}</table>
{% endblock %}"""

_JOURNEYS = """{% extends "base.html" %}{% block title %}Journeys{% endblock %}{% block body %}
<table><tr><th>Id</th><th>Name</th><th>Entry</th><th>Steps</th><th>States</th><th>State machine</th></tr>
{% for j in journeys %}<tr><td><a href="/_local/journey?id={{ j.id | urlencode }}">{{ j.id }}</a></td>
<td>{{ j.name }}</td><td>{{ j.entry }}</td><td class="n">{{ j.steps }}</td><td class="n">{{ j.states }}</td>
<td>{% if j.arn %}<a href="/_local/executions/page">{{ j.arn }}</a>
{% else %}<span class="muted">not loaded</span>{% endif %}</td></tr>
{% else %}<tr><td colspan="6" class="muted">no journeys in {{ directory }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_JOURNEY = """{% extends "base.html" %}{% block title %}Journey {{ j.name }}{% endblock %}{% block body %}
<p>{{ j.id }} · {{ j.entry }} · {{ j.steps }} steps · <a href="/_local/journeys">All journeys</a></p>
{% if j.description %}<p>{{ j.description }}</p>{% endif %}
<div class="diagram">{% if svg %}{{ svg }}{% else %}<p class="muted">{{ svg_error }}</p>{% endif %}</div>
<details><summary>Compiled state machine (ASL)</summary><pre>{{ asl }}</pre></details>
{% endblock %}"""

_ERROR = """{% extends "base.html" %}{% block title %}{{ heading }}{% endblock %}{% block body %}
<p>{{ message }}</p>{% endblock %}"""

_env = Environment(
    loader=DictLoader(
        {
            "base.html": _BASE,
            "index.html": _INDEX,
            "report.html": _REPORT,
            "executions.html": _EXECUTIONS,
            "execution.html": _EXECUTION,
            "outbox.html": _OUTBOX,
            "contacts.html": _CONTACTS,
            "journeys.html": _JOURNEYS,
            "journey.html": _JOURNEY,
            "error.html": _ERROR,
        }
    ),
    autoescape=True,
    undefined=StrictUndefined,
)
_env.globals.update(when=_when, cell=_cell)


def _html(system: LocalSystem, template: str, status: int = HTTPStatus.OK, **context: Any) -> Page:
    body = _env.get_template(template).render(now=_when(system.clock.now_datetime()), **context)
    return status, HTML, body.encode()


def _error(system: LocalSystem, status: HTTPStatus, heading: str, message: str) -> Page:
    return _html(system, "error.html", status, heading=heading, message=message)


def _json(payload: Any) -> Page:
    return HTTPStatus.OK, JSON, json.dumps(payload, indent=1, default=str).encode()


def _journey_row(system: LocalSystem, journey: Journey, asl: str) -> dict[str, Any]:
    from leadflow.journeys.graph import entry_text

    return {
        "id": journey.id,
        "name": journey.name,
        "description": journey.description,
        "entry": entry_text(journey).removeprefix("Start: "),
        "steps": sum(1 for s in journey.walk() if not isinstance(s, GotoStep | EndStep)),
        "states": len(json.loads(asl)["States"]),
        "arn": system.state_machines.get(journey.id),
    }


def _journeys(system: LocalSystem, path: str, params: Mapping[str, str]) -> Page:
    directory = system.content_dir / "journeys"
    try:
        journeys = load_journeys(directory)
        if path == "/_local/journeys":
            rows = [_journey_row(system, j, compile_journey(j)) for j in journeys]
            return _html(system, "journeys.html", journeys=rows, directory=str(directory))
        wanted = params.get("id", "")
        journey = next((j for j in journeys if j.id == wanted), None)
        if journey is None:
            return _error(system, HTTPStatus.NOT_FOUND, "Not found", f"no journey {wanted!r}")
        # as deployed: each send names its template's version
        asl = compile_journey(journey, templates_dir=system.content_dir / "templates")
    except JourneyError as exc:
        return _error(system, HTTPStatus.INTERNAL_SERVER_ERROR, "Invalid journey", str(exc))
    svg, svg_error = None, ""
    try:
        from leadflow.journeys.graph import render_svg
    except ImportError:  # pragma: no cover - grandalf comes with the dev dependencies
        svg_error = "The diagram needs grandalf: pip install -e '.[dev]'"
    else:
        svg = Markup(render_svg(journey))  # built with every name escaped  # noqa: S704
    return _html(
        system, "journey.html", j=_journey_row(system, journey, asl), svg=svg, svg_error=svg_error, asl=asl
    )


def render(system: LocalSystem, path: str, query: str = "") -> Page | None:
    """The page for a GET of ``path``; None when it is not an operator page."""
    params = dict(parse_qsl(query))
    if path == "/_local/":
        return _html(system, "index.html", f=system.figures())
    if path == "/_local/figures":
        return _json(system.figures())
    if path == "/_local/executions/page":
        return _html(system, "executions.html", executions=execution_views(system))
    if path in ("/_local/execution", "/_local/execution.json"):
        arn = params.get("arn", "")
        if not arn:
            return _error(system, HTTPStatus.BAD_REQUEST, "Bad request", "arn is required")
        try:
            view = execution_view(system, arn)
        except ExecutionNotFound:
            return _error(system, HTTPStatus.NOT_FOUND, "Not found", f"no execution {arn}")
        return _json(view.as_json()) if path.endswith(".json") else _html(system, "execution.html", e=view)
    if path == "/_local/outbox/page":
        return _html(system, "outbox.html", messages=system.outbox())
    if path in ("/_local/contacts", "/_local/contacts.json"):
        contacts = system.contacts()
        if path.endswith(".json"):
            return _json(contacts)
        return _html(system, "contacts.html", contacts=contacts, columns=_columns(contacts))
    if path in ("/_local/journeys", "/_local/journey"):
        return _journeys(system, path, params)
    if path == "/_local/report":
        return _report(system, params)
    if path == "/_local/journey/versions":
        return _versions(system, params.get("id", ""))
    return None


def _versions(system: LocalSystem, journey_id: str) -> Page:
    """``leadflow journeys versions ID`` against this system: the versions, the alias, who runs where."""
    from leadflow.local.system import JOURNEY_ALIAS
    from leadflow.ops.versions import journey_versions

    machine = system.state_machines.get(journey_id)
    if machine is None:
        body = json.dumps({"error": f"no journey {journey_id!r}", "journeys": sorted(system.state_machines)})
        return HTTPStatus.NOT_FOUND, JSON, body.encode()
    rows = journey_versions(system.client("stepfunctions"), machine, JOURNEY_ALIAS)
    return _json({"journey": journey_id, "alias": JOURNEY_ALIAS, "versions": [r.to_dict() for r in rows]})


def _report(system: LocalSystem, params: Mapping[str, str]) -> Page:
    """The reporting counters as charts (inline SVG) and figures: the figures of the admin API's
    /admin/reports/* routes and of ``leadflow report``."""
    from leadflow import wiring
    from leadflow.kernel.settings import get_settings
    from leadflow.reporting import render

    reports = wiring.report_reader(get_settings())
    journeys = [j.id for j in load_journeys(system.content_dir / "journeys")]
    templates = sorted(
        p.name for p in (system.content_dir / "templates").iterdir() if not p.name.startswith("_")
    )
    chosen = [params["journey"]] if params.get("journey") else journeys
    parts = [render.daily_svg(reports.days(system.clock.now_datetime().date()))]
    attribution = reports.attribution()
    parts.append(render.attribution_svg(attribution))
    parts.append(f"<pre>{escape(render.attribution_text(attribution))}</pre>")
    for journey_id in chosen:
        report = reports.journey(journey_id, params.get("goal"))
        if report.entered:
            parts.append(render.funnel_svg(report))
            parts.append(f"<pre>{escape(render.journey_text(report))}</pre>")
    for template in templates:
        message = reports.message(template)
        if message.sent:
            parts.append(f"<pre>{escape(render.message_text(message))}</pre>")
    body = Markup("\n".join(parts))  # noqa: S704 - every name and value escaped by render
    return _html(system, "report.html", body=body)
