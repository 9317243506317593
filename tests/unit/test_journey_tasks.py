"""The task contract (``leadflow.journeys.runtime.tasks``): every task the compiler writes — for the shipped
journeys and for one journey with every step type, folded and unfolded — parses into the request
model of its action with its step typed, and so do the shapes definitions compiled before
(still running executions) send; unknown actions and keys are refused when the request is parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from leadflow.journeys import compile_journey, parse_journey
from leadflow.journeys.model import (
    Holdout,
    Journey,
    NotifySales,
    UpdateContact,
    WaitUntil,
    Webhook,
    load_journeys,
)
from leadflow.journeys.runtime.tasks import (
    TASK,
    ActSend,
    ActUpdate,
    BranchSpec,
    ChannelSchedule,
    DeadLetterSpec,
    DeadLetterTask,
    EvaluateTask,
    FusedSendSpec,
    LeaveTask,
    ScheduleTask,
    SendEmailTask,
    SendSmsTask,
    SendSpec,
    SplitTask,
    UpdateContactTask,
    WaitForSpec,
    WaitForTask,
    derive,
)

ROOT = Path(__file__).resolve().parents[2]

EVERY_STEP = """
id: every-step
name: Every step
entry: {event: form_submitted}
settings:
  quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - send_email: {id: hello, template: welcome, subject: Hello, preheader: Hi}
  - wait_until: {time: "09:00", weekdays: [tue]}
  - random_split:
      id: subject
      name: Subject test
      paths:
        - weight: 1
          steps: [{send_email: {id: a, template: welcome}}]
        - weight: 3
          steps: [{send_email: {id: b, template: welcome-followup-nudge, purpose: transactional}}]
  - branch:
      id: engaged
      name: Engaged?
      if: {opened: hello}
      then: [{update_contact: {id: tag, add_tags: [engaged], stage: mql, add_points: 5}}]
      else: [{send_email: {id: nudge, template: welcome}}]
  - wait_for:
      id: demo
      event: demo_booked
      where: {plan: [pro, team]}
      timeout: {days: 3}
      count_from: entry
      on_timeout: [{notify_sales: {id: call, reason: no demo booked}}]
  - branch:
      id: plan
      name: Which plan?
      cases:
        - if: {attribute: plan, equals: pro}
          steps: [{wait: {days: 1}}, {send_sms: {id: pro, template: sms-reminder}}]
      default: [{update_contact: {id: untag, set: {plan_seen: yes}}}]
  - webhook: {id: crm, url: "https://crm.example.com/hook", secret: crm, payload: {list: a}, include_handoff: true}
  - wait_until: {id: renewal, attribute: renewal_at, offset_days: -7}
  - holdout: {id: control, percent: 10}
  - send_email: {id: last, template: welcome}
