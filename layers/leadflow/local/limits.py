"""AWS's request limits, enforced on the local runtime's clients as AWS enforces them.

moto lets through requests AWS refuses (a 300 KB SNS message, a 26-item BatchWriteItem, an
execution name with a space ...). While ``enforced()`` is active, a botocore
``before-parameter-build`` hook on every client checks each request against AWS's documented
limits and raises the ``ClientError`` AWS would answer — its error code, and a message naming
the limit — before the request reaches moto. Code that passes locally therefore does not meet
these refusals first in production. Limits of what happens inside the services (Step Functions
state input/output, payloads Lambda hands to functions, environment and code size) are checked by
the parity tier (``tests/parity``) and ``tests/infra``.

Numbers (AWS documentation, 2026):
- Step Functions: execution input and task output 256 KB (262,144 bytes); execution name
  1-80 characters, no whitespace, none of ``< > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /``,
  no control characters.
- DynamoDB: item 400 KB (409,600 bytes, names + values); TransactWriteItems 100 actions and
  4 MB; BatchWriteItem 25 requests; BatchGetItem 100 keys.
- SNS Publish, SQS SendMessage (each message and a whole batch, 10 entries at most),
  EventBridge PutEvents (10 entries): 256 KB (262,144 bytes).
- Lambda Invoke: 6 MB (6,291,456 bytes) synchronous, 256 KB asynchronous (``Event``).

Not checked here: the item an ``UpdateItem`` produces (moto itself refuses items over 405,000
bytes, a little below AWS's 409,600) and SMS lengths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import boto3
import botocore.handlers
from botocore.exceptions import ClientError

KB = 1024
MESSAGE_LIMIT = 256 * KB
"""SNS, SQS, EventBridge messages; Step Functions input/output; Lambda asynchronous payloads."""
ITEM_LIMIT = 400 * KB
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 4 * KB * KB
BATCH_WRITE_ITEMS = 25
BATCH_GET_ITEMS = 100
BATCH_ENTRIES = 10
SYNC_PAYLOAD_LIMIT = 6 * KB * KB
EXECUTION_NAME_MAX = 80
_NAME_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")

EVENT = "before-parameter-build"


def refuse(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def _text_size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(str(value).encode())


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value (low-level ``{"S": ...}`` form)."""
    [(kind, inner)] = value.items()
    if kind in ("S", "B"):
        return _text_size(inner)
    if kind == "N":
        digits = str(Decimal(str(inner)).normalize()).lstrip("-").replace(".", "")
        return (len(digits.lstrip("0")) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(_text_size(v) for v in inner)
    if kind == "NS":
        return sum(attribute_size({"N": v}) for v in inner)
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(_text_size(k) + attribute_size(v) + 1 for k, v in inner.items())
    return _text_size(json.dumps(inner, default=str))


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it against 400 KB: attribute names plus values."""
    return sum(_text_size(name) + attribute_size(value) for name, value in item.items())


def _at_most(amount: int, limit: int, code: str, message: str, operation: str, status: int = 400) -> None:
    """Refuse the request as AWS does (``code``, ``message``) when ``amount`` is over ``limit``."""
    if amount > limit:
        raise refuse(code, message, operation, status)


def _too_long(member: str, limit: int, got: str = "") -> str:
    """AWS's validation message of a member over its length limit."""
    return (
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have "
        f"length less than or equal to {limit}{got}"
    )


def _check_item(item: Mapping[str, Any], operation: str) -> int:
    size = item_size(item)
    message = f"Item size has exceeded the maximum allowed size ({size} bytes; the limit is {ITEM_LIMIT} bytes, 400 KB)"
    _at_most(size, ITEM_LIMIT, "ValidationException", message, operation)
    return size


def _dynamodb(operation: str, params: Mapping[str, Any]) -> None:
    if operation == "PutItem":
        _check_item(params.get("Item", {}), operation)
    elif operation == "TransactWriteItems":
        actions = params.get("TransactItems", [])
        message = _too_long("transactItems", TRANSACTION_ITEMS, f" (got {len(actions)})")
        _at_most(len(actions), TRANSACTION_ITEMS, "ValidationException", message, operation)
        total = 0
        for action in actions:
            [(kind, body)] = action.items()
            total += _check_item(body["Item"], operation) if kind == "Put" else item_size(body.get("Key", {}))
            total += item_size(body.get("ExpressionAttributeValues", {}))
        message = f"Transaction request cannot be larger than 4 MB ({TRANSACTION_BYTES} bytes; got {total})"
        _at_most(total, TRANSACTION_BYTES, "ValidationException", message, operation)
    elif operation == "BatchWriteItem":
        requests = [r for table in params.get("RequestItems", {}).values() for r in table]
        message = f"Too many items requested for the BatchWriteItem call: {len(requests)}, at most {BATCH_WRITE_ITEMS}"
        _at_most(len(requests), BATCH_WRITE_ITEMS, "ValidationException", message, operation)
        for request in requests:
            if "PutRequest" in request:
                _check_item(request["PutRequest"]["Item"], operation)
    elif operation == "BatchGetItem":
        keys = sum(len(t.get("Keys", [])) for t in params.get("RequestItems", {}).values())
        message = f"Too many items requested for the BatchGetItem call: {keys}, at most {BATCH_GET_ITEMS}"
        _at_most(keys, BATCH_GET_ITEMS, "ValidationException", message, operation)


def _message_attributes_size(attributes: Mapping[str, Any] | None) -> int:
    total = 0
    for name, attribute in (attributes or {}).items():
        total += _text_size(name) + _text_size(attribute.get("DataType"))
        total += _text_size(attribute.get("StringValue")) + _text_size(attribute.get("BinaryValue"))
    return total


def _sqs_size(message: Mapping[str, Any]) -> int:
    """An SQS message's size: its body and its attributes."""
    return _text_size(message.get("MessageBody")) + _message_attributes_size(message.get("MessageAttributes"))


def _sqs(operation: str, params: Mapping[str, Any]) -> None:
    if operation == "SendMessage":
        message = (
            f"One or more parameters are invalid. Reason: Message must be shorter than {MESSAGE_LIMIT} bytes."
        )
        _at_most(_sqs_size(params), MESSAGE_LIMIT, "InvalidParameterValue", message, operation)
    elif operation == "SendMessageBatch":
        entries = params.get("Entries", [])
        message = f"Maximum number of entries per request are {BATCH_ENTRIES}. You have sent {len(entries)}."
        _at_most(
            len(entries),
            BATCH_ENTRIES,
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            message,
            operation,
        )
        total = sum(_sqs_size(e) for e in entries)
        message = f"Batch requests cannot be longer than {MESSAGE_LIMIT} bytes. You have sent {total} bytes."
        _at_most(total, MESSAGE_LIMIT, "AWS.SimpleQueueService.BatchRequestTooLong", message, operation)


def _sns(operation: str, params: Mapping[str, Any]) -> None:
    if operation == "Publish":
        size = (
            _text_size(params.get("Message"))
            + _text_size(params.get("Subject"))
            + _message_attributes_size(params.get("MessageAttributes"))
        )
        message = f"Invalid parameter: Message too long ({size} bytes; at most {MESSAGE_LIMIT} bytes, 256 KB)"
        _at_most(size, MESSAGE_LIMIT, "InvalidParameter", message, operation)


def _events(operation: str, params: Mapping[str, Any]) -> None:
    if operation == "PutEvents":
        entries = params.get("Entries", [])
        _at_most(
            len(entries), BATCH_ENTRIES, "ValidationException", _too_long("entries", BATCH_ENTRIES), operation
        )
        total = 0
        for entry in entries:
            total += sum(_text_size(entry.get(k)) for k in ("Source", "DetailType", "Detail", "EventBusName"))
            total += sum(_text_size(r) for r in entry.get("Resources", []))
            total += 14 if entry.get("Time") else 0
        message = (
            f"Total size of the entries in the request is over the limit: {total} bytes, at most {MESSAGE_LIMIT} "
            "bytes (256 KB)"
        )
        _at_most(total, MESSAGE_LIMIT, "ValidationException", message, operation)


def check_execution_name(name: str, operation: str = "StartExecution") -> None:
    if not 1 <= len(name) <= EXECUTION_NAME_MAX or _NAME_FORBIDDEN.search(name):
        raise refuse(
            "InvalidName",
            f"Invalid Name: '{name}' (1-{EXECUTION_NAME_MAX} characters; no whitespace, brackets, wildcards, "
            'control characters or any of " # % \\ ^ | ~ ` $ & , ; : /)',
            operation,
        )


def _stepfunctions(operation: str, params: Mapping[str, Any]) -> None:
    if operation == "StartExecution":
        if "name" in params:
            check_execution_name(str(params["name"]))
        size = _text_size(params.get("input"))
        message = _too_long("input", MESSAGE_LIMIT, f" (got {size} bytes)")
        _at_most(size, MESSAGE_LIMIT, "ValidationException", message, operation)
    elif operation == "SendTaskSuccess":
        size = _text_size(params.get("output"))
        _at_most(size, MESSAGE_LIMIT, "ValidationException", _too_long("output", MESSAGE_LIMIT), operation)


def _lambda(operation: str, params: Mapping[str, Any]) -> None:
    if operation in ("Invoke", "InvokeAsync"):
        payload = params.get("Payload") or params.get("InvokeArgs") or b""
        if hasattr(payload, "read"):
            return  # a stream: its size is not known here
        asynchronous = operation == "InvokeAsync" or params.get("InvocationType") == "Event"
        limit = MESSAGE_LIMIT if asynchronous else SYNC_PAYLOAD_LIMIT
        size = _text_size(payload)
        message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation (got {size})"
        _at_most(size, limit, "RequestTooLargeException", message, operation, status=413)


CHECKS = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "events": _events,
    "stepfunctions": _stepfunctions,
    "lambda": _lambda,
}


def check(params: Mapping[str, Any], model: Any, **_: Any) -> None:
    """The botocore hook: refuse what AWS would refuse."""
    found = CHECKS.get(model.service_model.service_name)
    if found is not None:
        found(model.name, params)


@contextmanager
def enforced() -> Iterator[None]:
    """While active, every boto3 client made (on the default session or a new one) refuses
    over-limit requests as AWS does. botocore copies a session's handlers into a client when it is
    made: the local runtime enters this before it makes any client."""
    botocore.handlers.BUILTIN_HANDLERS.append((EVENT, check))
    default = boto3._get_default_session()._session
    default.register(EVENT, check)
    try:
        yield
    finally:
        default.unregister(EVENT, check)
        botocore.handlers.BUILTIN_HANDLERS.remove((EVENT, check))
