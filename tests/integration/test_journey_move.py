"""``on_change: {move_to_new: {OLD_STEP: NEW_STEP}}`` on the local runtime: a deploy moves the
contacts waiting on an older version onto the live one, at the mapped step.

The history is a user's: trial users enter a trial journey; one waits for the awaited product use
(a ``wait_for``), another already did it and sits in a ``wait``; the marketer renames and
reorders steps, adds a send and shortens the timeout, maps the old waiting steps to the new ones
and deploys. Each moved contact continues on the new version from its new step at the new
version's times, nothing already sent is sent again, the awaited event reaches the NEW execution's
token and an exit ends the NEW execution — in a ``wait_for`` and in a ``wait``."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any

import pytest

from leadflow.journeys.runtime.stops import stopped_on_purpose
from leadflow.kernel import ids
from leadflow.local.system import LocalSystem
from tests.integration.conftest import events_of
from tests.integration.test_journey_runtime import DAY, contact, enrollment, event, profile, sent
from tests.integration.test_journey_versions import MONDAY_0907_UTC, NUDGE, described, ended, on_monday_0907

# the trial journey: what its versions differ in is a placeholder
TRIAL = Template("""
id: trial
name: Trial
entry: {event: trial_started}
exit: {events: [{event: purchase}]}
$on_change
steps:
  - send_email: {id: welcome, template: trial-welcome}
  - wait_for:
      id: $wait_for
      event: product_used
      where: {feature: reports}
      timeout: {days: $timeout_days}
      on_event: [{update_contact: {add_tags: [$tag]}}]
      on_timeout: [{send_email: {id: tips, template: trial-tips-a}}]
$before_last_call
  - send_email: {id: last_call, template: trial-last-call}
