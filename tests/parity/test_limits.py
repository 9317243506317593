"""AWS's limits on the local runtime: what AWS refuses is refused locally, with AWS's error code and
a message naming the number; what AWS accepts right under each limit goes through."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leadflow.local import limits
from leadflow.local.system import LocalSystem, resource_name

TABLE = resource_name("idempotency")


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False) as local:
        yield local


def refused(call: Any, code: str, number: int | str, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**params)
    error = caught.value.response["Error"]
    assert error["Code"] == code, error
    assert str(number) in error["Message"], error
    return caught.value


def item(key: str, payload_bytes: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "sk": {"S": "limit"}, "blob": {"S": "x" * payload_bytes}}


def test_dynamodb_item_is_at_most_400_kb(system: LocalSystem) -> None:
    ddb = system.client("dynamodb")
    overhead = limits.item_size(item("k1", 0))
    # 400,000 bytes go through (moto itself refuses above 405,000, AWS above 409,600 = 400 KB)
    ddb.put_item(TableName=TABLE, Item=item("k1", 400_000 - overhead))
    refused(
        ddb.put_item,
        "ValidationException",
        limits.ITEM_LIMIT,
        TableName=TABLE,
        Item=item("k2", limits.ITEM_LIMIT),
    )
    refused(
        ddb.transact_write_items,
        "ValidationException",
        limits.ITEM_LIMIT,
        TransactItems=[{"Put": {"TableName": TABLE, "Item": item("k3", limits.ITEM_LIMIT)}}],
    )
    refused(
        ddb.batch_write_item,
        "ValidationException",
        limits.ITEM_LIMIT,
        RequestItems={TABLE: [{"PutRequest": {"Item": item("k4", limits.ITEM_LIMIT)}}]},
    )
    assert "Item" not in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "k2"}, "sk": {"S": "limit"}})


def test_item_size_counts_names_and_values_as_dynamodb_does() -> None:
    assert limits.item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert limits.item_size({"n": {"N": "12345"}}) == 1 + 4  # (5 digits + 1) // 2 + 1
    assert limits.item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert limits.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert limits.item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (2 + 1) + (2 + 1)


def test_transactions_take_at_most_100_actions_and_4_mb(system: LocalSystem) -> None:
    ddb = system.client("dynamodb")
    puts = [{"Put": {"TableName": TABLE, "Item": item(f"t{n}", 10)}} for n in range(101)]
    refused(ddb.transact_write_items, "ValidationException", 100, TransactItems=puts)
    ddb.transact_write_items(TransactItems=puts[:100])
    big = [{"Put": {"TableName": TABLE, "Item": item(f"big{n}", 300 * 1024)}} for n in range(14)]
    refused(ddb.transact_write_items, "ValidationException", limits.TRANSACTION_BYTES, TransactItems=big)


def test_batch_write_takes_25_and_batch_get_100(system: LocalSystem) -> None:
    ddb = system.client("dynamodb")
    puts = [{"PutRequest": {"Item": item(f"b{n}", 10)}} for n in range(26)]
    refused(ddb.batch_write_item, "ValidationException", 25, RequestItems={TABLE: puts})
    ddb.batch_write_item(RequestItems={TABLE: puts[:25]})
    keys = [{"pk": {"S": f"b{n}"}, "sk": {"S": "limit"}} for n in range(101)]
    refused(ddb.batch_get_item, "ValidationException", 100, RequestItems={TABLE: {"Keys": keys}})
    found = ddb.batch_get_item(RequestItems={TABLE: {"Keys": keys[:100]}})["Responses"][TABLE]
    assert len(found) == 25


def test_messages_are_at_most_256_kb(system: LocalSystem) -> None:
    sqs, sns, events = system.client("sqs"), system.client("sns"), system.client("events")
    url = system.webhook_dead_letters_url
    topic = f"arn:aws:sns:us-east-1:123456789012:{resource_name('sales-handoff')}"
    sqs.send_message(QueueUrl=url, MessageBody="x" * limits.MESSAGE_LIMIT)
    sns.publish(TopicArn=topic, Message=json.dumps({"pad": "x" * (limits.MESSAGE_LIMIT - 20)}))
    too_long = "x" * (limits.MESSAGE_LIMIT + 1)
    # (call, error code, the limit its message names, parameters)
    over_a_limit: list[tuple[Any, str, int, dict[str, Any]]] = [
        (
            sqs.send_message,
            "InvalidParameterValue",
            limits.MESSAGE_LIMIT,
            {"QueueUrl": url, "MessageBody": too_long},
        ),
        (
            sqs.send_message_batch,
            "AWS.SimpleQueueService.BatchRequestTooLong",
            limits.MESSAGE_LIMIT,
            {"QueueUrl": url, "Entries": [{"Id": str(n), "MessageBody": "x" * 30000} for n in range(9)]},
        ),
        (
            sqs.send_message_batch,
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            10,
            {"QueueUrl": url, "Entries": [{"Id": str(n), "MessageBody": "x"} for n in range(11)]},
        ),
        (sns.publish, "InvalidParameter", limits.MESSAGE_LIMIT, {"TopicArn": topic, "Message": too_long}),
    ]
    for call, code, limit, params in over_a_limit:
        refused(call, code, limit, **params)

    entry = {"Source": "leadflow", "DetailType": "t", "EventBusName": resource_name("leads")}
    refused(
        events.put_events,
        "ValidationException",
        limits.MESSAGE_LIMIT,
        Entries=[{**entry, "Detail": json.dumps({"pad": "x" * limits.MESSAGE_LIMIT})}],
    )
    refused(events.put_events, "ValidationException", 10, Entries=[{**entry, "Detail": "{}"}] * 11)


def test_step_functions_input_and_execution_names(system: LocalSystem) -> None:
    sfn = system.client("stepfunctions")
    machine = system.state_machines["welcome"]
    refused(sfn.start_execution, "InvalidName", 80, stateMachineArn=machine, name="x" * 81, input="{}")
    for bad in ("", "with space", "a/b", "a:b", "tab\there", "star*", 'quote"'):
        refused(sfn.start_execution, "InvalidName", 80, stateMachineArn=machine, name=bad, input="{}")
    pad = json.dumps({"contact_id": "c-limit", "pad": "x" * limits.MESSAGE_LIMIT})
    refused(
        sfn.start_execution,
        "ValidationException",
        limits.MESSAGE_LIMIT,
        stateMachineArn=machine,
        name="limit-input",
        input=pad,
    )
    limits.check_execution_name("welcome-c01m8ykb78pynhh2xvbzhe7yt6y")  # leadflow's own names pass
    limits.check_execution_name("x" * 80)
    refused(
        sfn.send_task_success,
        "ValidationException",
        limits.MESSAGE_LIMIT,
        taskToken="t",
        output="x" * (limits.MESSAGE_LIMIT + 1),
    )


def test_lambda_payloads_6_mb_sync_256_kb_async(system: LocalSystem) -> None:
    lam = system.client("lambda")
    name = resource_name("send")
    refused(
        lam.invoke,
        "RequestTooLargeException",
        limits.SYNC_PAYLOAD_LIMIT,
        FunctionName=name,
        Payload=b"x" * (limits.SYNC_PAYLOAD_LIMIT + 1),
    )
    refused(
        lam.invoke,
        "RequestTooLargeException",
        limits.MESSAGE_LIMIT,
        FunctionName=name,
        InvocationType="Event",
        Payload=b"x" * (limits.MESSAGE_LIMIT + 1),
    )


def test_limits_are_removed_with_the_local_runtime() -> None:
    """``enforced()`` leaves botocore as it found it (the local runtime's own stays until it closes)."""
    from botocore.handlers import BUILTIN_HANDLERS

    before = BUILTIN_HANDLERS.count((limits.EVENT, limits.check))
    with limits.enforced():
        assert BUILTIN_HANDLERS.count((limits.EVENT, limits.check)) == before + 1
    assert BUILTIN_HANDLERS.count((limits.EVENT, limits.check)) == before
