"""The language additions of issue 12, each rule with its error message naming file and step:
step subject/preheader, wait_until at/event_property, wait_for count_from, entry any, engagement
lists, required default, sends inside earlier paths, unknown step types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from leadflow.journeys.conditions import Facts, evaluate
from leadflow.journeys.model import (
    BranchStep,
    Journey,
    JourneyError,
    SendEmailStep,
    WaitForStep,
    WaitUntil,
    WaitUntilStep,
    parse_journey,
)
from leadflow.journeys.timing import wait_until_time


def journey(text: str, source: str = "journeys/test.yaml") -> Journey:
    data: Any = yaml.safe_load(text)
    return parse_journey(data, source)


def refused(text: str, source: str = "journeys/test.yaml") -> str:
    with pytest.raises(JourneyError) as caught:
        journey(text, source)
    message = str(caught.value)
    assert message.startswith(f"{source}: "), message
    return message


HEAD = """
id: t
name: T
entry: {event: webinar_registered}
steps:
"""


def with_step(step: dict[str, Any]) -> str:
    """HEAD with this one step (written as a YAML flow mapping)."""
    return HEAD + "  - " + yaml.safe_dump(step, default_flow_style=True, width=1000)


# the new wait_until forms: a fixed moment with its UTC offset, an entry event's property shifted
NEW_WAIT_UNTIL_FORMS = """
  - wait_until: {at: "2026-03-12T17:00:00+01:00"}
  - wait_until: {event_property: starts_at, offset_hours: -1}
"""


# --- send_email subject / preheader ---------------------------------------------------------------


def test_send_step_carries_subject_and_preheader() -> None:
    parsed = journey(
        HEAD
        + """
  - send_email:
      id: thanks
      template: welcome
      subject: "Slides from {{ entry.properties.webinar_title }}"
      preheader: "Thanks, {{ contact.first_name | default('there', true) }}"
