"""Versioned journeys on the local runtime: every deploy publishes a state machine version and
moves the journey's alias; trigger starts executions on the alias; an execution finishes on the
version it started on (its steps, its timings) while new contacts run the new one.

The history is a user's: a contact enters, waits in the middle of the journey, the marketer
changes the journey (a wait made longer, a send removed, another added, a shorter timeout) and
deploys it, a second contact enters the new version, the first one does the awaited thing while
the second is still waiting — and each ends as its own version says."""

from __future__ import annotations

import json
import time
from string import Template
from typing import Any

import pytest

from leadflow.local import sfn_versions
from leadflow.local.system import LocalSystem
from tests.integration.conftest import events_of
from tests.integration.test_journey_runtime import DAY, contact, event, executions, profile, sent

MONDAY_0907_UTC = 1767604020.0  # Monday 2026-01-05 09:07:00 UTC

# the nurture journey: what its versions differ in is a placeholder
NURTURE = Template("""
id: nurture
name: Nurture
entry: {event: form_submitted, where: {form_id: newsletter}}
steps:
  - send_email: {id: hello, template: welcome, purpose: transactional}
  - wait: {days: $wait_days}
  - send_email: {id: $second, template: $second_template, purpose: transactional}
  - wait_for:
      id: pricing
      event: pricing_viewed
      timeout: {days: $timeout_days}
      on_event:
        - update_contact: {add_tags: [${version}_event]}
      on_timeout:
        - update_contact: {add_tags: [${version}_timeout]}
""")

OLD = NURTURE.substitute(
    wait_days=2, second="nudge", second_template="welcome-followup-nudge", timeout_days=3, version="old"
)
NEW = NURTURE.substitute(
    wait_days=5, second="workshop", second_template="welcome-followup-engaged", timeout_days=1, version="new"
)

WELCOME = "Welcome to Northwind Analytics, Test!"
NUDGE = "In case you missed it, Test: 3 playbooks in 5 minutes"
WORKSHOP = "Test, your next step: the attribution workshop"


def on_monday_0907(run: Any, **journeys: str) -> LocalSystem:
    """A local system with only these journeys (name=yaml), its clock on Monday 09:07 UTC."""
    local: LocalSystem = run(MONDAY_0907_UTC, **journeys)
    return local


@pytest.fixture
def system(run: Any) -> LocalSystem:
    return on_monday_0907(run, nurture=OLD)


def described(system: LocalSystem, arn: str) -> dict[str, Any]:
    result: dict[str, Any] = system.client("stepfunctions").describe_execution(executionArn=arn)
    return result


def ended(system: LocalSystem, arn: str) -> dict[str, Any]:
    """The execution once it is no longer running (a stop reaches a parked Wait within moments)."""
    for _ in range(500):
        found = described(system, arn)
        if found["status"] != "RUNNING":
            return found
        time.sleep(0.01)
    raise TimeoutError(arn)


def subjects(system: LocalSystem, email: str) -> list[tuple[str, float]]:
    """(subject, virtual days since the start) of every email to the address."""
    return [(s, round((t.timestamp() - MONDAY_0907_UTC) / DAY, 2)) for s, t in sent(system, email)]


