"""What orchestrating the shipped journeys costs per contact and per email (``make bench``).

A scripted behaviour mix over the SHIPPED journeys on the local runtime with virtual time: 24
contacts sign up for the newsletter (welcome) and start a trial (trial-nurture); a third open the
welcome email; half use the reports feature a day later (trial-nurture's ``wait_for``); 8 register
for a webinar two days ahead and half of them attend (webinar's ``wait_for``); some view pricing
(hot leads: the MQL hand-off journey and its ``wait_for`` on sales feedback); some buy (an exit
while waiting); 4 sign up through the double opt-in form, half of them confirm. Then 30 virtual
days pass (win-back is entered by hand by sales: not in the mix).

Figures come from ``leadflow.journeys.cost``: transitions and Lambda calls from every execution's
history, DynamoDB request units from the calls the journey step function makes (and the calls
``trigger`` makes on enrollments: entries, ``wait_for`` answers, exits), GB-seconds from the step
function's in-process CPU time (moto's in-process work included, standing in for the calls' network
time) at the deployed memory size (512 MB). ``wait_for_reaction_seconds``:
the most virtual seconds between an awaited event and its ``on_event`` path's first task."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from leadflow.journeys.cost import Usage, gb_seconds, history_usage
from leadflow.journeys.model import Journey, WaitForStep
from leadflow.local.metering import SEND_MEMORY_MB, DynamoMeter, enrollment_journey
from leadflow.local.system import LocalSystem, resource_name
from leadflow.platform.tables import MESSAGES

CONTACTS = 24
DAY = 86400
START = datetime(2026, 1, 5, 8, 30, tzinfo=UTC).timestamp()  # a Monday, 09:30 in Berlin


class _Meter(DynamoMeter):
    """DynamoDB units and step-function durations by journey, for calls made inside the wrapped
    handlers (thread-local scope: executions run in their own threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Usage] = defaultdict(Usage)
        self.task_times: list[tuple[str, str, str, float]] = []  # (journey, step, contact, virtual time)

    def add(self, journey: str, usage: Usage) -> None:
        with self.lock:
            self.usage[journey] = self.usage[journey] + usage

    def charge(self, scope: Any, params: Any, usage: Usage) -> None:
        kind, journey = scope
        if kind == "send" and journey:
            self.add(journey, usage)
        elif kind == "trigger":
            enrolled = enrollment_journey(params)
            if enrolled:
                self.add(enrolled, usage)

    def wrap_send(self, handler: Callable[..., Any], clock: Callable[[], float]) -> Callable[..., Any]:
        def wrapped(payload: dict[str, Any], context: Any) -> Any:
            journey = str(payload.get("journey_id", ""))
            self.task_times.append(
                (journey, str(payload.get("step_id")), str(payload.get("contact_id")), clock())
            )
            self.local.scope = ("send", journey)
            start = time.thread_time()
            try:
                return handler(payload, context)
            finally:
                # CPU time of the invocation's thread (moto's work in it included): wall time
                # would count the other executions' turns on this 2-core machine's GIL
                elapsed_ms = (time.thread_time() - start) * 1000
                self.local.scope = None
                self.add(journey, Usage(gb_seconds=gb_seconds(elapsed_ms, SEND_MEMORY_MB)))

        return wrapped

    def wrap_trigger(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(event: dict[str, Any], context: Any) -> Any:
            self.local.scope = ("trigger", None)
            try:
                return handler(event, context)
            finally:
                self.local.scope = None

        return wrapped


def _open(system: LocalSystem, email: str) -> None:
    for message in system.outbox():
        if email in message["to"] and message.get("html"):
            for url in re.findall(r'src="([^"]+/t/o/[^"]+)"', message["html"]):
                system.invoke_http("GET", urlsplit(url.replace("&amp;", "&")).path)
            return


def _post(system: LocalSystem, path: str, body: str) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if path.startswith("/admin/"):
        headers["authorization"] = f"Bearer {system.admin_key}"
    return system.invoke_http("POST", path, headers=headers, body=body)


def _sign_up(system: LocalSystem, form: str, email: str, first_name: str) -> None:
    """A consenting sign-up through one of the site's forms."""
    import json

    body = json.dumps({"email": email, "first_name": first_name, "consent": True})
    reply = _post(system, f"/forms/{form}", body)
    assert reply["statusCode"] == 201, reply


def _event(system: LocalSystem, email: str, kind: str, **properties: Any) -> None:
    """A business event (a trial, product usage, a purchase, attendance): from a server."""
    import json

    body = json.dumps({"type": kind, "email": email, "properties": properties})
    reply = _post(system, "/admin/events", body)
    assert reply["statusCode"] == 202, reply


def _first_on_event_steps(journeys: list[Journey]) -> dict[tuple[str, str], str]:
    """(journey, first step id of an ``on_event`` path) -> the awaited event type."""
    found = {}
    for journey in journeys:
        for step in journey.walk():
            if isinstance(step, WaitForStep) and step.wait_for.on_event:
                found[(journey.id, journey.step_id(step.wait_for.on_event[0]))] = step.wait_for.event
    return found


def journey_costs() -> dict[str, Any]:
    """Run the mix; per-journey and total usage, and the reaction time of ``wait_for``."""

    meter = _Meter()
    with LocalSystem(background_pump=False, clock_start=START) as system, meter.counting():
        send = resource_name("send")
        system.handlers[send] = meter.wrap_send(system.handlers[send], system.clock.now)
        for consumer in system.pump.consumers:
            if consumer.name == resource_name("trigger"):
                consumer.handler = meter.wrap_trigger(consumer.handler)
        emails = [f"mix-{n:02d}@example.com" for n in range(CONTACTS)]
        for email in emails:
            _sign_up(system, "newsletter", email, "Mix")
            _event(system, email, "trial_started", plan="trial")
        optins = [f"optin-{n}@example.com" for n in range(4)]
        for email in optins:
            _sign_up(system, "whitepaper", email, "Opt")
        system.settle(timeout=120)
        for n, email in enumerate(emails):
            if n % 3 == 0:
                _open(system, email)
        for email in optins[:2]:
            _confirm(system, email)
        system.advance(DAY)
        awaited: dict[tuple[str, str], float] = {}
        for n, email in enumerate(emails):
            if n % 2 == 0:
                awaited[(email, "product_used")] = system.clock.now()
                _event(system, email, "product_used", feature="reports")
        system.settle(timeout=120)
        # the webinar: 8 contacts register on Monday for Wednesday 17:00 in Berlin; 4 of them attend
        webinar_start = datetime(2026, 1, 7, 16, 0, tzinfo=UTC)
        for email in emails[:8]:
            _event(
                system,
                email,
                "webinar_registered",
                webinar_id="w-2026-01",
                webinar_title="Attribution in practice",
                starts_at=webinar_start.isoformat(),
                starts_at_text="Wednesday 7 January, 17:00 CET",
                join_url="https://webinar.example.com/j/2026-01",
                recording_url="https://webinar.example.com/r/2026-01",
            )
        system.settle(timeout=120)
        plan: list[tuple[float, Callable[[], None]]] = [
            (webinar_start.timestamp() + 300, lambda: _attend(system, emails[:8:2], awaited)),
            (START + 4 * DAY, lambda: _each(system, emails, 4, 1, "pricing_viewed", times=2)),
            (START + 6 * DAY, lambda: _each(system, emails, 5, 4, "purchase", plan="pro")),
        ]
        for at, action in sorted(plan, key=lambda p: p[0]):
            system.advance(at - system.clock.now())
            action()
            system.settle(timeout=120)
        end = START + 30 * DAY
        while system.clock.now() < end:
            system.advance(min(DAY, end - system.clock.now()))
        usage = _usage_by_journey(system, meter)
        reaction = _reaction_seconds(system, meter, awaited)
        contacts_of = _contacts_by_journey(system)
    total = sum(usage.values(), Usage())
    return {"journeys": usage, "contacts": contacts_of, "total": total, "wait_for_reaction_seconds": reaction}


def _each(
    system: LocalSystem, emails: list[str], every: int, rest: int, kind: str, times: int = 1, **props: Any
) -> None:
    for n, email in enumerate(emails):
        if n % every == rest:
            for _ in range(times):
                _event(system, email, kind, **props)


def _attend(system: LocalSystem, emails: list[str], awaited: dict[tuple[str, str], float]) -> None:
    for email in emails:
        awaited[(email, "webinar_attended")] = system.clock.now()
        _event(system, email, "webinar_attended", webinar_id="w-2026-01")


def _confirm(system: LocalSystem, email: str) -> None:
    """Click the double opt-in confirmation link of the contact's email."""
    for message in system.outbox():
        if email in message["to"]:
            for url in re.findall(r"(https?://\S+/confirm/[A-Za-z0-9._~-]+)", message.get("text") or ""):
                system.invoke_http("GET", urlsplit(url).path)
                return
    raise AssertionError(f"no confirmation link for {email}")


STATES_ENTERED: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
"""Per journey, how often each state was entered in the last run (where the transitions go)."""


def _usage_by_journey(system: LocalSystem, meter: _Meter) -> dict[str, Usage]:
    usage: dict[str, Usage] = {journey_id: Usage() for journey_id in system.state_machines}
    sfn = system.client("stepfunctions")
    for journey_id, arn in system.state_machines.items():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                usage[journey_id] = usage[journey_id] + history_usage(events)
                for event in events:
                    name = event.get("stateEnteredEventDetails", {}).get("name")
                    if name:
                        STATES_ENTERED[journey_id][name] += 1
    for item in system._scan(MESSAGES.name):
        if (
            item.get("status") == "sent"
            and item.get("channel") == "email"
            and item.get("journey_id") in usage
        ):
            usage[str(item["journey_id"])].emails += 1
    for journey_id, measured in meter.usage.items():
        if journey_id in usage:
            usage[journey_id] = usage[journey_id] + measured
    return usage


def _contacts_by_journey(system: LocalSystem) -> dict[str, int]:
    sfn = system.client("stepfunctions")
    return {
        journey_id: sum(
            len(p["executions"]) for p in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
        )
        for journey_id, arn in system.state_machines.items()
    }


def _reaction_seconds(system: LocalSystem, meter: _Meter, awaited: dict[tuple[str, str], float]) -> float:
    """The most virtual seconds between an awaited event and its on_event path's first task."""
    from leadflow.journeys import load_journeys

    firsts = _first_on_event_steps(load_journeys(system.content_dir / "journeys"))
    contact_of = {str(c.get("email")): str(c.get("contact_id")) for c in system.contacts()}
    worst = 0.0
    for (email, kind), at in awaited.items():
        contact_id = contact_of[email]
        times = [
            t
            for journey, step, contact, t in meter.task_times
            if contact == contact_id and firsts.get((journey, step)) == kind and t >= at
        ]
        if not times:
            raise AssertionError(f"the {kind} of {email} never reached its on_event path")
        worst = max(worst, min(times) - at)
    return worst


def journey_figures() -> tuple[list[str], dict[str, Any]]:
    """(f) The human-readable lines and the final JSON line's keys."""
    result = journey_costs()
    total: Usage = result["total"]
    lines = [
        f"(f) journeys: orchestration per email over the shipped journeys ({CONTACTS} contacts, 30 virtual days, "
        f"scripted behaviour mix; Step Functions + Lambda + DynamoDB vs SES at $0.10/1,000)"
    ]
    for journey_id, usage in sorted(result["journeys"].items()):
        contacts = result["contacts"][journey_id]
        if not contacts:
            lines.append(f"      {journey_id:<14} no contacts in this mix")
            continue
        per_email = f"{usage.per_email():.2f}" if usage.emails else "-"
        ratio = f"{usage.vs_ses():.2f}" if usage.emails else "-"
        lines.append(
            f"      {journey_id:<14} {contacts:>3} contacts  {usage.transitions / contacts:5.1f} transitions/contact  "
            f"{usage.emails:>3} emails  {per_email:>5} transitions/email  "
            f"${usage.orchestration_cost() / contacts * 1000:.3f}/1,000 contacts  vs SES {ratio}"
        )
    lines.append(
        f"      total: {total.transitions} transitions, {total.lambda_calls} Lambda calls, {total.gb_seconds:.1f} GB-s, "
        f"{total.write_units:.0f} WRU, {total.read_units:.0f} RRU for {total.emails} emails: "
        f"{total.per_email():.2f} transitions/email (target <= 4), orchestration/SES {total.vs_ses():.2f} "
        f"(target <= 1.0); wait_for reaction {result['wait_for_reaction_seconds']:g} s (target 0)"
    )
    figures = {
        "transitions_per_email": round(total.per_email(), 3),
        "orchestration_vs_ses_ratio": round(total.vs_ses(), 3),
        "wait_for_reaction_seconds": result["wait_for_reaction_seconds"],
        "transitions_per_contact": {
            j: round(u.transitions / result["contacts"][j], 2)
            for j, u in sorted(result["journeys"].items())
            if result["contacts"][j]
        },
    }
    return lines, figures