"""
    )
    step = parsed.steps[0]
    assert isinstance(step, SendEmailStep)
    assert step.send_email.subject == "Slides from {{ entry.properties.webinar_title }}"
    assert step.send_email.preheader == "Thanks, {{ contact.first_name | default('there', true) }}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "subject",
            "Hi {{ contact.first_name ",
            r"steps\[0\]\.send_email\.subject: is not a valid Jinja2 template",
        ),
        ("preheader", "{% if x %}open", r"steps\[0\]\.send_email\.preheader: is not a valid Jinja2 template"),
        ("subject", "two\nlines", r"steps\[0\]\.send_email\.subject: must be one line"),
        ("subject", "", r"steps\[0\]\.send_email\.subject: .*at least 1 character"),
    ],
)
def test_bad_subject_or_preheader_is_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(JourneyError, match=message):
        journey(with_step({"send_email": {"id": "a", "template": "welcome", field: value}}))


# --- wait_until: at, event_property, offsets ---------------------------------------------------------


def test_wait_until_at_and_event_property_forms() -> None:
    parsed = journey(
        HEAD
        + NEW_WAIT_UNTIL_FORMS
        + "  - wait_until: {event_property: starts_at, offset_days: 1, offset_hours: 2}\n"
    )
    at, before, after = (s.wait_until for s in parsed.steps if isinstance(s, WaitUntilStep))
    assert at.at == datetime(2026, 3, 12, 16, 0, tzinfo=UTC)
    assert (before.event_property, before.offset_seconds) == ("starts_at", -3600)
    assert after.offset_seconds == 26 * 3600
    assert before.describe() == "starts_at -1 hours"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"at": "2026-03-12T17:00:00"},
            r"steps\[0\]\.wait_until: at: '2026-03-12T17:00:00' needs its UTC offset",
        ),
        ({"at": "next thursday"}, r"steps\[0\]\.wait_until: at: 'next thursday' needs its UTC offset"),
        ({"at": "2026-13-40T17:00:00Z"}, r"steps\[0\]\.wait_until\.at: "),
        ({"time": "10:00", "at": "2026-03-12T17:00:00Z"}, r"give only one of time / at"),
        (
            {"attribute": "renewal_date", "event_property": "starts_at"},
            r"give only one of attribute / event_property",
        ),
        (
            {"at": "2026-03-12T17:00:00Z", "event_property": "starts_at"},
            r"give only one of at / event_property",
        ),
        ({"time": "10:00", "event_property": "starts_at"}, r"give only one of time / event_property"),
        ({"at": "2026-03-12T17:00:00Z", "offset_hours": -1}, r"'offset_days'/'offset_hours' shift a date"),
        ({"time": "10:00", "offset_hours": 2}, r"'offset_days'/'offset_hours' shift a date"),
        ({"event_property": "starts-at"}, r"steps\[0\]\.wait_until\.event_property: "),
        ({"event_property": "starts_at", "weekdays": ["mon"]}, r"'weekdays' needs a 'time'"),
        ({}, r"steps\[0\]\.wait_until: give one of: a time of day"),
    ],
)
def test_wait_until_forms_do_not_mix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(JourneyError, match=message):
        journey(with_step({"wait_until": spec}))


def test_unnamed_new_wait_until_forms_get_readable_state_names() -> None:
    from leadflow.journeys.compiler import compile_journey

    parsed = journey(HEAD + NEW_WAIT_UNTIL_FORMS)
    states = json.loads(compile_journey(parsed))["States"]
    assert "Wait until 2026-03-12T17:00:00+01:00" in states
    assert "Wait until starts_at -1 hours" in states
    assert not [name for name in states if "None" in name]


def test_event_property_needs_an_event_entry() -> None:
    text = HEAD.replace("{event: webinar_registered}", "{stage: mql}")
    message = refused(
        text + "  - wait: {days: 1}\n  - wait_until: {event_property: starts_at, offset_hours: -1}"
    )
    assert message == (
        "journeys/test.yaml: steps[1].wait_until.event_property: this journey is not entered by an event "
        "(stage entry): there is no entry event to read 'starts_at' from"
    )
    mixed = HEAD.replace("{event: webinar_registered}", "{any: [{stage: mql}, {event: webinar_registered}]}")
    assert journey(mixed + "  - wait_until: {event_property: starts_at}").entry.kind == "any"


BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)


def test_wait_until_time_of_the_new_forms() -> None:
    an_hour_before = WaitUntil.model_validate({"event_property": "starts_at", "offset_hours": -1})
    assert wait_until_time(NOW, BERLIN, an_hour_before, "2026-03-12T17:00:00+01:00") == datetime(
        2026, 3, 12, 15, 0, tzinfo=UTC
    )
    # a property without an offset is in the contact's zone; an unusable or missing one continues at once
    assert wait_until_time(NOW, BERLIN, an_hour_before, "2026-03-12T17:00:00") == datetime(
        2026, 3, 12, 15, 0, tzinfo=UTC
    )
    assert wait_until_time(NOW, BERLIN, an_hour_before, "soon") == NOW
    assert wait_until_time(NOW, BERLIN, an_hour_before, None) == NOW
    # registered 30 minutes before the start: the reminder time is past, it goes at once
    assert wait_until_time(NOW, BERLIN, an_hour_before, (NOW + timedelta(minutes=30)).isoformat()) == NOW
    fixed = WaitUntil.model_validate({"at": "2026-03-20T18:00:00+01:00"})
    assert wait_until_time(NOW, BERLIN, fixed, None) == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
    past = WaitUntil.model_validate({"at": "2026-01-01T00:00:00Z"})
    assert wait_until_time(NOW, BERLIN, past, None) == NOW


# --- wait_for count_from ------------------------------------------------------------------------------


def test_wait_for_count_from() -> None:
    parsed = journey(
        HEAD
        + """
  - send_email: {id: hello, template: welcome}
  - wait_for: {id: came, event: webinar_attended, timeout: {hours: 4}, count_from: entry}
  - wait_for: {id: again, event: webinar_attended, timeout: {hours: 4}}
"""
    )
    came, again = (s.wait_for for s in parsed.steps if isinstance(s, WaitForStep))
    assert (came.count_from, again.count_from) == ("entry", "wait")
    with pytest.raises(
        JourneyError, match=r"steps\[0\]\.wait_for\.count_from: Input should be 'wait' or 'entry'"
    ):
        journey(HEAD + "  - wait_for: {id: w, event: e, timeout: {hours: 1}, count_from: start}")


# --- entry any ------------------------------------------------------------------------------------------


def test_entry_on_any_of_several_triggers() -> None:
    parsed = journey(
        """
id: hot
name: Hot leads
entry:
  any: [{score_reaches: 40}, {stage: mql}, {event: form_submitted, where: {form_id: demo}}]
  if: {not: {tag: employee}}
steps: [{notify_sales: {reason: hot}}]
"""
    )
    entry = parsed.entry
    assert entry.kind == "any"
    assert [t.kind for t in entry.triggers] == ["score", "stage", "event"]
    assert entry.event_types == ["form_submitted"]
    assert entry.matches("form_submitted", {"form_id": "demo"})
    assert not entry.matches("form_submitted", {"form_id": "newsletter"})
    assert entry.if_ is not None
    single = journey(HEAD + "  - end: true").entry
    assert single.kind == "event"
    assert [t.event for t in single.triggers] == ["webinar_registered"]


def test_diagram_names_every_trigger_of_an_any_entry() -> None:
    from leadflow.journeys.graph import entry_text, render_svg

    parsed = journey(
        """
