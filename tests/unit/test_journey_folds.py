"""Decisions folded into the tasks that act on them (compiled ASL shape): a ``random_split`` of one
send per path, a ``holdout`` before the final send, a ``branch`` whose paths start with a send or a
contact update. Every shipped journey compiles statelint-clean with the folds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from leadflow.journeys import compile_journey, load_journeys, parse_journey
from leadflow.local.system import ROOT
from tests.unit.test_language_additions import HEAD


def compiled(text: str, fold: bool = True) -> dict[str, Any]:
    journey = parse_journey(yaml.safe_load(text), "t.yaml")
    states: dict[str, Any] = json.loads(compile_journey(journey, fold=fold))["States"]
    return states


def test_every_shipped_journey_compiles_statelint_clean(tmp_path: Path) -> None:
    files = []
    for journey in load_journeys(ROOT / "journeys"):
        path = tmp_path / f"{journey.id}.asl.json"
        path.write_text(compile_journey(journey, templates_dir=ROOT / "templates"))  # as deployed
        files.append(str(path))
    assert len(files) >= 6
    result = subprocess.run(
        [str(Path(sys.executable).parent / "statelint"), *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_trial_nurture_branch_decides_and_acts_then_routes_only_the_hot_path() -> None:
    [trial] = [j for j in load_journeys(ROOT / "journeys") if j.id == "trial-nurture"]
    states = json.loads(compile_journey(trial))["States"]
    task = states["Evaluate: How warm is the lead?"]
    act = task["Parameters"]["Payload"]["step"]["act"]
    assert act["case1"]["action"] == "update_contact"  # hot: stage mql, then notify sales
    assert act["case2"] is None  # engaged: nothing
    assert (act["default"]["action"], act["default"]["step_id"]) == ("send_email", "last_call")
    assert act["default"]["step"]["deferrable"] is True
    assert task["ResultPath"] == "$.decisions.branch_1"
    # the deferred last call waits for the window and runs the same task again (decision recorded)
    deferral = next(c for c in task["Catch"] if c["ErrorEquals"] == ["SendDeferred"])
    wait = states[states[deferral["Next"]]["Next"]]
    assert wait["Next"] == "Evaluate: How warm is the lead?"
    # a Choice only because the hot path continues differently
    choice = states[task["Next"]]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {
            "Variable": "$.decisions.branch_1.path",
            "StringEquals": "case1",
            "Next": "Notify sales: Trial user showing buying intent",
        },
        {"Variable": "$.decisions.branch_1.path", "StringEquals": "case2", "Next": choice["Default"]},
    ]
    assert choice["Default"].startswith("Plan: ")
    for gone in (
        "Send email: last call",
        "Update contact: stage mql",
        "Held out",
        "Split: Offer subject test",
    ):
        assert gone not in states
    final = states["Holdout: offer holdout"]
    assert final["End"] is True
    assert final["ResultPath"] == "$.decisions.holdout_1"
    assert final["ResultSelector"]["decisions.$"] == "$.Payload.decisions"


SPLIT_WITH_GOTO = (
    HEAD
    + """
  - send_email: {id: hello, template: welcome}
  - random_split:
      name: Test
      paths:
        - {weight: 1, steps: [{send_email: {id: a, template: welcome}}]}
        - {weight: 1, steps: [{send_email: {id: b, template: welcome}}]}
  - wait: {days: 1}
  - branch:
      name: Opened?
      if: {opened: hello}
      then: [{goto: b}]
      else: []
"""
)


def test_a_step_a_goto_jumps_to_keeps_its_own_state() -> None:
    states = compiled(SPLIT_WITH_GOTO)
    assert states["Split: Test"]["Type"] == "Choice"  # b is a goto target: not folded
    assert "Send email: b" in states
    assert states["Evaluate: Opened?"]["Next"] == "Opened?"  # a goto path: not foldable


def test_unfolded_definition_keeps_every_decision_a_state() -> None:
    text = (ROOT / "journeys" / "welcome.yaml").read_text()
    states = compiled(text, fold=False)
    assert states["Opened or clicked the welcome email?"]["Type"] == "Choice"
    assert "Send email: nudge follow-up" in states


def test_a_send_plans_the_wait_until_after_it() -> None:
    [webinar] = [j for j in load_journeys(ROOT / "journeys") if j.id == "webinar"]
    states = json.loads(compile_journey(webinar))["States"]
    send = states["Send email: registration confirmed"]
    plan = send["Parameters"]["Payload"]["step"]["plan"]
    assert (plan["event_property"], plan["offset_hours"]) == ("starts_at", -1)
    assert send["ResultSelector"]["at.$"] == "$.Payload.at"
    wait = states[send["Next"]]
    assert wait == {
        "Type": "Wait",
        "Comment": "step one_hour_before",  # the wait_until's own step (on_change: move_to_new reads it)
        "TimestampPath": "$.steps.registered.at",
        "Next": "Send SMS: SMS reminder",
    }
    assert not [name for name in states if name.startswith("Plan: ")]
