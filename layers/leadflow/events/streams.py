"""Stream contract: events table INSERT records parsed into domain ``Event``s.

Cold start: Powertools' batch package builds its pydantic record models (SQS, Kinesis, Kafka,
DynamoDB: ~15 ms) when it is imported *after* pydantic, and only then; these record models are
not used here (records are parsed into ``Event``). So this module imports it before pydantic, and
the stream functions import this module before anything that imports pydantic
(``from leadflow.events import streams`` first); ``tests/unit/test_cold_start.py`` guards it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from pydantic import ValidationError

from leadflow.events.model import Event
from leadflow.kernel.observability import lambda_handler, logger, metrics
from leadflow.platform.dynamo import deserialize

EVENT_FIELDS = set(Event.model_fields)


class NotAnEvent(ValueError):
    """A stream record that is not a well-formed event INSERT (counted and skipped, never retried)."""


def event_from_record(record: DynamoDBRecord) -> Event:
    """The event in a DynamoDB stream record of the events table."""
    if record.raw_event.get("eventName") != "INSERT":
        raise NotAnEvent(f"eventName {record.raw_event.get('eventName')!r} is not INSERT")
    image: dict[str, Any] | None = (record.raw_event.get("dynamodb") or {}).get("NewImage")
    if not image:
        raise NotAnEvent("record has no NewImage")
    item = deserialize(image)
    try:
        return Event.model_validate({k: v for k, v in item.items() if k in EVENT_FIELDS})
    except ValidationError as exc:
        # field names and error kinds only: the rejected values may be personal data
        problems = ", ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['type']}" for e in exc.errors()
        )
        raise NotAnEvent(f"malformed event item ({problems})") from exc
    except ValueError as exc:
        raise NotAnEvent("malformed event item") from exc


T = TypeVar("T")


def event_record_handler(handle: Callable[[Event], T]) -> Callable[[DynamoDBRecord], T | None]:
    """A Powertools batch record handler: parse the event, then ``handle`` it. A record that is not
    a well-formed event is rejected — logged and counted — instead of failing the batch forever."""

    def record_handler(record: DynamoDBRecord) -> T | None:
        try:
            event = event_from_record(record)
        except NotAnEvent as exc:
            logger.warning("stream record rejected", extra={"reason": str(exc), "event_id": record.event_id})
            metrics.add_metric(name="RejectedStreamRecords", unit="Count", value=1)
            return None
        return handle(event)

    return record_handler


def lambda_stream_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB Streams ``GetRecords`` record as a Lambda event source mapping delivers it (used by
    the local stream pump and by ``leadflow ops redrive``)."""
    dynamodb = dict(record["dynamodb"])
    created: Any = dynamodb.get("ApproximateCreationDateTime")
    if hasattr(created, "timestamp"):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": stream_arn.split(":")[3],
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


def stream_batch_handler(handle: Callable[[Event], Any]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A DynamoDB-stream Lambda body: every record parsed and handed to ``handle``, failures
    reported per record (partial batch response) — what trigger, score and report all do."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    record_handler = event_record_handler(handle)

    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(  # type: ignore[return-value]  # a TypedDict of the same shape
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return run


def stream_function(handle: Callable[[Event], Any]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of a consumer of the events stream (trigger, score, report): every
    record handed to ``handle`` (``stream_batch_handler``), instrumented as every function is."""
    return lambda_handler(stream_batch_handler(handle))