id: hot
name: Hot leads
entry:
  any: [{score_reaches: 40}, {stage: mql}, {event: form_submitted, where: {form_id: [demo, trial]}}]
  if: {not: {tag: employee}}
steps: [{notify_sales: {reason: hot}}]
"""
    )
    assert entry_text(parsed) == (
        "Start: score reaches 40 or stage becomes mql or form_submitted where form_id = demo or trial, "
        "if not (tagged employee)"
    )
    assert "Start: score reaches 40 or" in render_svg(parsed)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"any": [{"stage": "mql"}], "stage": "sql"},
            r"entry: 'any' lists the triggers; 'stage' belongs inside",
        ),
        (
            {"any": [{"stage": "mql"}], "where": {"a": 1}},
            r"entry: 'any' lists the triggers; 'where' belongs inside",
        ),
        ({"any": [{"stage": "mql"}, {"manual": True}]}, r"entry: any: 'manual' cannot be combined"),
        ({"any": [{"stage": "mql"}, {"stage": "mql"}]}, r"entry: any\[1\]: the same trigger is listed twice"),
        ({"any": []}, r"entry\.any: List should have at least 1 item"),
        ({"any": [{"stage": "mql", "score_reaches": 3}]}, r"entry\.any\[0\]: give exactly one of"),
        (
            {"any": [{"stage": "mql"}], "if": {"opened": "x"}},
            r"entry: an entry condition cannot test the engagement",
        ),
        (
            {},
            r"entry: give exactly one of: event, stage, score_reaches, segment, manual \(or several under 'any'\)",
        ),
    ],
)
def test_bad_any_entries(entry: dict[str, Any], message: str) -> None:
    text = yaml.safe_dump({"id": "t", "name": "T", "entry": entry, "steps": [{"end": True}]})
    with pytest.raises(JourneyError, match=message):
        journey(text)


# --- engagement conditions --------------------------------------------------------------------------------


AFTER_SPLIT = """
id: thanks
name: Thanks
entry: {event: webinar_attended}
steps:
  - random_split:
      name: Thank-you test
      paths:
        - {weight: 1, steps: [{send_email: {id: thanks_a, template: welcome}}]}
        - {weight: 1, steps: [{send_email: {id: thanks_b, template: welcome, subject: "Thanks!"}}]}
  - wait_for:
      id: replied
      event: survey_answered
      timeout: {days: 1}
      on_event: [{send_email: {id: reward, template: welcome}}]
  - wait: {days: 2}
  - branch:
      name: Clicked any thank-you?
      if: {any: [{clicked: [thanks_a, thanks_b]}, {opened: reward}]}
      then: [{update_contact: {add_tags: [engaged]}}]
      else: []
"""


def test_a_branch_may_test_sends_inside_earlier_paths() -> None:
    parsed = journey(AFTER_SPLIT)
    assert [parsed.step_id(s) for s in parsed.steps][-1] == "branch_1"


def engagement(data: dict[str, dict[str, str]]) -> Facts:
    return Facts(profile={}, now=NOW, engagement=lambda step: data.get(step, {}))


def test_engagement_lists_are_any_of_and_unsent_steps_did_not_engage() -> None:
    parsed = journey(AFTER_SPLIT)
    branch = parsed.steps[-1]
    assert isinstance(branch, BranchStep)
    assert branch.branch.if_ is not None
    condition = branch.branch.if_
    # the contact took path b (thanks_a never ran: no message) and clicked it
    assert evaluate(condition, engagement({"thanks_b": {"first_clicked_at": "2026-03-12T10:00:00Z"}}))
    # opened but did not click either variant, and never reached the reward
    assert not evaluate(condition, engagement({"thanks_a": {"first_opened_at": "2026-03-12T10:00:00Z"}}))
    assert evaluate(condition, engagement({"reward": {"first_opened_at": "2026-03-12T10:00:00Z"}}))
    assert not evaluate(condition, engagement({}))


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            {"clicked": ["thanks_a", "thanks_c"]},
            r"no send_email step has the id 'thanks_c' \(did you mean 'thanks_[ab]'\?\)",
        ),
        ({"opened": "replied"}, r"'replied' is a wait_for step, not a send_email step"),
        ({"opened": "later"}, r"send_email 'later' does not run before this branch"),
        ({"clicked": "text"}, r"'text' sends an SMS: only emails are opened or clicked"),
        ({"clicked": []}, r"List should have at least 1 item"),
        ({"clicked": ["Bad-Id"]}, r"String should match pattern"),
    ],
)
def test_engagement_refusals_say_what_is_wrong(condition: dict[str, Any], message: str) -> None:
    data: Any = yaml.safe_load(AFTER_SPLIT)
    data["steps"].insert(0, {"send_sms": {"id": "text", "template": "sms-reminder"}})
    data["steps"].append({"branch": {"name": "Later?", "if": condition, "then": [], "else": []}})
    data["steps"].append({"send_email": {"id": "later", "template": "welcome"}})
    with pytest.raises(JourneyError, match=r"journeys/test\.yaml: steps\[5\]\.branch\.if") as caught:
        parse_journey(data, "journeys/test.yaml")
    assert caught.match(message)


def test_a_path_cannot_test_the_send_of_another_path() -> None:
    message = refused(
        HEAD
        + """
  - random_split:
      name: s
      paths:
        - {weight: 1, steps: [{send_email: {id: a, template: welcome}}]}
        - {weight: 1, steps: [{branch: {name: b, if: {clicked: a}, then: [], else: []}}]}
