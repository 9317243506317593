"""The full journey language: every step type validates, compiles to statelint-clean ASL with
readable state names, and bad files get errors that name the file, the step and the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from leadflow.journeys import JourneyError, compile_journey, load_journeys, parse_journey
from leadflow.journeys.conditions import Facts, evaluate
from leadflow.journeys.model import FrequencyCap, QuietHours, SendWindow, WaitUntil
from leadflow.journeys.timing import next_send_time, wait_until_time

ROOT = Path(__file__).resolve().parents[2]

EVERY_STEP = """
id: everything
name: Every step type
entry:
  event: form_submitted
  where: {form_id: [demo, trial]}
  if: {not: {tag: employee}}
re_entry: {after: {days: 30}}
exit:
  events: [{event: purchase, where: {plan: pro}}]
  stages: [customer]
  if: {attribute: country, in: [KP]}
settings:
  timezone: America/New_York
  quiet_hours: {start: "20:00", end: "09:00"}
  send_window: {weekdays: [mon, tue, wed, thu, fri]}
  frequency_cap: {per_day: 1, per_week: 3}
  max_duration: {days: 120}
steps:
  - send_email: {id: hello, template: welcome}
  - send_sms: {id: text, template: welcome, purpose: transactional}
  - wait: {days: 1, hours: 2}
  - wait_until: {time: "10:30", weekdays: [tue]}
  - wait_until: {attribute: renewal_date, offset_days: -7}
  - wait_for:
      id: demo_booked
      event: demo_booked
      timeout: {days: 5}
      on_event: [{update_contact: {stage: sql, add_points: 30}}]
      on_timeout: [{notify_sales: {reason: no demo after 5 days}}]
  - branch:
      name: Opened hello?
      if: {opened: hello}
      then: [{webhook: {url: "https://crm.example.com/hooks/leadflow", secret: default}}]
      else: []
  - branch:
      name: Lead temperature
      cases:
        - if: {score: {gte: 50}}
          steps: [{update_contact: {add_tags: [hot]}}]
        - if: {did: pricing_viewed, at_least: 2, within: {days: 14}}
          steps: [{update_contact: {add_tags: [warm]}}]
      default: [{goto: hello_again}]
  - random_split:
      name: Offer test
      paths:
        - {weight: 70, steps: [{send_email: {id: offer_a, template: welcome}}]}
        - {weight: 30, steps: [{send_email: {id: offer_b, template: welcome}}]}
  - holdout: {percent: 15}
  - send_email: {id: hello_again, template: welcome-followup-nudge}
  - end: true