def test_a_running_execution_finishes_on_its_version_while_new_contacts_run_the_new_one(
    system: LocalSystem,
) -> None:
    sfn = system.client("stepfunctions")
    machine, alias = system.state_machines["nurture"], system.journey_aliases["nurture"]
    ada = contact(system, "ada@example.com")
    system.settle()
    system.advance(1 * DAY)  # Ada waits in "wait 2 days" of version 1

    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW)
    outcome = system.deploy_journeys()
    version_2 = f"{machine}:2"
    assert outcome == {"nurture": f"published {version_2}"}
    assert sfn.describe_state_machine_alias(stateMachineAliasArn=alias)["routingConfiguration"] == [
        {"stateMachineVersionArn": version_2, "weight": 100}
    ]
    assert system.deploy_journeys() == {"nurture": "unchanged"}  # nothing changed: no version

    bo = contact(system, "bo@example.com")  # enters at day 1, on version 2
    system.settle()
    runs = {e["name"].split("-", 1)[1]: e for e in executions(system, "nurture")}
    ada_run, bo_run = runs[ada], runs[bo]
    assert described(system, ada_run["arn"])["stateMachineVersionArn"] == f"{machine}:1"
    assert described(system, bo_run["arn"])["stateMachineVersionArn"] == version_2
    assert described(system, bo_run["arn"])["stateMachineAliasArn"] == alias
    assert described(system, ada_run["arn"])["stateMachineArn"] == machine
    # execution ARNs name the state machine, whatever the version
    assert ada_run["arn"] == machine.replace(":stateMachine:", ":execution:") + f":nurture-{ada}"

    system.advance(1 * DAY + 60)  # day 2: Ada's old wait ends, the removed send still goes to her
    assert subjects(system, "ada@example.com") == [(WELCOME, 0.0), (NUDGE, 2.0)]
    assert subjects(system, "bo@example.com") == [(WELCOME, 1.0)]

    system.advance(DAY / 2)  # day 2.5: Ada views pricing, among other events
    event(system, "ada@example.com", "page_viewed_server", path="/docs")
    event(system, "ada@example.com", "pricing_viewed", plan="pro")
    system.settle()
    assert described(system, ada_run["arn"])["status"] == "SUCCEEDED"
    assert "old_event" in profile(system, ada)["tags"]

    system.advance(5 * DAY)  # day 7.5: Bo's new wait (5 days) and new timeout (1 day) have passed
    assert subjects(system, "bo@example.com") == [(WELCOME, 1.0), (WORKSHOP, 6.0)]
    assert described(system, bo_run["arn"])["status"] == "SUCCEEDED"
    assert "new_timeout" in profile(system, bo)["tags"]
    assert subjects(system, "ada@example.com") == [(WELCOME, 0.0), (NUDGE, 2.0)]  # never the new send
    # the ops page reads Ada's execution against her version: the 2-day wait ended on day 2
    from leadflow.local.ops_pages import execution_view

    view = execution_view(system, ada_run["arn"])
    assert view.journey == "nurture"
    [waited] = [row for row in view.rows if row.type == "WaitStateExited"]
    assert waited.virtual is not None
    assert round((waited.virtual.timestamp() - MONDAY_0907_UTC) / DAY, 2) == 2.0
    # each version's executions, as ListExecutions answers for a version, an alias and the machine
    listed = {e["name"]: e for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    assert listed[f"nurture-{ada}"]["stateMachineVersionArn"] == f"{machine}:1"
    assert [e["name"] for e in sfn.list_executions(stateMachineArn=version_2)["executions"]] == [
        f"nurture-{bo}"
    ]
    assert [e["name"] for e in sfn.list_executions(stateMachineArn=alias)["executions"]] == [
        f"nurture-{bo}",
        f"nurture-{ada}",
    ]


def test_execution_names_stay_unique_across_versions_and_stops_reach_old_versions(
    system: LocalSystem,
) -> None:
    """A redelivered entry after a deploy cannot start the contact again on the new version, and
    an exit (StopExecution) finds an execution on the old one."""
    sfn = system.client("stepfunctions")
    machine, alias = system.state_machines["nurture"], system.journey_aliases["nurture"]
    ada = contact(system, "ada@example.com")
    system.settle()
    [first] = executions(system, "nurture")
    payload = described(system, first["arn"])["input"]
    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW)
    system.deploy_journeys()
    name = f"nurture-{ada}"
    again = sfn.start_execution(stateMachineArn=alias, name=name, input=payload)
    assert again["executionArn"] == first["arn"]  # the same request: the running execution
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=alias, name=name, input=json.dumps({"other": 1}))
    sfn.stop_execution(executionArn=first["arn"], error="leadflow.stopped", cause="exit: test")
    stopped = ended(system, first["arn"])
    assert (stopped["status"], stopped["stateMachineVersionArn"]) == ("ABORTED", f"{machine}:1")
    assert stopped["error"] == "leadflow.stopped"
    versions = sfn.list_state_machine_versions(stateMachineArn=machine)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in versions] == [f"{machine}:2", f"{machine}:1"]