"""
    )
    assert (
        "steps[0].random_split.path2[0].branch.if: send_email 'a' does not run before this branch" in message
    )


# --- branch default, step types ---------------------------------------------------------------------------


def test_multi_way_branch_needs_default() -> None:
    cases = "  - branch: {name: Temperature, cases: [{if: {score: {gte: 50}}, steps: [{end: true}]}]}"
    message = refused(HEAD + cases)
    assert "steps[0].branch: a branch with 'cases' needs 'default'" in message
    assert "'default: []' continues after the branch" in message
    parsed = journey(HEAD + cases[:-1] + ", default: []}")
    branch = parsed.steps[0]
    assert isinstance(branch, BranchStep)
    assert branch.branch.paths()[-1] == ("default", [])


@pytest.mark.parametrize(
    ("step", "message", "lists_kinds"),
    [
        (
            {"wiat_for": {"id": "w"}},
            r"steps\[1\]: unknown step type 'wiat_for' \(did you mean 'wait_for'\?\)",
            False,
        ),
        (
            {"send_emails": {"id": "w"}},
            r"steps\[1\]: unknown step type 'send_emails' \(did you mean 'send_email'\?\)",
            False,
        ),
        (
            {"pause": 1},
            r"steps\[1\]: unknown step type 'pause' \(step types: send_email, send_sms, wait, ",
            True,
        ),
        (
            {"wait": {"days": 1}, "end": True},
            r"steps\[1\]: a step has exactly one step type, this one has wait and end",
            False,
        ),
        ("wait", r"steps\[1\]: a step is a mapping with one step type as its key", True),
    ],
)
def test_a_bad_step_type_is_named(step: Any, message: str, lists_kinds: bool) -> None:
    data: Any = yaml.safe_load(HEAD + "  - send_email: {id: hello, template: welcome}")
    data["steps"].append(step)
    with pytest.raises(JourneyError, match=message) as caught:
        parse_journey(data, "journeys/test.yaml")
    assert ("send_email, send_sms, wait, wait_until" in str(caught.value)) == lists_kinds


def test_nested_typo_names_the_path() -> None:
    message = refused(
        HEAD
        + """
  - wait_for:
      id: w
      event: e
      timeout: {days: 1}
      on_timeout: [{sned_sms: {id: s, template: sms-reminder}}]
"""
    )
    assert (
        "steps[0].wait_for.on_timeout[0]: unknown step type 'sned_sms' (did you mean 'send_sms'?)" in message
    )


def test_every_step_order_problem_is_reported_not_only_the_first() -> None:
    message = refused(
        HEAD
        + """
  - branch: {name: "First?", if: {opened: later}, then: [], else: []}
  - branch: {name: "Second?", if: {clicked: s2x}, then: [], else: []}
  - send_email: {id: later, template: welcome}
  - branch: {name: "Third?", if: {opened: nothing_here}, then: [], else: []}
  - end: true
  - wait: {days: 1}
"""
    )
    assert "steps[0].branch.if: send_email 'later' does not run before this branch" in message
    assert "steps[1].branch.if: no send_email step has the id 's2x'" in message
    assert "steps[3].branch.if: no send_email step has the id 'nothing_here'" in message
    assert "steps[4]: 'end' must be the last step of its list" in message