"""

# the names EVERY_STEP's steps have both as states and as nodes of the diagram
EVERY_STEP_NAMES = {
    "Send email: hello",
    "Send SMS: text",  # transactional: never deferred
    "Wait 1 day 2 hours",
    "Wait until 10:30 on Tue",
    "Wait for demo_booked",
    "Update contact: stage sql, +30 points",
    "Notify sales: no demo after 5 days",
    "Evaluate: Opened hello?",
    "Opened hello?",
    "Webhook: crm.example.com",
    "Lead temperature?",
    "Split: Offer test",
    "Holdout: 15%",
    "Held out",
}


def data(text: str = EVERY_STEP) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_every_step_type_compiles_to_readable_wired_states() -> None:
    journey = parse_journey(data(), "everything.yaml")
    asl = json.loads(compile_journey(journey))
    states = asl["States"]
    assert asl["TimeoutSeconds"] == 120 * 86400
    assert asl["StartAt"] == "Send email: hello"  # a send that may go now is one task
    expected = EVERY_STEP_NAMES | {
        "Deferred: hello",
        "Wait for send window: hello",
        "Plan: Wait until 10:30 on Tue",
        "Plan: Wait until renewal_date -7 days",
        "Evaluate: Lead temperature",
        "Contact exited",
    }
    assert expected <= set(states)
    # the last step leaves the journey itself: its task ends the execution
    assert states["Send email: hello_again"]["End"] is True
    assert states["Send email: hello_again"]["Parameters"]["Payload"]["leave"] == "completed"
    assert not any(state["Type"] == "Succeed" for state in states.values())  # the leave tasks end it
    # the default case loops forward to the hello_again send
    assert states["Lead temperature?"]["Default"] == "Send email: hello_again"
    # the split of one send per path (weights 70/30) is ONE send task picking the variant by the
    # contact's bucket: no Choice, each variant keeps its step id
    split = states["Split: Offer test"]
    assert split["Type"] == "Task"
    payload = split["Parameters"]["Payload"]
    assert payload["split_bucket.$"] == "$.buckets.random_split_1"
    assert [(v["step_id"], v["below"]) for v in payload["step"]["split"]["variants"]] == [
        ("offer_a", 0.7),
        ("offer_b", 1.0),
    ]
    assert "Send email: offer_a" not in states
    holdout = states["Holdout: 15%"]
    assert holdout["Choices"][0]["NumericLessThan"] == 0.15
    assert holdout["Choices"][0]["Next"] == "Held out"
    # deferral: the send fails with the time, a Pass reads it, a Wait waits, the send runs again
    assert {"ErrorEquals": ["SendDeferred"], "ResultPath": "$.deferred", "Next": "Deferred: hello"} in states[
        "Send email: hello"
    ]["Catch"]
    assert states["Deferred: hello"]["Parameters"] == {"at.$": "States.StringToJson($.deferred.Cause)"}
    assert states["Wait for send window: hello"]["TimestampPath"] == "$.schedule.hello.at.errorMessage"
    assert states["Wait for send window: hello"]["Next"] == "Send email: hello"
    # wait_for: one callback task, the timeout path on States.Timeout
    wait_for = states["Wait for demo_booked"]
    assert wait_for["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait_for["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    assert wait_for["TimeoutSeconds"] == 5 * 86400
    assert wait_for["Catch"][0]["ErrorEquals"] == ["States.Timeout"]
    webhook = states["Webhook: crm.example.com"]
    assert "WebhookFailed" in webhook["Retry"][0]["ErrorEquals"]
    # every task catches exits, and every target exists
    for name, state in states.items():
        if state["Type"] == "Task" and name not in ("Journey complete", "Contact exited", "Held out"):
            assert state["Catch"][-1]["ErrorEquals"] == ["ContactExited"], name
        for target in [state.get("Next"), state.get("Default")] + [
            c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])
        ]:
            assert target is None or target in states, (name, target)
        assert len(name) <= 80


def test_shipped_and_test_journeys_pass_statelint(tmp_path: Path) -> None:
    journeys = [*load_journeys(ROOT / "journeys"), parse_journey(data(), "everything.yaml")]
    loop = data()
    loop["id"] = "loop"
    loop["steps"][-1] = {"goto": "text"}  # back to an earlier step, with waits on the way
    journeys.append(parse_journey(loop, "loop.yaml"))
    files = []
    for journey in journeys:
        path = tmp_path / f"{journey.id}.asl.json"
        path.write_text(compile_journey(journey))
        files.append(str(path))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "statelint"), *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    looped = json.loads((tmp_path / "loop.asl.json").read_text())["States"]
    repeat = looped["Repeat from text"]
    assert repeat["Type"] == "Pass"
    assert repeat["Next"] == "Send SMS: text"
    assert repeat["Parameters"] == {"n.$": "States.MathAdd($.round.n, 1)"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["entry"].update(stage="mql"), r"entry: give exactly one of: event, stage"),
        (lambda d: d.update(re_entry="sometimes"), r"re_entry"),
        (lambda d: d["settings"].update(timezone="Mars/Olympus"), r"settings\.timezone: unknown time zone"),
        (lambda d: d["settings"]["quiet_hours"].update(start="25:00"), r"quiet_hours\.start: .*HH:MM"),
        (
            lambda d: d["steps"][3]["wait_until"].update(time=None),
            r"steps\[3\]\.wait_until: give one of: a time of day",
        ),
        (
            lambda d: (
                d["steps"][5]["wait_for"]["check_every"].update({"seconds": 10})
                if "check_every" in d["steps"][5]["wait_for"]
                else d["steps"][5]["wait_for"].update(check_every={"seconds": 10})
            ),
            r"steps\[5\]\.wait_for: check_every: must be at least 1 minute",
        ),
        (
            lambda d: d["steps"][6]["branch"].update({"if": {"clicked": "offer_a"}}),
            r"steps\[6\]\.branch\.if: send_email 'offer_a' does not run before this branch",
        ),
        (
            lambda d: d["steps"][7]["branch"].update({"then": [{"end": True}]}),
            r"steps\[7\]\.branch: 'then'/'else' belong to an 'if' branch",
        ),
        (
            lambda d: d["steps"][7]["branch"]["default"].__setitem__(0, {"goto": "nowhere"}),
            r"goto: no step has the id 'nowhere'",
        ),
        (
            lambda d: d["steps"].__setitem__(-1, {"goto": "offer_a"}),
            r"going back to 'offer_a' needs a wait",
        ),
        (lambda d: d["steps"][9]["holdout"].update(percent=100), r"steps\[9\]\.holdout\.percent"),
        (
            lambda d: d["steps"][8]["random_split"]["paths"].pop(),
            r"steps\[8\]\.random_split\.paths: List should have at least 2 items",
        ),
        (
            lambda d: d["steps"][5]["wait_for"]["on_event"][0]["update_contact"].update(set={"email": "x"}),
            r"attribute 'email' is managed by leadflow",
        ),
        (
            lambda d: d["steps"][5]["wait_for"]["on_event"][0]["update_contact"].update(
                add_tags=["hot"], remove_tags=["cold"]
            ),
            r"add_tags and remove_tags in one step: use two update_contact steps",
        ),
        (
            lambda d: d["steps"][5]["wait_for"]["on_event"][0]["update_contact"].update(
                set={"plan": "pro"}, unset=["plan"]
            ),
            r"attribute 'plan' is both set and unset",
        ),
        (
            lambda d: d["steps"][6]["branch"]["then"][0]["webhook"].update(url="http://crm.example.com/x"),
            r"webhook\.url: .*https://",
        ),
        (
            lambda d: d["steps"][7]["branch"]["cases"][0].update({"if": {"score": {}}}),
            r"give at least one of eq, ne, gt, gte, lt, lte",
        ),
        (
            lambda d: d["steps"][7]["branch"]["cases"][0].update({"if": {"colour": "red"}}),
            r"a condition has exactly one of",
        ),
        (
            lambda d: d["steps"].insert(0, {"sleep": 1}),
            r"steps\[0\]: unknown step type 'sleep' \(step types: send_email, send_sms, ",
        ),
    ],
)
def test_invalid_journeys_name_file_step_and_problem(mutate: Any, message: str) -> None:
    journey = data()
    mutate(journey)
    with pytest.raises(JourneyError, match=message) as caught:
        parse_journey(journey, "everything.yaml")
    assert str(caught.value).startswith("everything.yaml: ")


def test_conditions_evaluate_against_profile_engagement_and_history() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    facts = Facts(
        profile={"score": 55, "stage": "mql", "tags": ["vip"], "country": "DE", "segments": ["hot"]},
        now=now,
        engagement=lambda step: {"first_clicked_at": "2026-02-27T10:00:00Z"} if step == "hello" else {},
        events=lambda since: [
            {"type": "pricing_viewed", "occurred_at": "2026-02-28T10:00:00Z", "properties": {"plan": "pro"}},
            {"type": "pricing_viewed", "occurred_at": "2026-02-20T10:00:00Z", "properties": {}},
        ],
    )

    def parse(c):
        return (
            parse_journey(
                {
                    "id": "c",
                    "name": "c",
                    "entry": {"event": "x"},
                    "steps": [
                        {"send_email": {"id": "hello", "template": "t"}},
                        {"branch": {"name": "b", "if": c}},
                    ],
                },
                "c.yaml",
            )
            .steps[1]
            .branch.if_
        )  # type: ignore[union-attr]

    truths = {
        "clicked": {"clicked": "hello"},
        "opened_or_clicked": {"opened_or_clicked": "hello"},
        "score": {"score": {"gte": 50, "lt": 60}},
        "stage": {"stage": ["mql", "sql"]},
        "tag": {"tag": "vip"},
        "segment": {"segment": "hot"},
        "attribute": {"attribute": "country", "in": ["DE", "AT"]},
        "did": {"did": "pricing_viewed", "where": {"plan": "pro"}},
        "all": {"all": [{"tag": "vip"}, {"not": {"stage": "customer"}}]},
    }
    falsities = {
        "opened": {"opened": "hello"},
        "did within": {"did": "pricing_viewed", "at_least": 2, "within": {"days": 7}},
        "any": {"any": [{"tag": "student"}, {"attribute": "country", "exists": False}]},
        "gt": {"attribute": "score", "gt": 55},
    }
    for name, condition in truths.items():
        assert evaluate(parse(condition), facts), name
    for name, condition in falsities.items():
        assert not evaluate(parse(condition), facts), name


def test_a_compiled_condition_keeps_the_keys_in_the_languages_order() -> None:
    """A branch's condition is in the deployed definition as written in the language's field order;
    the definition's hash (a deploy publishes a new version when it changes) depends on that order."""
    branch = {
        "any": [
            {"attribute": "score", "lte": 90, "gt": 10, "contains": "x", "equals": "y"},
            {"score": {"lte": 5, "gt": 1, "ne": 3, "eq": 2}},
        ]
    }
    journey = parse_journey(
        {"id": "c", "name": "c", "entry": {"event": "x"}, "steps": [{"branch": {"name": "b", "if": branch}}]},
        "c.yaml",
    )
    asl = json.loads(compile_journey(journey))
    [task] = [
        s
        for s in asl["States"].values()
        if s.get("Parameters", {}).get("Payload", {}).get("action") == "evaluate"
    ]
    attribute, score = task["Parameters"]["Payload"]["step"]["if"]["any"]
    assert list(attribute) == ["attribute", "equals", "contains", "gt", "lte"]
    assert list(score["score"]) == ["eq", "ne", "gt", "lte"]