""")

OLD = TRIAL.substitute(
    on_change="",
    wait_for="first_report",
    timeout_days=3,
    tag="activated",
    before_last_call="  - wait: {id: cooling, days: 4}",
)

# renamed steps, a shorter timeout, a new send and a wait before the last call
NEW = TRIAL.substitute(
    on_change="on_change:\n  move_to_new:\n    first_report: activation\n    cooling: pause",
    wait_for="activation",
    timeout_days=2,
    tag="activated_v2",
    before_last_call="\n".join(
        (
            "  - wait: {id: pause, days: 2}",
            "  - send_email: {id: nudge, template: welcome-followup-nudge}",
            "  - wait: {id: before_last, days: 1}",
        )
    ),
)

WELCOME = "Your Northwind trial is ready, Test"
TIPS = "3 reports our best customers open every Monday"
LAST_CALL = "Your trial ends soon"


@pytest.fixture
def system(run: Any) -> LocalSystem:
    return on_monday_0907(run, trial=OLD)


def subjects(system: LocalSystem, email: str) -> list[tuple[str, float]]:
    """(subject, virtual days since the start) of every email to the address."""
    return [(s, round((t.timestamp() - MONDAY_0907_UTC) / DAY, 2)) for s, t in sent(system, email)]


def trial_user(system: LocalSystem, email: str) -> str:
    contact_id = contact(system, email)
    event(system, email, "trial_started", plan="team")
    system.settle()
    return contact_id


def execution_arn(system: LocalSystem, name: str) -> str:
    machine = system.state_machines["trial"]
    return machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def deploy(system: LocalSystem, text: str) -> Any:
    (system.content_dir / "journeys" / "trial.yaml").write_text(text)
    outcome = system.deploy_journeys()
    assert outcome == {"trial": f"published {system.state_machines['trial']}:{outcome_version(system)}"}
    [report] = system.change_reports
    return report


def outcome_version(system: LocalSystem) -> int:
    sfn = system.client("stepfunctions")
    versions = sfn.list_state_machine_versions(stateMachineArn=system.state_machines["trial"])
    return max(int(v["stateMachineVersionArn"].rsplit(":", 1)[1]) for v in versions["stateMachineVersions"])


def test_waiting_contacts_continue_on_the_new_version_at_the_mapped_steps(system: LocalSystem) -> None:
    machine = system.state_machines["trial"]
    ada = trial_user(system, "ada@example.com")  # will wait for her first report
    bo = trial_user(system, "bo@example.com")  # runs a report on day 1: then waits 4 days
    cy = trial_user(system, "cy@example.com")  # waiting for a report: buys after the move
    dee = trial_user(system, "dee@example.com")  # runs a report, then buys during the new wait
    system.advance(DAY)
    event(system, "bo@example.com", "page_viewed_server", path="/docs")
    event(system, "bo@example.com", "product_used", feature="reports")
    event(system, "dee@example.com", "product_used", feature="reports")
    event(system, "ada@example.com", "product_used", feature="dashboards")  # not the awaited one
    system.settle()
    assert "activated" in profile(system, bo)["tags"]
    system.advance(DAY)  # day 2: Ada and Cy wait in first_report, Bo and Dee in cooling (v1)

    report = deploy(system, NEW)
    assert report.mode == "move_to_new"
    assert report.moved == {"v1: first_report -> activation": 2, "v1: cooling -> pause": 2}
    assert (report.refused, report.busy, report.left, report.exited) == ([], {}, {}, {})
    assert report.line() == (
        "trial (on_change: move_to_new, live v2): v1: 2 moved cooling -> pause; "
        "v1: 2 moved first_report -> activation"
    )
    for contact_id in (ada, bo, cy, dee):
        old, new = f"trial-{contact_id}", f"trial-{contact_id}.v2"
        stopped = ended(system, execution_arn(system, old))
        assert stopped_on_purpose(stopped) == "moved"  # redrive never resumes it
        assert stopped["stateMachineVersionArn"] == f"{machine}:1"
        moved = described(system, execution_arn(system, new))
        assert (moved["status"], moved["stateMachineVersionArn"]) == ("RUNNING", f"{machine}:2")
        assert moved["stateMachineAliasArn"] == system.journey_aliases["trial"]
        given = json.loads(moved["input"])
        assert (given["contact_id"], given["moved_from"]["execution"]) == (contact_id, old)
        assert enrollment(system, contact_id, "trial")["execution_name"] == new

    # the awaited event reaches the NEW execution's token (Ada, day 2.5)
    system.advance(DAY / 2)
    event(system, "ada@example.com", "product_used", feature="reports")
    system.settle()
    assert "activated_v2" in profile(system, ada)["tags"]
    # an exit reaches the new execution: Cy in the new wait_for, Dee in the new wait
    event(system, "cy@example.com", "purchase", plan="team")
    event(system, "dee@example.com", "purchase", plan="team")
    system.settle()
    cy_run = ended(system, execution_arn(system, f"trial-{cy}.v2"))
    assert cy_run["status"] == "SUCCEEDED"  # its wait_for answered with ContactExited: "Contact exited"
    dee_run = ended(system, execution_arn(system, f"trial-{dee}.v2"))
    assert stopped_on_purpose(dee_run) == "exit"
    for contact_id in (cy, dee):
        assert enrollment(system, contact_id, "trial")["status"] == "exited"
        exits = [e for e in events_of(system, contact_id) if e["type"] == "journey_exited"]
        assert [e["properties"]["reason"] for e in exits] == ["converted: purchase"]

    system.advance(5 * DAY)  # day 7.5: everything has run
    # Bo: moved at day 2 into the new 2-day wait: the new send on day 4, the last call a day later
    assert subjects(system, "bo@example.com") == [(WELCOME, 0.0), (NUDGE, 4.0), (LAST_CALL, 5.0)]
    # Ada: activated at day 2.5 on the new version, 2 days' pause, nudge, a day, last call
    assert subjects(system, "ada@example.com") == [(WELCOME, 0.0), (NUDGE, 4.5), (LAST_CALL, 5.5)]
    assert subjects(system, "cy@example.com") == [(WELCOME, 0.0)]
    assert subjects(system, "dee@example.com") == [(WELCOME, 0.0)]
    for contact_id in (ada, bo):
        assert described(system, execution_arn(system, f"trial-{contact_id}.v2"))["status"] == "SUCCEEDED"
        assert enrollment(system, contact_id, "trial")["status"] == "completed"
    # a later deploy finds nobody in flight on an older version
    report = deploy(system, NEW.replace("days: 1}", "days: 2}"))
    assert (report.moved, report.refused, report.busy) == ({}, [], {})


def test_a_moved_contact_never_gets_an_email_twice(system: LocalSystem) -> None:
    """Mapped back onto a send it already got: no second email (the moved execution keeps the
    message ids of the one it continues); mapped forward onto a send it did not get: sent once."""
    eve = trial_user(system, "eve@example.com")  # got the welcome, waits in cooling
    finn = trial_user(system, "finn@example.com")  # got the welcome, waits for a report
    system.advance(DAY / 2)
    event(system, "eve@example.com", "product_used", feature="reports")
    system.settle()
    system.advance(DAY / 2)  # day 1
    back_and_forth = NEW.replace(
        "first_report: activation\n    cooling: pause", "cooling: welcome\n    first_report: nudge"
    )
    report = deploy(system, back_and_forth)
    assert report.moved == {"v1: cooling -> welcome": 1, "v1: first_report -> nudge": 1}
    system.settle()
    # Eve restarts at the welcome send: already handled, so no email; she continues to the new
    # wait_for (since day 1) and, without a report, its timeout sends the tips on day 3
    assert subjects(system, "eve@example.com") == [(WELCOME, 0.0)]
    # Finn resumes at the new send: it goes now, once
    assert subjects(system, "finn@example.com") == [(WELCOME, 0.0), (NUDGE, 1.0)]
    system.advance(6 * DAY)
    assert subjects(system, "eve@example.com") == [
        (WELCOME, 0.0),
        (TIPS, 3.0),
        (NUDGE, 5.0),
        (LAST_CALL, 6.0),
    ]
    assert subjects(system, "finn@example.com") == [(WELCOME, 0.0), (NUDGE, 1.0), (LAST_CALL, 2.0)]
    assert enrollment(system, finn, "trial")["status"] == "completed"
    # one email_sent per message: the welcome's message id is the original execution's
    sends = [e["message_id"] for e in events_of(system, eve) if e["type"] == "email_sent"]
    assert len(sends) == len(set(sends)) == 4
    welcome_id = ids.deterministic_id(execution_arn(system, f"trial-{eve}"), "welcome")
    assert welcome_id in sends
    moved_arn = execution_arn(system, f"trial-{eve}.v2")
    assert ids.lineage(moved_arn) == execution_arn(system, f"trial-{eve}")
    skipped = [e for e in events_of(system, eve) if e["type"] == "email_skipped"]
    assert skipped == []  # the repeated welcome is "already handled", not a skipped send


def test_an_unmapped_waiting_step_is_refused_and_the_contact_stays_on_its_version(
    system: LocalSystem,
) -> None:
    machine = system.state_machines["trial"]
    gus = trial_user(system, "gus@example.com")  # waits for a report: mapped
    hal = trial_user(system, "hal@example.com")  # runs a report: waits in cooling, not mapped
    system.advance(DAY / 2)
    event(system, "hal@example.com", "product_used", feature="reports")
    system.settle()
    partial = NEW.replace("    cooling: pause\n", "    onboarding: pause\n")
    report = deploy(system, partial)
    assert report.moved == {"v1: first_report -> activation": 1}
    assert report.refused == [
        {
            "version": "v1",
            "step": "onboarding",
            "execution": "",
            "reason": "trial v1 has no step 'onboarding' (move_to_new maps it): its steps are "
            "cooling, first_report, last_call, tips, update_contact_1, welcome",
        },
        {
            "version": "v1",
            "step": "cooling",
            "execution": f"trial-{hal}",
            "reason": f"trial-{hal} waits at step 'cooling' (Wait 4 days) of trial v1, which move_to_new "
            "does not map",
        },
    ]
    assert "refused: trial-" in report.line()
    # Hal stays on version 1, his enrollment untouched: he finishes as version 1 says
    hal_run = described(system, execution_arn(system, f"trial-{hal}"))
    assert (hal_run["status"], hal_run["stateMachineVersionArn"]) == ("RUNNING", f"{machine}:1")
    assert enrollment(system, hal, "trial")["execution_name"] == f"trial-{hal}"
    assert enrollment(system, gus, "trial")["execution_name"] == f"trial-{gus}.v2"
    system.advance(5 * DAY)
    assert subjects(system, "hal@example.com") == [(WELCOME, 0.0), (LAST_CALL, 4.5)]
    assert enrollment(system, hal, "trial")["status"] == "completed"


def test_a_contact_moved_to_a_wait_until_is_planned_for_its_own_time(system: LocalSystem) -> None:
    """A ``wait_until`` right after a send is planned by that send; as a move target it gets its
    own Plan task, so a moved contact waits until the next such time in ITS time zone."""
    ivy = trial_user(system, "ivy@example.com")  # Monday 09:07 UTC
    system.advance(DAY / 4)
    event(system, "ivy@example.com", "product_used", feature="reports")  # then waits 4 days (v1)
    system.settle()
    system.advance(DAY * 3 / 4)  # Tuesday 09:07 UTC
    weekly = NEW.replace("cooling: pause", "cooling: tuesday_morning").replace(
        "  - wait: {id: pause, days: 2}\n",
        '  - wait_until: {id: tuesday_morning, time: "10:00", weekdays: [tue]}\n',
    )
    report = deploy(system, weekly)
    assert report.moved == {"v1: cooling -> tuesday_morning": 1}
    system.advance(2 * DAY)
    # Tuesday 10:00 (53 minutes after the move): the new send, a day later the last call
    assert subjects(system, "ivy@example.com") == [(WELCOME, 0.0), (NUDGE, 1.04), (LAST_CALL, 2.04)]
    assert enrollment(system, ivy, "trial")["status"] == "completed"


def test_the_local_deploy_refuses_a_bad_mapping_and_answers_the_move(system: LocalSystem) -> None:
    """``POST /_local/journeys/deploy`` (``make run``): a mapping to a step the file does not have
    refuses the whole deploy, naming it; a good one answers the move in ``in_flight``."""
    import threading
    import urllib.error
    import urllib.request

    from leadflow.local.server import LocalServer

    jo = trial_user(system, "jo@example.com")
    server = LocalServer(system, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deploy_url = f"http://127.0.0.1:{server.server_port}/_local/journeys/deploy"
    journey_file = system.content_dir / "journeys" / "trial.yaml"
    try:
        journey_file.write_text(NEW.replace("first_report: activation", "first_report: activaton"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(deploy_url, data=b"", method="POST"), timeout=60)
        assert refused.value.code == 400
        [problem] = json.loads(refused.value.read())["problems"]
        assert "on_change.move_to_new.first_report: no step of this journey has the id 'activaton'" in problem
        assert described(system, execution_arn(system, f"trial-{jo}"))["status"] == "RUNNING"  # untouched
        journey_file.write_text(NEW)
        request = urllib.request.Request(deploy_url, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=60) as reply:
            answer = json.loads(reply.read())
    finally:
        server.shutdown()
        server.server_close()
    [in_flight] = answer["in_flight"]
    assert (in_flight["mode"], in_flight["moved"]) == ("move_to_new", {"v1: first_report -> activation": 1})
    assert enrollment(system, jo, "trial")["execution_name"] == f"trial-{jo}.v2"


def test_simulate_reads_a_journey_that_moves_contacts(tmp_path: Path) -> None:
    """``leadflow journeys simulate`` of such a file: new contacts take the start Choice's default
    (no ``resume_at``) and the journey runs as written; the Choice is not a decision step."""
    from leadflow.local.simulate import read_events, simulate

    journey = tmp_path / "trial.yaml"
    journey.write_text(NEW)
    events = tmp_path / "events.jsonl"
    lines = [
        {
            "type": "trial_started",
            "email": f"{name}@example.com",
            "properties": {},
            "at": f"2026-01-05T09:0{i}:00Z",
        }
        for i, name in enumerate(("kim", "lee", "max"))
    ]
    lines.append(
        {
            "type": "product_used",
            "email": "kim@example.com",
            "properties": {"feature": "reports"},
            "at": "2026-01-06T10:00:00Z",
        }
    )
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    contacts = "".join(
        json.dumps({"email": f"{name}@example.com", "consent_email": "granted", "consent_source": "form"})
        + "\n"
        for name in ("kim", "lee", "max")
    )
    result = simulate(journey, read_events(events), contacts)
    assert result.entered == 3
    assert result.paths["activation"]["counts"] == {"event": 1, "timeout": 2}
    assert result.emails == {
        "trial-welcome": 3,
        "trial-tips-a": 2,
        "welcome-followup-nudge": 3,
        "trial-last-call": 3,
    }
