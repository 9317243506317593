"""Redrive: failed stream batches and failed journey executions are re-processed exactly once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.responses import StepFunctionResponse

from leadflow.local import moto_patches
from leadflow.local.system import LocalSystem
from leadflow.ops import cli
from leadflow.ops import redrive as ops
from leadflow.ops.redrive import ExecutionRedrive, StreamRedrive
from tests.helpers import local_stage_resources, redrive_local_stage
from tests.integration.conftest import profile, sign_up

WELCOME = "Welcome to Northwind Analytics, Ada!"
BATCH_INFO_KEYS = {
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
}


def stream_redrive(system: LocalSystem, consumer: str) -> StreamRedrive:
    return StreamRedrive(
        sqs=system.client("sqs"),
        streams=system.client("dynamodbstreams"),
        lambda_=system.client("lambda"),
        consumer=consumer,
        function_name=f"leadflow-local-{consumer}",
        queue_url=system.dlq_urls[consumer],
        wait_seconds=0,
    )


def execution_redrive(system: LocalSystem) -> ExecutionRedrive:
    return ExecutionRedrive(
        sfn=system.client("stepfunctions"), state_machine_arns=system.state_machines.values()
    )


def subjects_to(system: LocalSystem, address: str) -> list[str]:
    return [m["subject"] for m in system.outbox() if address in m["to"]]


def executions_of(system: LocalSystem, contact: str) -> list[dict[str, Any]]:
    return [e for e in system.executions() if contact in e["name"]]


def injected(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "InternalServerError", "Message": "injected fault"}}, operation)


def test_canary_redrive_execution_is_the_local_patch(system: LocalSystem) -> None:
    """moto 5.2.5 has no RedriveExecution: while the local runtime runs, the one there is leadflow's
    patch, and ``check_moto`` fails loudly once moto brings its own."""
    moto_patches.check_moto()
    assert StepFunctionResponse.redrive_execution is moto_patches.redrive_execution
    assert all("redrive_execution" not in vars(base) for base in StepFunctionResponse.__mro__[1:])
    sfn = system.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/canary"
    arns = {
        kind: sfn.create_state_machine(
            name=f"canary-{kind}",
            definition=json.dumps({"StartAt": "S", "States": {"S": state}}),
            roleArn=role,
        )["stateMachineArn"]
        for kind, state in (
            ("pass", {"Type": "Pass", "End": True}),
            ("fail", {"Type": "Fail", "Error": "Boom"}),
        )
    }
    runs = {
        kind: sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        for kind, arn in arns.items()
    }
    assert [_ended(system, arn) for arn in runs.values()] == ["SUCCEEDED", "FAILED"]
    with pytest.raises(ClientError, match="ExecutionNotRedrivable"):
        sfn.redrive_execution(executionArn=runs["pass"])
    assert "redriveDate" in sfn.redrive_execution(executionArn=runs["fail"])
    assert _ended(system, runs["fail"]) == "FAILED"  # the same execution ran again, and failed again
    assert len(sfn.list_executions(stateMachineArn=arns["fail"])["executions"]) == 1


def _ended(system: LocalSystem, execution_arn: str) -> str:
    sfn = system.client("stepfunctions")
    for _ in range(500):
        status = str(sfn.describe_execution(executionArn=execution_arn)["status"])
        if status != "RUNNING":
            return status
        time.sleep(0.01)
    raise TimeoutError(execution_arn)


def test_failed_score_records_are_redriven_once(system: LocalSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the score consumer fails for one contact's records until they go to its on-failure
    queue, when the fault is gone and redrive runs, the points are applied once, the queue is empty
    and a second redrive does nothing."""
    store = system.modules["score"].service._store
    real = store.update_op
    failing: set[str] = set()

    def broken(contact_id: str, sets: dict[str, Any], *args: Any) -> dict[str, Any]:
        if contact_id in failing and "score_value" in sets:  # writing the contact's points fails
            raise injected("TransactWriteItems")
        return real(contact_id, sets, *args)

    monkeypatch.setattr(store, "update_op", broken)
    contact = sign_up(system, "redrive-score@example.com", visitor_id="v-redrive-0001")
    healthy = sign_up(system, "healthy-score@example.com", visitor_id="v-redrive-0002")
    failing.add(contact)
    system.settle()

    assert int(profile(system, healthy)["score"]["N"]) == 10
    assert int(profile(system, contact).get("score", {"N": "0"})["N"]) == 0
    letters = system.dead_letters("score")
    assert len(letters) == 1  # form_submitted, the contact's one scored event
    [letter] = letters
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert letter["requestContext"]["functionArn"].endswith(":function:leadflow-local-score")
    assert letter["requestContext"]["approximateInvokeCount"] >= 1
    assert letter["version"] == "1.0"
    assert set(letter["DDBStreamBatchInfo"]) == BATCH_INFO_KEYS
    assert "record" not in letter  # as in AWS: the position of the batch, not its records
    assert system.dead_letters("trigger") == []

    # still broken: the message stays in the queue, reported as still failing
    early = stream_redrive(system, "score").run()
    assert (early.redriven, early.still_failing, early.expired) == (0, 1, 0)
    assert "function error" in early.items[0]["reason"]
    assert len(system.dead_letters("score")) == 1

    monkeypatch.undo()
    done = stream_redrive(system, "score").run()
    assert (done.redriven, done.still_failing, done.expired, done.records) == (1, 0, 0, 1)
    assert int(profile(system, contact)["score"]["N"]) == 10
    assert int(profile(system, healthy)["score"]["N"]) == 10
    assert system.dead_letters("score") == []

    again = stream_redrive(system, "score").run()
    assert (again.redriven, again.still_failing, again.expired, again.records) == (0, 0, 0, 0)
    assert int(profile(system, contact)["score"]["N"]) == 10