BERLIN = ZoneInfo("Europe/Berlin")


def test_next_send_time_respects_quiet_hours_window_and_caps() -> None:
    def at(*args: int) -> datetime:
        return datetime(*args, tzinfo=UTC)

    quiet = QuietHours(start="21:00", end="08:00")
    window = SendWindow(weekdays=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    none = {"sent_on_day": lambda d: 0, "sent_in_week": lambda w: 0}
    # Friday 22:30 Berlin: quiet until Saturday 08:00, the window opens Monday 09:00 Berlin
    friday_night = at(2026, 1, 9, 21, 30)
    assert next_send_time(friday_night, BERLIN, quiet=quiet, window=None, cap=None, **none) == at(
        2026, 1, 10, 7, 0
    )
    assert next_send_time(friday_night, BERLIN, quiet=quiet, window=window, cap=None, **none) == at(
        2026, 1, 12, 8, 0
    )
    # inside everything: now
    tuesday = at(2026, 1, 6, 10, 0)
    assert next_send_time(tuesday, BERLIN, quiet=quiet, window=window, cap=None, **none) == tuesday
    # a full day moves to the next day's window, a full week to next Monday's
    cap = FrequencyCap(per_day=1, per_week=3)
    full_day = next_send_time(
        tuesday,
        BERLIN,
        quiet=quiet,
        window=window,
        cap=cap,
        sent_on_day=lambda d: 1 if d == "2026-01-06" else 0,
        sent_in_week=lambda w: 1,
    )
    assert full_day == at(2026, 1, 7, 8, 0)
    full_week = next_send_time(
        tuesday,
        BERLIN,
        quiet=quiet,
        window=window,
        cap=cap,
        sent_on_day=lambda d: 0,
        sent_in_week=lambda w: 3 if w == "2026-W02" else 0,
    )
    assert full_week == at(2026, 1, 12, 8, 0)


def test_wait_until_times_of_day_weekdays_and_dates() -> None:
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # Friday, 13:00 Berlin
    nine = WaitUntil(time="09:00")
    assert wait_until_time(now, BERLIN, nine, None) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    monday = WaitUntil(time="09:00", weekdays=["mon"])
    # across the switch to summer time: 09:00 CEST is 07:00 UTC
    assert wait_until_time(now, BERLIN, monday, None) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    renewal = WaitUntil(attribute="renewal", offset_days=-3, time="10:00")
    assert wait_until_time(now, BERLIN, renewal, "2026-04-10") == datetime(2026, 4, 7, 8, 0, tzinfo=UTC)
    assert wait_until_time(now, BERLIN, renewal, "2026-03-01") == now  # past: at once
    assert wait_until_time(now, BERLIN, renewal, "not a date") == now


def test_send_steps_need_existing_templates(tmp_path: Path) -> None:
    from leadflow.journeys.checks import missing_templates

    for journey in load_journeys(ROOT / "journeys"):
        assert missing_templates(journey, ROOT / "templates") == [], journey.id
    (tmp_path / "welcome").mkdir()
    (tmp_path / "welcome" / "subject.txt").write_text("Hi")
    (tmp_path / "welcome-followup-nudge").mkdir()
    (tmp_path / "welcome-followup-nudge" / "subject.txt").write_text("Hi")
    problems = missing_templates(parse_journey(data(), "everything.yaml"), tmp_path)
    assert "step 'hello': template 'welcome' has neither body.html nor body.txt" in problems
    assert "step 'text': template 'welcome' has no sms.txt" in problems
    assert (
        "step 'hello_again': template 'welcome-followup-nudge' has neither body.html nor body.txt" in problems
    )