def test_canary_moto_still_lacks_versioned_executions_without_the_local_patch(system: LocalSystem) -> None:
    """The patch still fits (``check_moto``) and is still needed: moto's own StartExecution cannot
    start on an alias. When this fails, moto changed: review ``leadflow.local.sfn_versions``."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    sfn_versions.check_moto()  # passes while installed too (a second local system in the process)
    sfn = system.client("stepfunctions")
    patched = StepFunctionsParserBackend.start_execution
    assert patched.__module__ == sfn_versions.__name__
    StepFunctionsParserBackend.start_execution = patched.__wrapped_original__  # type: ignore[attr-defined]
    try:
        with pytest.raises(ClientError):
            sfn.start_execution(stateMachineArn=system.journey_aliases["nurture"], name="canary", input="{}")
    finally:
        StepFunctionsParserBackend.start_execution = patched  # type: ignore[method-assign]
    started = sfn.start_execution(
        stateMachineArn=system.journey_aliases["nurture"], name="canary", input="{}"
    )
    assert described(system, started["executionArn"])["stateMachineVersionArn"].endswith(":1")


def test_journeys_versions_lists_each_version_with_its_running_executions(
    system: LocalSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    """``leadflow journeys versions nurture`` against ``make run`` (its HTTP server): the newest
    version first with the alias on it, each with the contacts still running on it."""
    import hashlib
    import threading
    import urllib.error
    import urllib.request

    from leadflow.journeys import compile_journey, load_journey
    from leadflow.local.server import LocalServer
    from leadflow.ops.cli import main

    ada = contact(system, "ada@example.com")
    system.settle()
    server = LocalServer(system, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deploy = f"http://127.0.0.1:{server.server_port}/_local/journeys/deploy"
    try:
        # a journey with a problem is refused whole: nothing is published
        (system.content_dir / "journeys" / "nurture.yaml").write_text(
            NEW.replace("welcome-followup-engaged", "nope")
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(deploy, data=b"", method="POST"), timeout=60)
        assert refused.value.code == 400
        assert "nope" in json.loads(refused.value.read())["problems"][0]
        (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW)
        with urllib.request.urlopen(
            urllib.request.Request(deploy, data=b"", method="POST"), timeout=60
        ) as reply:
            machine = system.state_machines["nurture"]
            answer = json.loads(reply.read())
        assert answer["journeys"] == {"nurture": f"published {machine}:2"}
        # on_change defaults to finish_on_old: Ada stays on version 1
        assert answer["in_flight"] == [
            {
                "journey_id": "nurture",
                "mode": "finish_on_old",
                "live": [f"{machine}:2"],
                "left": {"v1": 1},
                "exited": {},
                "moved": {},
                "busy": {},
                "refused": [],
            }
        ]
        bo = contact(system, "bo@example.com")
        cy = contact(system, "cy@example.com")
        system.settle()
        capsys.readouterr()
        code = main(
            ["journeys", "versions", "nurture", "--url", f"http://127.0.0.1:{server.server_port}", "--json"]
        )
        out = capsys.readouterr().out.splitlines()
        assert main(["journeys", "versions", "nope", "--url", f"http://127.0.0.1:{server.server_port}"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    document = json.loads(out[-1])
    machine = system.state_machines["nurture"]
    new = compile_journey(
        load_journey(system.content_dir / "journeys" / "nurture.yaml"),
        templates_dir=system.content_dir / "templates",
    )
    new_hash = hashlib.sha256(
        new.replace(
            "${SendFunctionArn}", "arn:aws:lambda:us-east-1:123456789012:function:leadflow-local-send"
        ).encode()
    ).hexdigest()
    [v2, v1] = document["versions"]
    assert (v2["version"], v2["arn"], v2["alias_weight"]) == (2, f"{machine}:2", 100)
    assert v2["description"] == f"nurture sha256:{new_hash}"
    assert v2["running"] == sorted([f"nurture-{bo}", f"nurture-{cy}"])
    assert (v1["version"], v1["alias_weight"], v1["running"], v1["running_count"]) == (
        1,
        0,
        [f"nurture-{ada}"],
        1,
    )
    assert v1["description"].startswith("nurture sha256:")
    assert v1["description"] != v2["description"]
    assert out[0] == "journey nurture: 2 versions (alias live)"
    assert out[1].split()[:2] == ["v2", v2["created"]]
    assert "live 100%" in out[1]
    assert "running     2" in out[1]
    assert out[3].split()[0] == "v1"
    assert "running     1" in out[3]
    assert out[4].strip() == f"nurture-{ada}"


def test_on_change_exit_ends_the_contacts_of_older_versions_on_purpose(system: LocalSystem) -> None:
    """``on_change: exit``: the deploy stops the executions on the old version on purpose (never
    redriven), closes their enrollments as exited ("journey changed") with a journey_exited event;
    the old version's later steps never run; new contacts enter the new version."""
    from leadflow.journeys.runtime.stops import stopped_on_purpose
    from leadflow.ops.redrive import ExecutionRedrive
    from tests.integration.test_journey_runtime import enrollment

    sfn = system.client("stepfunctions")
    machine = system.state_machines["nurture"]
    ada = contact(system, "ada@example.com")
    system.settle()
    system.advance(DAY)
    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW + "on_change: exit\n")
    assert system.deploy_journeys() == {"nurture": f"published {machine}:2"}
    [report] = system.change_reports
    assert report.line() == "nurture (on_change: exit, live v2): v1: 1 exited"
    [run] = executions(system, "nurture")
    stopped = ended(system, run["arn"])
    assert stopped_on_purpose(stopped) == "changed"
    assert stopped["cause"] == "changed: journey changed: v1 -> v2"
    assert enrollment(system, ada, "nurture")["status"] == "exited"
    assert enrollment(system, ada, "nurture")["exit_reason"] == "journey changed"
    exits = [e for e in events_of(system, ada) if e["type"] == "journey_exited"]
    assert [e["properties"]["reason"] for e in exits] == ["journey changed"]
    bo = contact(system, "bo@example.com")
    system.settle()
    system.advance(7 * DAY)
    assert subjects(system, "ada@example.com") == [(WELCOME, 0.0)]  # no nudge: she left
    assert subjects(system, "bo@example.com") == [(WELCOME, 1.0), (WORKSHOP, 6.0)]
    assert (
        described(system, f"{machine.replace(':stateMachine:', ':execution:')}:nurture-{bo}")[
            "stateMachineVersionArn"
        ]
        == f"{machine}:2"
    )
    # redrive leaves it alone; a second deploy finds nobody in flight
    summary = ExecutionRedrive(sfn=sfn, state_machine_arns=[machine]).run(dry_run=True)
    assert summary.skipped_by_reason == {"changed": 1}
    (system.content_dir / "journeys" / "nurture.yaml").write_text(
        NEW.replace("days: 5", "days: 4") + "on_change: exit\n"
    )
    system.deploy_journeys()
    assert system.change_reports[0].exited == {}
    assert len([e for e in events_of(system, ada) if e["type"] == "journey_exited"]) == 1