def test_failed_trigger_record_starts_the_journey_once_on_redrive(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    sfn = system.modules["trigger"].service._sfn
    real = sfn.start_execution
    failing: set[str] = set()

    def broken(**kwargs: Any) -> Any:
        if json.loads(kwargs["input"])["contact_id"] in failing:
            raise injected("StartExecution")
        return real(**kwargs)

    monkeypatch.setattr(sfn, "start_execution", broken)
    contact = sign_up(system, "redrive-trigger@example.com", visitor_id="v-redrive-0003")
    failing.add(contact)
    system.settle()
    assert executions_of(system, contact) == []
    assert subjects_to(system, "redrive-trigger@example.com") == []
    assert len(system.dead_letters("trigger")) == 1
    assert int(profile(system, contact)["score"]["N"]) == 10  # the other consumer is unaffected

    monkeypatch.undo()
    summaries = redrive_local_stage(system, ("trigger", "score"), do_executions=False)
    assert ops.totals(summaries)["redriven"] == 1
    system.settle()
    assert len(executions_of(system, contact)) == 1
    assert subjects_to(system, "redrive-trigger@example.com") == [WELCOME]
    assert system.dead_letters("trigger") == []
    assert int(profile(system, contact)["score"]["N"]) == 10

    again = stream_redrive(system, "trigger").run()
    assert (again.redriven, again.still_failing, again.expired) == (0, 0, 0)
    system.settle()
    assert len(executions_of(system, contact)) == 1
    assert subjects_to(system, "redrive-trigger@example.com") == [WELCOME]


def test_records_no_longer_in_the_stream_are_reported_not_dropped(system: LocalSystem) -> None:
    stream_arn = system.pump._stream_arn
    shard = system.client("dynamodbstreams").describe_stream(StreamArn=stream_arn)["StreamDescription"][
        "Shards"
    ][0]
    gone = str(10**30)  # past the end of the stream: what a trimmed batch looks like to GetRecords
    sqs = system.client("sqs")
    sqs.send_message(
        QueueUrl=system.dlq_urls["score"],
        MessageBody=json.dumps(
            {
                "requestContext": {"condition": "RetryAttemptsExhausted"},
                "DDBStreamBatchInfo": {
                    "shardId": shard["ShardId"],
                    "startSequenceNumber": gone,
                    "endSequenceNumber": gone,
                    "batchSize": 1,
                    "streamArn": stream_arn,
                },
            }
        ),
    )
    first = stream_redrive(system, "score").run()
    assert (first.redriven, first.expired) == (0, 1)
    assert len(system.dead_letters("score")) == 1  # reported, still there for the operator
    removed = StreamRedrive(
        sqs=sqs,
        streams=system.client("dynamodbstreams"),
        lambda_=system.client("lambda"),
        consumer="score",
        function_name="leadflow-local-score",
        queue_url=system.dlq_urls["score"],
        wait_seconds=0,
        delete_expired=True,
    ).run()
    assert (removed.redriven, removed.expired) == (0, 1)
    assert system.dead_letters("score") == []


def _break_ses(system: LocalSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    ses = system.modules["send"].sender._ses

    def unavailable(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "injected"}}, "SendRawEmail")

    monkeypatch.setattr(ses, "send_raw_email", unavailable)


