"""The local runtime's machinery: moto patches (canary), virtual clock, stream pump semantics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import moto
import pytest
from moto import mock_aws

from leadflow.local import moto_patches
from leadflow.local.clock import VirtualClock
from leadflow.local.pump import Consumer, StreamPump
from leadflow.local.system import AWS_ENV, create_table
from leadflow.platform.tables import EVENTS


def test_canary_moto_internals_are_where_the_patches_expect_them() -> None:
    """Fails loudly when moto is upgraded: the local runtime patches moto 5.2.5's internals."""
    assert moto.__version__ == moto_patches.MOTO_VERSION
    moto_patches.check_moto()
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    original = (LambdaSimpleBackend.invoke, WaitFunction._wait_interval)
    with moto_patches.patched_moto(VirtualClock(), {}):
        assert LambdaSimpleBackend.invoke is not original[0]
        assert WaitFunction._wait_interval is not original[1]
    assert (LambdaSimpleBackend.invoke, WaitFunction._wait_interval) == original


def test_clock_wakes_concurrent_waiters_in_due_order() -> None:
    clock = VirtualClock(start=1000.0)
    woken: list[tuple[str, float]] = []

    def waiter(name: str, seconds: float) -> None:
        clock.sleep(seconds)
        woken.append((name, clock.now()))

    threads = [threading.Thread(target=waiter, args=(n, s)) for n, s in (("c", 300), ("a", 100), ("b", 200))]
    for t in threads:
        t.start()
    while clock.parked < 3:
        time.sleep(0.001)

    def settle() -> None:
        deadline = time.monotonic() + 5
        while len(woken) + clock.parked < 3 and time.monotonic() < deadline:
            time.sleep(0.001)

    assert clock.advance(250, settle=settle) == 1250.0
    assert woken == [("a", 1100.0), ("b", 1200.0)]
    clock.advance(100, settle=settle)
    for t in threads:
        t.join(1)
    assert woken == [("a", 1100.0), ("b", 1200.0), ("c", 1300.0)]
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        import boto3

        yield boto3


def test_pump_retries_failed_records_and_dead_letters_poison(aws: Any) -> None:
    """A record that keeps failing ends in the consumer's on-failure queue; the others are
    delivered exactly once and in order, and another consumer is unaffected."""
    ddb = aws.client("dynamodb")
    table = create_table(ddb, EVENTS, "events-test")
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName="failures")["QueueUrl"]
    for i in range(5):
        ddb.put_item(
            TableName="events-test", Item={"pk": {"S": "C#1"}, "sk": {"S": f"EV#{i}"}, "n": {"N": str(i)}}
        )

    seen: list[int] = []
    calls = {"n": 0}
    poison: list[str] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls["n"] += 1
        failures = []
        for record in event["Records"]:
            n = int(record["dynamodb"]["NewImage"]["n"]["N"])
            if n == 2:
                poison.append(record["dynamodb"]["SequenceNumber"])
                failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
                break
            seen.append(n)
        return {"batchItemFailures": failures}

    healthy: list[int] = []

    def ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
        healthy.extend(int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in event["Records"])
        assert all(
            r["eventSource"] == "aws:dynamodb" and r["eventName"] == "INSERT" for r in event["Records"]
        )
        return {"batchItemFailures": []}

    pump = StreamPump(
        streams=aws.client("dynamodbstreams"),
        sqs=sqs,
        stream_arn=table["LatestStreamArn"],
        region="us-east-1",
    )
    pump.add_consumer(Consumer(name="flaky", handler=flaky, dlq_url=dlq, max_attempts=3))
    pump.add_consumer(Consumer(name="ok", handler=ok, dlq_url=dlq))
    pump.drain()
    assert seen == [0, 1, 3, 4]
    assert healthy == [0, 1, 2, 3, 4]
    [message] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    body = json.loads(message["Body"])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert "record" not in body  # as in AWS: the batch's position, not its records
    info = body["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        poison[0],
        poison[0],
        1,
    )
    assert info["shardId"]
    assert pump.pending() == 0
    assert pump.drain() == 0  # nothing is delivered twice