class StackOutputs:
    """CloudFormation's DescribeStacks of stack ``leadflow-local`` (moto's CloudFormation needs a
    package the project does not install): what ``cdk deploy`` leaves as the stack's outputs."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        assert StackName == "leadflow-local"
        return {
            "Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]
        }


def test_apply_changes_after_a_stage_deploy_carries_out_the_files_on_change(
    system: LocalSystem, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``leadflow journeys apply-changes --stage`` re-runs what ``cdk deploy``'s journey_changes
    does: it reads the stack's outputs and does what each journey file's ``on_change`` says — here a
    marketer who first let contacts finish on the old version decides they should leave it."""
    from leadflow.ops.cli import main
    from tests.integration.test_journey_runtime import enrollment

    machine = system.state_machines["nurture"]
    outputs = {
        "ContactsTable": "leadflow-local-contacts",
        "EventsTable": "leadflow-local-events",
        "JourneyNurtureArn": machine,
    }
    import leadflow.ops.cli

    real_client = leadflow.ops.cli._client
    monkeypatch.setattr(
        leadflow.ops.cli,
        "_client",
        lambda service, region: (
            StackOutputs(outputs) if service == "cloudformation" else real_client(service, region)
        ),
    )
    ada = contact(system, "ada@example.com")
    system.settle()
    journey_file = system.content_dir / "journeys" / "nurture.yaml"
    journey_file.write_text(NEW)
    system.deploy_journeys()  # finish_on_old: Ada stays on version 1
    journey_file.write_text(NEW + "on_change: exit\n")  # the same definition: no new version
    args = ["journeys", "apply-changes", "--stage", "local", "--journeys", str(journey_file.parent)]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "nurture (on_change: exit, live v2): v1: 1 exited"
    assert json.loads(out[-1])["journeys"][0]["exited"] == {"v1": 1}
    [run] = executions(system, "nurture")
    assert ended(system, run["arn"])["status"] == "ABORTED"
    assert enrollment(system, ada, "nurture")["status"] == "exited"
    assert main(args) == 0  # idempotent: nobody left in flight
    assert (
        capsys.readouterr().out.splitlines()[0] == "nurture (on_change: exit, live v2): no contact in flight"
    )
    system.advance(3 * DAY)
    assert subjects(system, "ada@example.com") == [(WELCOME, 0.0)]