def test_failed_execution_is_redriven_and_the_welcome_email_sent_once(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_ses(system, monkeypatch)
    contact = sign_up(system, "redrive-send@example.com", visitor_id="v-redrive-0004")
    system.settle()
    [failed] = executions_of(system, contact)
    assert failed["status"] == "FAILED"
    assert subjects_to(system, "redrive-send@example.com") == []

    dry = execution_redrive(system).run(dry_run=True)
    assert failed["arn"] in [i["execution_arn"] for i in dry.items if i["outcome"] == "pending"]
    assert dry.redriven == 0

    # SES still failing: the redriven execution fails again, and stays redrivable
    execution_redrive(system).run()
    system.settle()
    assert [e["status"] for e in executions_of(system, contact)] == ["FAILED"]

    monkeypatch.undo()
    summary = execution_redrive(system).run()
    assert summary.redriven >= 1
    assert failed["arn"] in [i["execution_arn"] for i in summary.items if i["outcome"] == "redriven"]
    system.settle()
    [redriven] = executions_of(system, contact)
    assert redriven["arn"] == failed["arn"]  # the same execution, so the same message ids
    assert redriven["status"] == "RUNNING"  # sent, now in its two-day wait
    assert subjects_to(system, "redrive-send@example.com") == [WELCOME]

    again = execution_redrive(system).run()
    assert failed["arn"] not in [i["execution_arn"] for i in again.items]
    system.advance(2 * 86400 + 60)
    [completed] = executions_of(system, contact)
    assert completed["status"] == "SUCCEEDED"
    subjects = subjects_to(system, "redrive-send@example.com")
    assert subjects.count(WELCOME) == 1
    assert len(subjects) == 2  # welcome + one follow-up


def test_redrive_after_a_sent_step_sends_nothing_twice(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The follow-up fails after the welcome went out; redriving the execution sends the follow-up
    and not the welcome again (its message id, execution id + step, is already claimed)."""
    contact = sign_up(system, "redrive-later@example.com", visitor_id="v-redrive-0005")
    system.settle()
    assert subjects_to(system, "redrive-later@example.com") == [WELCOME]
    _break_ses(system, monkeypatch)
    system.advance(2 * 86400 + 60)
    [failed] = executions_of(system, contact)
    assert failed["status"] == "FAILED"
    monkeypatch.undo()

    resources = local_stage_resources(system, ("trigger", "score"))
    monkeypatch.setattr(ops, "stage_resources", lambda cfn, stage: resources)
    status = cli.main(
        ["ops", "redrive", "--stage", "local", "--executions", "--since", "2000-01-01T00:00:00Z"]
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0
    assert last["redriven"] >= 1
    assert last["still_failing"] == last["expired"] == 0
    system.settle()
    system.advance(2 * 86400 + 60)
    [completed] = executions_of(system, contact)
    assert completed["status"] == "SUCCEEDED"
    subjects = subjects_to(system, "redrive-later@example.com")
    assert subjects.count(WELCOME) == 1
    assert len(subjects) == 2


def test_redrive_skips_executions_stopped_on_purpose(
    system: LocalSystem, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erased contact's journey was stopped (ABORTED) by the erasure: redrive leaves it stopped
    and says so, while an execution an operator aborted without leadflow's marker is redriven."""
    erased = sign_up(system, "redrive-erased@example.com", visitor_id="v-redrive-0006")
    aborted = sign_up(system, "redrive-aborted@example.com", visitor_id="v-redrive-0007")
    system.settle()
    [erased_run] = executions_of(system, erased)
    [aborted_run] = executions_of(system, aborted)
    reply = system.invoke_http(
        "POST",
        f"/admin/contacts/{erased}/erase",
        headers={"content-type": "application/json", "authorization": f"Bearer {system.admin_key}"},
        body=json.dumps({"reason": "art. 17 request #0815"}),
    )
    assert reply["statusCode"] == 200, reply
    assert json.loads(reply["body"])["executions_stopped"] == 1
    sfn = system.client("stepfunctions")
    sfn.stop_execution(executionArn=aborted_run["arn"])  # an operator, mid-incident: no marker
    system.settle()
    described = sfn.describe_execution(executionArn=erased_run["arn"])
    assert (described["status"], described["error"]) == ("ABORTED", "leadflow.stopped")
    assert described["cause"].startswith("erasure")

    dry = execution_redrive(system).run(dry_run=True)
    outcomes = {i["execution_arn"]: i["outcome"] for i in dry.items}
    assert outcomes[erased_run["arn"]] == "skipped"
    assert outcomes[aborted_run["arn"]] == "pending"

    resources = local_stage_resources(system, ("trigger", "score"))
    monkeypatch.setattr(ops, "stage_resources", lambda cfn, stage: resources)
    status = cli.main(["ops", "redrive", "--stage", "local", "--executions"])
    output = capsys.readouterr().out.strip().splitlines()
    last = json.loads(output[-1])
    assert status == 0
    assert last["skipped"] == 1
    assert last["skipped_by_reason"] == {"erasure": 1}
    assert any("1 skipped (erasure: stopped on purpose)" in line for line in output)
    redriven = [
        i["execution_arn"] for s in last["summaries"] for i in s["items"] if i["outcome"] == "redriven"
    ]
    assert aborted_run["arn"] in redriven
    assert erased_run["arn"] not in redriven

    system.settle()
    system.advance(2 * 86400 + 60)
    statuses = {e["arn"]: e["status"] for e in system.executions()}
    assert statuses[erased_run["arn"]] == "ABORTED"
    assert statuses[aborted_run["arn"]] == "SUCCEEDED"
    assert subjects_to(system, "redrive-erased@example.com") == [WELCOME]  # before the erasure only
    assert len(subjects_to(system, "redrive-aborted@example.com")) == 2  # welcome + follow-up


def test_canary_stop_execution_keeps_its_reason_only_through_the_local_patch(system: LocalSystem) -> None:
    """moto 5.2.5 drops StopExecution's error and cause (AWS keeps them): the local runtime's patch
    (``leadflow.local.sfn_stop``) is active, and without it moto still drops them — once moto keeps
    them itself, this fails and the patch goes."""
    from moto.stepfunctions.responses import StepFunctionResponse

    from leadflow.local import sfn_stop

    sfn_stop.check_moto()
    assert StepFunctionResponse.stop_execution.__qualname__.startswith("keep_stop_reasons")
    sfn = system.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="canary-stop",
        definition=json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/canary",
    )["stateMachineArn"]
    kept = sfn.start_execution(stateMachineArn=machine, name="kept")["executionArn"]
    sfn.stop_execution(executionArn=kept, error="leadflow.stopped", cause="exit: canary")
    patched = StepFunctionResponse.stop_execution
    dropped = sfn.start_execution(stateMachineArn=machine, name="dropped")["executionArn"]
    StepFunctionResponse.stop_execution = patched.__wrapped_original__  # type: ignore[attr-defined]
    try:
        sfn.stop_execution(executionArn=dropped, error="leadflow.stopped", cause="exit: canary")
    finally:
        StepFunctionResponse.stop_execution = patched  # type: ignore[method-assign]
    system.settle()
    assert (
        sfn.describe_execution(executionArn=kept).get("error"),
        sfn.describe_execution(executionArn=kept).get("cause"),
    ) == ("leadflow.stopped", "exit: canary")
    assert sfn.describe_execution(executionArn=dropped).get("error") in (None, "")
