"""Stream contract: events table INSERT records parsed into domain ``Event``s."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from leadflow.models import Event
from leadflow.store import deserialize

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
    except ValueError as exc:
        raise NotAnEvent(f"malformed event item: {exc}") from exc