def test_the_deploy_carries_out_on_change_through_the_journey_changes_function(
    system: LocalSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``cdk deploy`` does with the stack's CDK Trigger: after the alias moved, the
    ``journey_changes`` function is invoked with no payload and ends the contact left on the old
    version; it logs one line per journey and the report as one JSON document, and returns it."""
    from leadflow.local import recording
    from leadflow.local.system import resource_name
    from tests.integration.test_journey_runtime import enrollment

    invoked: list[tuple[str, Any]] = []

    def listen(function: str, event: Any) -> None:
        invoked.append((function, event))

    ada = contact(system, "ada@example.com")
    system.settle()
    system.advance(DAY)
    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW + "on_change: exit\n")
    caplog.clear()
    recording.add_listener(listen)
    try:
        system.deploy_journeys()
    finally:
        recording.remove_listener(listen)
    assert [e for f, e in invoked if f == resource_name("journey_changes")] == [{}]
    assert enrollment(system, ada, "nurture")["status"] == "exited"
    messages = [r.getMessage() for r in caplog.records]
    assert "nurture (on_change: exit, live v2): v1: 1 exited" in messages
    [applied] = [r for r in caplog.records if r.getMessage() == "journey changes applied"]
    assert applied.report["failed"] == {}
    [report] = applied.report["journeys"]
    assert (report["journey_id"], report["exited"], report["left"]) == ("nurture", {"v1": 1}, {})
    assert system.change_failures == {}


def test_a_journey_whose_change_fails_is_reported_and_the_others_still_run(system: LocalSystem) -> None:
    """One journey cannot be handled (here: its file names a journey the stage does not have): it
    is reported under ``failed`` and its contacts stay where they are; the next journey's
    ``on_change`` is still carried out."""
    from leadflow import wiring
    from leadflow.journeys import load_journeys
    from leadflow.kernel.settings import get_settings
    from leadflow.ops.changes import apply_changes
    from tests.integration.test_journey_runtime import enrollment

    ada = contact(system, "ada@example.com")
    system.settle()
    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW)
    system.deploy_journeys()  # finish_on_old: Ada stays on v1
    (system.content_dir / "journeys" / "nurture.yaml").write_text(NEW + "on_change: exit\n")
    [nurture] = load_journeys(system.content_dir / "journeys")
    missing = nurture.model_copy(update={"id": "not-deployed"})
    settings, ddb = get_settings(), wiring.client("dynamodb")
    changes = apply_changes(
        system.client("stepfunctions"),
        [missing, nurture],
        settings.state_machine_arn,
        "live",
        store=wiring.journey_store(settings, ddb),
        events=wiring.event_store(settings, ddb),
    )
    assert list(changes.failed) == ["not-deployed"]
    assert changes.failed["not-deployed"].startswith("StateMachineDoesNotExist: "), changes.failed
    [report] = changes.reports
    assert (report.journey_id, report.exited) == ("nurture", {"v1": 1})
    assert changes.lines()[-1].startswith("not-deployed: not carried out: StateMachineDoesNotExist: ")
    assert enrollment(system, ada, "nurture")["status"] == "exited"