"""

FILLED = {
    "contact_id.$": "c-7f3a",
    "execution_id.$": "arn:aws:states:eu-central-1:123456789012:execution:every-step:every-step-c-7f3a",
    "entered_at.$": "2026-03-10T21:47:13.512Z",
    "round.$": 2,
    "entry_event_id.$": "ev-01",
    "token.$": "AQCEAAAAKgAAAAMAAAAA",
    "holdout_bucket.$": 0.42,
    "split_bucket.$": 0.91,
    "failure.$": {"Error": "WebhookFailed", "Cause": '{"errorMessage": "endpoint answered 503"}'},
    "since.$": "2026-03-11T08:00:00Z",
}


def tasks_of(journey: Journey, *, fold: bool, templates: bool) -> list[dict[str, Any]]:
    """The Lambda payloads of a compiled definition, with the paths Step Functions fills in filled."""
    definition = json.loads(
        compile_journey(journey, fold=fold, templates_dir=ROOT / "templates" if templates else None)
    )
    payloads = []
    for state in definition["States"].values():
        if state["Type"] == "Task":
            payload = state["Parameters"]["Payload"]
            payloads.append({k.removesuffix(".$"): FILLED.get(k, v) for k, v in payload.items()})
    return payloads


def journeys() -> list[Journey]:
    return [*load_journeys(ROOT / "journeys"), parse_journey(yaml.safe_load(EVERY_STEP), "every-step.yaml")]


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("templates", [True, False])
def test_every_compiled_task_parses_into_its_actions_model(fold: bool, templates: bool) -> None:
    seen: set[str] = set()
    for journey in journeys():
        for payload in tasks_of(journey, fold=fold, templates=templates):
            request = TASK.validate_python(payload)
            assert request.action == payload["action"]
            assert request.journey_id == journey.id
            assert request.contact_id == "c-7f3a"
            if "step" in payload:
                # the typed step holds exactly what the compiler wrote: nothing lost, nothing added
                step = getattr(request, "step")  # noqa: B009 (LeaveTask has none)
                assert step.model_dump(mode="json", by_alias=True, exclude_unset=True) == payload["step"]
            seen.add(request.action)
    expected = {"send_email", "send_sms", "schedule", "evaluate", "wait_for", "update_contact"}
    assert expected | {"notify_sales", "webhook", "dead_letter", "leave"} <= seen


def test_the_steps_arrive_as_the_compilers_own_models() -> None:
    journey = parse_journey(yaml.safe_load(EVERY_STEP), "every-step.yaml")
    by_step = {}
    for payload in tasks_of(journey, fold=True, templates=False):
        by_step[(payload["action"], payload.get("step_id"))] = TASK.validate_python(payload)

    hello = by_step[("send_email", "hello")]
    assert isinstance(hello, SendEmailTask)
    assert isinstance(hello.step, SendSpec)
    assert (hello.step.subject, hello.step.preheader, hello.step.deferrable) == ("Hello", "Hi", True)
    assert isinstance(hello.step.plan, WaitUntil)
    assert hello.step.plan.weekdays == ["tue"]
    assert hello.round_step_id == "hello@2"
    assert hello.lineage_id.endswith("every-step-c-7f3a")

    split = by_step[("send_email", "subject")]
    assert isinstance(split.step, FusedSendSpec)
    assert split.step.split is not None
    assert split.split_bucket == 0.91
    assert [(v.step_id, v.below, v.template, v.deferrable) for v in split.step.split.variants] == [
        ("a", 0.25, "welcome", True),
        ("b", 1.0, "welcome-followup-nudge", False),
    ]

    last = by_step[("send_email", "control")]
    assert isinstance(last.step, FusedSendSpec)
    assert last.step.holdout is not None
    assert last.step.send
    assert (last.step.holdout.percent, last.step.send.step_id, last.leave) == (10, "last", "completed")

    pro = by_step[("send_sms", "pro")]
    assert isinstance(pro, SendSmsTask)
    assert isinstance(pro.step, SendSpec)
    assert pro.step.channel == "sms"

    engaged = by_step[("evaluate", "engaged")]
    assert isinstance(engaged, EvaluateTask)
    assert engaged.step.if_ is not None
    assert engaged.step.act
    then, other = engaged.step.act["then"], engaged.step.act["else"]
    assert isinstance(then, ActUpdate)
    assert isinstance(then.step, UpdateContact)
    assert (then.step.add_tags, then.step.stage, then.step.add_points) == (["engaged"], "mql", 5)
    assert isinstance(other, ActSend)
    assert other.step.template == "welcome"

    demo = by_step[("wait_for", "demo")]
    assert isinstance(demo, WaitForTask)
    assert demo.token == "AQCEAAAAKgAAAAMAAAAA"
    assert demo.step == WaitForSpec(event="demo_booked", where={"plan": ["pro", "team"]}, count_from="entry")

    assert isinstance(by_step[("notify_sales", "call")].step, NotifySales)  # type: ignore[union-attr]
    crm = by_step[("webhook", "crm")].step  # type: ignore[union-attr]
    assert isinstance(crm, Webhook)
    assert crm.include_handoff
    assert crm.payload == {"list": "a"}
    dead = by_step[("dead_letter", "crm")]
    assert isinstance(dead, DeadLetterTask)
    assert dead.step == DeadLetterSpec(url="https://crm.example.com/hook")
    assert dead.failure is not None
    assert dead.failure["Error"] == "WebhookFailed"

    renewal = by_step[("schedule", "renewal")]
    assert isinstance(renewal, ScheduleTask)
    assert isinstance(renewal.step, WaitUntil)
    assert (renewal.step.attribute, renewal.step.offset_days) == ("renewal_at", -7)
    assert isinstance(by_step[("update_contact", "untag")], UpdateContactTask)
    assert isinstance(by_step[("evaluate", "plan")].step, BranchSpec)  # type: ignore[union-attr]
    assert isinstance(by_step[("leave", None)], LeaveTask)


def test_shapes_of_definitions_compiled_before_still_parse() -> None:
    """Running executions keep their definition: polling ``wait_for``, a send's ``schedule`` by
    channel, and the ``split``/``holdout`` decision tasks."""
    common = {"journey_id": "trial", "contact_id": "c-1", "execution_id": "arn:x:execution:trial:trial-c-1"}
    poll = TASK.validate_python(
        {
            **common,
            "action": "wait_for",
            "step_id": "w",
            "since": "2026-01-01T00:00:00Z",
            "step": {
                "event": "trial_started",
                "where": {},
                "timeout_seconds": 86400,
                "check_every_seconds": 3600,
            },
        }
    )
    assert isinstance(poll, WaitForTask)
    assert poll.step.timeout_seconds == 86400
    assert poll.token is None
    schedule = TASK.validate_python(
        {**common, "action": "schedule", "step_id": "s", "step": {"channel": "sms"}}
    )
    assert isinstance(schedule, ScheduleTask)
    assert schedule.step == ChannelSchedule(channel="sms")
    split = TASK.validate_python({**common, "action": "split", "step_id": "p", "step": {"weights": [1, 2]}})
    assert isinstance(split, SplitTask)
    assert split.step.weights == [1, 2]
    holdout = TASK.validate_python({**common, "action": "holdout", "step_id": "h", "step": {"percent": 12.5}})
    assert isinstance(holdout.step, Holdout)
    assert holdout.step.percent == 12.5


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"action": "send_carrier_pigeon", "step": {}}, "action"),
        ({"action": "send_email", "step": {"template": "welcome", "priority": "high"}}, "priority"),
        ({"action": "send_email", "step": {"purpose": "marketing"}}, "template"),
        (
            {"action": "update_contact", "step": {"add_tags": ["a"], "remove_tags": ["b"]}},
            "add_tags and remove_tags",
        ),
        ({"action": "webhook", "step": {"url": "http://crm.example.com/", "secret": "crm"}}, "https://"),
        ({"action": "evaluate", "step": {"if": {"no_such_condition": 1}}}, "if"),
        ({"action": "schedule", "step": {"channel": "fax"}}, "channel"),
    ],
)
def test_a_malformed_task_is_refused_when_parsed_naming_what_is_wrong(
    payload: dict[str, Any], field: str
) -> None:
    request = {"journey_id": "j", "contact_id": "c", "execution_id": "x", "step_id": "s", **payload}
    with pytest.raises(ValidationError) as caught:
        TASK.validate_python(request)
    assert field in str(caught.value)


def test_derive_keeps_the_execution_and_contact_and_types_the_new_step() -> None:
    engaged = next(
        TASK.validate_python(p)
        for p in tasks_of(
            parse_journey(yaml.safe_load(EVERY_STEP), "every-step.yaml"), fold=True, templates=False
        )
        if p["action"] == "evaluate" and p["step_id"] == "engaged"
    )
    assert isinstance(engaged, EvaluateTask)
    assert engaged.step.act is not None
    act = engaged.step.act["then"]
    assert isinstance(act, ActUpdate)
    inner = derive(engaged, UpdateContactTask, action=act.action, step_id=act.step_id, step=act.step)
    assert (inner.action, inner.step_id, inner.step) == ("update_contact", "tag", act.step)
    assert (inner.execution_id, inner.contact_id, inner.round) == (engaged.execution_id, "c-7f3a", 2)
    assert inner.round_step_id == "tag@2"
    assert isinstance(
        derive(engaged, SendSmsTask, action="send_sms", step=SendSpec(template="t")), SendSmsTask
    )