def test_canary_a_cancelled_transaction_changes_no_item_and_no_stream_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given the patched TransactWriteItems (it restores the items it touched instead of copying
    whole tables), when a transaction is cancelled half-way, then every item and the stream are as
    before; when it commits, everything is written and each write is one stream record."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws(), moto_patches.patched_moto(VirtualClock(), {}):
        import boto3

        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, EVENTS, "canary-events")
        ddb.put_item(TableName="canary-events", Item={"pk": {"S": "A"}, "sk": {"S": "1"}, "n": {"N": "1"}})
        arn = ddb.describe_table(TableName="canary-events")["Table"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")

        def stream_length() -> int:
            shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
            return len(streams.get_records(ShardIterator=it["ShardIterator"])["Records"])

        def items() -> list[dict[str, Any]]:
            return sorted(ddb.scan(TableName="canary-events")["Items"], key=lambda i: json.dumps(i))

        ddb.put_item(TableName="canary-events", Item={"pk": {"S": "Z"}, "sk": {"S": "1"}})
        before, length = items(), stream_length()
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": "canary-events",
                    "Key": {"pk": {"S": "A"}, "sk": {"S": "1"}},
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            {"Put": {"TableName": "canary-events", "Item": {"pk": {"S": "B"}, "sk": {"S": "1"}}}},
        ]
        failing = {
            "Put": {
                "TableName": "canary-events",
                "Item": {"pk": {"S": "Z"}, "sk": {"S": "1"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[*writes, failing])
        assert items() == before
        assert stream_length() == length

        ddb.transact_write_items(TransactItems=writes)
        assert {i["pk"]["S"]: i.get("n", {}).get("N") for i in items()} == {"A": "2", "B": None, "Z": None}
        assert stream_length() == length + 2


CALLBACK_ASL = {
    "StartAt": "Wait for the answer",
    "States": {
        "Wait for the answer": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {
                "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:probe",
                "Payload": {"token.$": "$$.Task.Token", "name.$": "$.name"},
            },
            "TimeoutSeconds": 3600,
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Timed out"}],
            "Next": "Answered",
        },
        "Answered": {"Type": "Succeed"},
        "Timed out": {"Type": "Pass", "Result": "late", "ResultPath": "$.outcome", "End": True},
    },
}


def test_callback_tasks_wait_on_the_virtual_clock_and_resume_on_send_task_success(tmp_path: Any) -> None:
    """``.waitForTaskToken`` on the local runtime: parked on the token (``settle`` sees it as parked),
    ``SendTaskSuccess`` resumes it at once, ``TimeoutSeconds`` runs out on the virtual clock only."""
    from leadflow.local.system import LocalSystem

    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    tokens: dict[str, str] = {}
    with LocalSystem(background_pump=False, content_dir=tmp_path, clock_start=1_000_000.0) as system:
        system.handlers["probe"] = lambda payload, _ctx: tokens.update({payload["name"]: payload["token"]})
        sfn = system.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="probe",
            definition=json.dumps(CALLBACK_ASL),
            roleArn="arn:aws:iam::123456789012:role/probe",
        )["stateMachineArn"]
        answered = sfn.start_execution(stateMachineArn=machine, name="answered", input='{"name": "a"}')
        late = sfn.start_execution(stateMachineArn=machine, name="late", input='{"name": "b"}')
        system.settle()  # both parked on their tokens
        assert set(tokens) == {"a", "b"}
        assert system.clock.parked == 2

        sfn.send_task_success(taskToken=tokens["a"], output=json.dumps({"event_id": "e1"}))
        system.settle()
        assert sfn.describe_execution(executionArn=answered["executionArn"])["status"] == "SUCCEEDED"
        assert system.clock.now() == 1_000_000.0  # no clock advance needed

        system.advance(3599)
        assert sfn.describe_execution(executionArn=late["executionArn"])["status"] == "RUNNING"
        system.advance(1)
        done = sfn.describe_execution(executionArn=late["executionArn"])
        assert done["status"] == "SUCCEEDED"
        assert json.loads(done["output"])["outcome"] == "late"
        # AWS answers TaskTimedOut for a token whose task ended, moto InvalidToken: trigger ignores both
        with pytest.raises((sfn.exceptions.TaskTimedOut, sfn.exceptions.InvalidToken)):
            sfn.send_task_success(taskToken=tokens["b"], output="{}")
