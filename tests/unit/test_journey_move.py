"""``on_change: {move_to_new: {OLD_STEP: NEW_STEP}}``: the language, what it compiles to, and the
ids a moved execution derives (the runtime move is ``tests/integration/test_journey_move.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from leadflow.journeys import JourneyError, compile_journey, load_journeys
from leadflow.journeys.compiler import RESUME, waiting_steps
from leadflow.journeys.model import parse_journey
from leadflow.kernel import ids

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "id": "trial",
    "name": "Trial",
    "entry": {"event": "trial_started"},
    "settings": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
    "steps": [
        {"send_email": {"id": "welcome", "template": "trial-welcome"}},
        {"wait_until": {"id": "tuesday", "time": "10:00", "weekdays": ["tue"]}},
        {
            "wait_for": {
                "id": "activation",
                "event": "product_used",
                "timeout": {"days": 2},
                "on_timeout": [{"send_sms": {"id": "sms_tip", "template": "sms-reminder"}}],
            }
        },
        {"wait": {"id": "pause", "days": 2}},
        {
            "random_split": {
                "id": "offer_test",
                "name": "Offer test",
                "paths": [
                    {"weight": 1, "steps": [{"send_email": {"id": "offer_a", "template": "trial-offer"}}]},
                    {"weight": 1, "steps": [{"send_email": {"id": "offer_b", "template": "trial-offer"}}]},
                ],
            }
        },
        {"branch": {"id": "warm", "name": "Warm?", "if": {"tag": "hot"}, "then": [], "else": []}},
    ],
}


def journey_with(move: dict[str, str]) -> Any:
    return parse_journey({**BASE, "on_change": {"move_to_new": move}}, "trial.yaml")


def states_of(journey: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(compile_journey(journey))
    return result


def test_targets_must_be_written_ids_of_steps_an_execution_can_begin_at() -> None:
    ok = journey_with({"first_report": "activation", "cooling": "pause"})
    assert ok.on_change_mode == "move_to_new"
    assert ok.move_to_new == {"first_report": "activation", "cooling": "pause"}
    with pytest.raises(JourneyError) as problems:
        journey_with({"a": "activaton", "b": "warm", "c": "offer_test", "d": "holdout_1"})
    assert str(problems.value) == (
        "trial.yaml: on_change.move_to_new.a: no step of this journey has the id 'activaton' "
        "(did you mean 'activation'?); "
        "on_change.move_to_new.b: 'warm' is a branch step; contacts can be moved to a send_email, "
        "send_sms, wait, wait_until or wait_for step; "
        "on_change.move_to_new.c: 'offer_test' is a random_split step; contacts can be moved to a "
        "send_email, send_sms, wait, wait_until or wait_for step; "
        "on_change.move_to_new.d: no step of this journey has the id 'holdout_1'"
    )
    steps = [*BASE["steps"], {"wait": {"days": 1}}]
    with pytest.raises(JourneyError, match="'wait_1' is not an id written in this file: give the step an id"):
        parse_journey({**BASE, "steps": steps, "on_change": {"move_to_new": {"x": "wait_1"}}}, "trial.yaml")


@pytest.mark.parametrize(
    ("on_change", "problem"),
    [
        ({"move_to_new": {}}, "on_change.move_to_new: Dictionary should have at least 1 item"),
        ({"move_to_new": {"Old": "pause"}}, "on_change.move_to_new.Old.[key]: String should match pattern"),
        ({"move_to_new": ["pause"]}, "on_change.move_to_new: Input should be a valid dictionary"),
        ({"move": {"a": "pause"}}, "on_change: 'move': give 'finish_on_old' or 'exit', or {move_to_new"),
        ("move_to_new", "on_change: 'move_to_new': give 'finish_on_old' or 'exit', or {move_to_new"),
    ],
)
def test_a_malformed_mapping_is_refused_with_the_field_named(on_change: Any, problem: str) -> None:
    with pytest.raises(JourneyError) as refused:
        parse_journey({**BASE, "on_change": on_change}, "trial.yaml")
    assert str(refused.value).startswith(f"trial.yaml: {problem}")


def test_only_journeys_that_move_contacts_get_the_resume_choice() -> None:
    plain = states_of(parse_journey(BASE, "trial.yaml"))
    assert plain["StartAt"] == "Send email: welcome"
    assert RESUME not in plain["States"]
    for journey in load_journeys(ROOT / "journeys"):  # the shipped journeys: no new state
        definition = states_of(journey)
        assert RESUME not in definition["States"]
        assert not any("resume_at" in json.dumps(s) for s in definition["States"].values())
    moving = states_of(journey_with({"first_report": "activation", "cooling": "pause"}))
    assert moving["StartAt"] == RESUME
    choice = moving["States"][RESUME]
    assert choice["Default"] == "Send email: welcome"  # every new contact starts as before
    assert choice["Choices"] == [
        {
            "And": [
                {"Variable": "$.resume_at", "IsPresent": True},
                {"Variable": "$.resume_at", "StringEquals": "activation"},
            ],
            "Next": "Wait for product_used",
        },
        {
            "And": [
                {"Variable": "$.resume_at", "IsPresent": True},
                {"Variable": "$.resume_at", "StringEquals": "pause"},
            ],
            "Next": "Wait 2 days",
        },
    ]


INPUT_FIELDS = {"contact_id", "journey_id", "entry_event_id", "round", "buckets"}
"""What the input of an execution carries (trigger's StartExecution; a moved one the same)."""


def _reads(state: dict[str, Any]) -> set[str]:
    """The top-level fields of the state's data a state reads (``$.x...`` paths; not ``$$``)."""
    text = json.dumps({k: v for k, v in state.items() if k not in ("Catch", "ResultPath", "ResultSelector")})
    return set(re.findall(r'"\$\.([a-z_]+)', text))


@pytest.mark.parametrize(
    ("target", "entry"),
    [
        ("welcome", "Send email: welcome"),
        ("tuesday", "Plan: Wait until 10:00 on Tue"),
        ("activation", "Wait for product_used"),
        ("pause", "Wait 2 days"),
        ("sms_tip", "Send SMS: sms_tip"),
        ("offer_b", "Send email: offer_b"),
    ],
)
def test_every_target_begins_at_a_state_of_its_own_that_needs_only_the_input(target: str, entry: str) -> None:
    """A send followed by a ``wait_until`` plans it, and a split of single sends is one task: a
    target inside such a fold gets its states unfolded so an execution can begin exactly there."""
    states = states_of(journey_with({"old": target}))["States"]
    [choice] = states[RESUME]["Choices"]
    assert choice["Next"] == entry
    assert _reads(states[entry]) <= INPUT_FIELDS, _reads(states[entry])
    assert set(waiting_steps({"States": states}).values()) >= {"tuesday", "activation", "pause", "welcome"}


def test_the_split_and_the_planned_wait_stay_folded_when_nobody_moves_there() -> None:
    states = states_of(journey_with({"old": "pause"}))["States"]
    assert "Plan: Wait until 10:00 on Tue" not in states  # the welcome send plans it
    assert "Send email: offer_a" not in states  # one task sends the split's variant


def test_every_waiting_state_names_its_step() -> None:
    """Wait states say their step in ``Comment``; callback tasks carry it in their payload."""
    [trial] = [j for j in load_journeys(ROOT / "journeys") if j.id == "trial-nurture"]
    waiting = waiting_steps(json.loads(compile_journey(trial)))
    assert waiting == {
        "Wait for send window: trial welcome": "trial_welcome",
        "Wait for first report": "first_report",
        "Wait for send window: Tips email test": "random_split_1",
        "Wait 4 days": "wait_1",
        # the branch decides and sends the last call in one task: its deferral is the branch's
        "Wait for send window: How warm is the lead?": "branch_1",
        "Wait until 10:00 on Tue/Thu": "wait_until_1",
        "Wait for send window: offer holdout": "holdout_1",
    }


def test_a_moved_execution_derives_its_ids_from_the_one_it_continues() -> None:
    arn = "arn:aws:states:eu-west-1:1:execution:leadflow-prod-trial:trial-c01abc-2"
    moved = ids.moved_execution_name("trial-c01abc-2", 3)
    assert moved == "trial-c01abc-2.v3"
    assert ids.moved_execution_name(moved, 4) == "trial-c01abc-2.v4"  # moved again: same lineage
    assert ids.lineage(arn.replace("trial-c01abc-2", moved)) == arn
    assert ids.lineage(arn) == arn
    assert ids.lineage("broadcast:b1:c01abc") == "broadcast:b1:c01abc"


class History:
    """GetExecutionHistory as Step Functions answers it: ``reverseOrder`` newest first, pages of
    ``maxResults`` with a ``nextToken`` (the local runtime answers one page, oldest first)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = [{"id": i + 1, **e} for i, e in enumerate(events)]
        self.pages = 0

    def get_execution_history(self, **params: Any) -> dict[str, Any]:
        self.pages += 1
        ordered = list(reversed(self.events)) if params.get("reverseOrder") else self.events
        start = int(params.get("nextToken") or 0)
        end = start + int(params["maxResults"])
        page: dict[str, Any] = {"events": ordered[start:end]}
        if end < len(ordered):
            page["nextToken"] = str(end)
        return page


def _entered(kind: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": f"{kind}StateEntered",
        "stateEnteredEventDetails": {"name": name, "input": json.dumps(data)},
    }


def test_where_an_execution_waits_is_its_newest_state_entered() -> None:
    from leadflow.ops.changes import current_state

    long_loop = []
    for n in range(150):  # a long history: the answer is on the first page, read newest first
        long_loop += [
            _entered("Wait", "Wait 1 day", {"round": {"n": n}}),
            {"type": "WaitStateExited", "stateExitedEventDetails": {"name": "Wait 1 day"}},
            _entered("Pass", "Repeat from Wait 1 day", {"round": {"n": n}}),
            {"type": "PassStateExited", "stateExitedEventDetails": {"name": "Repeat from Wait 1 day"}},
        ]
    waiting = History(
        [{"type": "ExecutionStarted"}, *long_loop, _entered("Wait", "Wait 1 day", {"round": {"n": 150}})]
    )
    assert current_state(waiting, "arn") == ("Wait 1 day", {"round": {"n": 150}})
    assert waiting.pages == 1
    callback = History(
        [
            {"type": "ExecutionStarted"},
            _entered("Task", "Wait for product_used", {"contact_id": "c1"}),
            {"type": "TaskScheduled"},
            {"type": "TaskStarted"},
            {"type": "TaskSubmitted"},
        ]
    )
    assert current_state(callback, "arn") == ("Wait for product_used", {"contact_id": "c1"})
    between = History([{"type": "ExecutionStarted"}, *long_loop[:2]])  # left a state, not in the next
    assert current_state(between, "arn") is None


def test_a_journey_that_moves_contacts_passes_statelint(tmp_path: Path) -> None:
    import subprocess
    import sys

    journey = journey_with({"first_report": "activation", "cooling": "pause", "x": "tuesday", "y": "offer_b"})
    path = tmp_path / "trial.asl.json"
    path.write_text(compile_journey(journey))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "statelint"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
