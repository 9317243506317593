"""The journey language and its compiler to ASL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadflow.journeys import JourneyError, compile_journey, load_journey, load_journeys, parse_journey
from leadflow.ops.cli import main

ROOT = Path(__file__).resolve().parents[2]
WELCOME = ROOT / "journeys" / "welcome.yaml"


def welcome_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WELCOME.read_text())
    return data


def test_entry_rule_matches_event_type_and_properties() -> None:
    entry = load_journey(WELCOME).entry
    assert entry.matches("form_submitted", {"form_id": "newsletter", "consent": True})
    assert not entry.matches("form_submitted", {"form_id": "whitepaper"})
    assert not entry.matches("form_submitted", {})
    assert not entry.matches("page_viewed", {"form_id": "newsletter"})


def test_entry_where_accepts_a_list_of_values() -> None:
    data = welcome_data() | {"entry": {"event": "form_submitted", "where": {"form_id": ["a", "b"]}}}
    entry = parse_journey(data, "x.yaml").entry
    assert entry.matches("form_submitted", {"form_id": "b"})
    assert not entry.matches("form_submitted", {"form_id": "c"})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["steps"][0]["send_email"].update(templte="x"),
            r"steps\[0\]\.send_email\.templte: Extra inputs",
        ),
        (lambda d: d["steps"][1]["wait"].update(days=0), r"steps\[1\]\.wait: .*longer than 0"),
        (lambda d: d["steps"][1]["wait"].update(days=400), r"at most 365 days"),
        (lambda d: d["steps"].insert(0, {"jump": 1}), r"steps\[0\]: unknown step type 'jump'"),
        (
            lambda d: d["steps"][2]["branch"].update({"if": {"opened": "nope"}}),
            r"steps\[2\]\.branch\.if: no send_email step has the id 'nope'",
        ),
        (
            lambda d: d["steps"][2]["branch"]["then"][0]["send_email"].update(id="welcome"),
            r"step id 'welcome' is used twice",
        ),
        (lambda d: d.update(id="Bad Id"), r"^bad\.yaml: id: String should match"),
        (lambda d: d["steps"].insert(0, {"end": True}), r"steps\[0\]: 'end' must be the last step"),
    ],
)
def test_invalid_journeys_name_file_step_and_problem(mutate: Any, message: str) -> None:
    data = welcome_data()
    mutate(data)
    with pytest.raises(JourneyError, match=message):
        parse_journey(data, "bad.yaml")


def test_duplicate_journey_ids_across_files(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(WELCOME.read_text())
    with pytest.raises(JourneyError, match="used by more than one file: welcome"):
        load_journeys(tmp_path)


def test_welcome_compiles_to_readable_wired_states() -> None:
    asl = json.loads(compile_journey(load_journey(WELCOME)))
    states = asl["States"]
    assert asl["StartAt"] == "Send email: welcome"
    assert states["Send email: welcome"]["Next"] == "Wait 2 days"
    assert states["Wait 2 days"] == {
        "Type": "Wait",
        "Comment": "step wait_1",  # the step it belongs to (its id, here the automatic one)
        "Seconds": 172800,
        "Next": "Evaluate: Opened or clicked the welcome email?",
    }
    # both paths start with a send and end: ONE task decides, sends the chosen follow-up and
    # leaves the journey (no Choice state); its result carries the path for reports
    evaluate = states["Evaluate: Opened or clicked the welcome email?"]
    assert evaluate["End"] is True
    assert "Next" not in evaluate
    payload = evaluate["Parameters"]["Payload"]
    assert payload["step"]["if"] == {"opened_or_clicked": "welcome"}
    assert payload["step"]["act"]["then"]["step_id"] == "followup_engaged"
    assert payload["step"]["act"]["else"]["step"]["template"] == "welcome-followup-nudge"
    assert payload["leave"] == "completed"
    assert evaluate["ResultPath"] == "$.decisions.branch_1"
    assert evaluate["ResultSelector"]["path.$"] == "$.Payload.path"
    assert evaluate["Comment"] == "opened or clicked welcome"
    assert not [s for s in states.values() if s["Type"] == "Choice"]
    assert "Journey complete" not in states
    assert states["Contact exited"]["Type"] == "Task"
    assert states["Contact exited"]["End"] is True
    assert states["Contact exited"]["Parameters"]["Payload"]["outcome"] == "exited"
    assert "Held out" not in states  # no holdout step: no holdout states
    # every Next points at a state that exists
    for state in states.values():
        for target in [state.get("Next"), state.get("Default")] + [
            c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])
        ]:
            assert target is None or target in states


def test_send_task_follows_the_contract() -> None:
    states = json.loads(compile_journey(load_journey(WELCOME)))["States"]
    task = states["Send email: welcome"]
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert task["Parameters"]["FunctionName"] == "${SendFunctionArn}"
    payload = task["Parameters"]["Payload"]
    assert payload["action"] == "send_email"
    assert payload["step_id"] == "welcome"
    assert payload["step"] == {"template": "welcome", "purpose": "marketing", "channel": "email"}
    assert payload["entry_event_id.$"] == "$.entry_event_id"  # templates read the entry event
    assert payload["contact_id.$"] == "$.contact_id"
    assert payload["execution_id.$"] == "$$.Execution.Id"
    assert payload["round.$"] == "$.round.n"
    assert payload["journey"]["exit"]["unsubscribed"] is True
    assert "SendThrottled" in task["Retry"][0]["ErrorEquals"]
    # only an exit is caught: a failed send fails at its own state (the console shows it, redrive resumes it)
    assert task["Catch"] == [
        {"ErrorEquals": ["ContactExited"], "ResultPath": "$.exit", "Next": "Contact exited"}
    ]


def test_compilation_is_deterministic() -> None:
    journey = load_journey(WELCOME)
    assert compile_journey(journey) == compile_journey(load_journey(WELCOME))


def test_compiled_asl_passes_statelint(tmp_path: Path) -> None:
    variant = welcome_data()
    variant["id"] = "variant"
    variant["steps"][2]["branch"]["if"] = {"clicked": "welcome"}
    variant["steps"][2]["branch"]["then"].append({"wait": {"hours": 3}})
    variant["steps"][2]["branch"]["then"].append({"send_email": {"id": "third", "template": "welcome"}})
    files = []
    for journey in (load_journey(WELCOME), parse_journey(variant, "variant.yaml")):
        path = tmp_path / f"{journey.id}.asl.json"
        path.write_text(compile_journey(journey, templates_dir=ROOT / "templates"))  # as deployed
        files.append(str(path))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "statelint"), *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_compile_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journeys", "compile", str(WELCOME)]) == 0
    assert json.loads(capsys.readouterr().out)["StartAt"] == "Send email: welcome"
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nname: y\n")
    assert main(["journeys", "validate", str(WELCOME), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ok: " in captured.out
    assert "bad.yaml: entry: Field required" in captured.err
