"""trigger: starts journeys whose entry rule an event matches; records email engagement."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.journeys import load_journeys
from leadflow.observability import logger, metrics, tracer
from leadflow.settings import get_settings
from leadflow.streams import NotAnEvent, event_from_record
from leadflow.triggering import TriggerService

settings = get_settings()
service = TriggerService(
    journeys=load_journeys(settings.journeys_dir),
    messages=wiring.message_store(settings, wiring.client("dynamodb")),
    sfn=wiring.client("stepfunctions"),
    state_machine_arn=settings.state_machine_arn,
)
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> list[str]:
    try:
        event = event_from_record(record)
    except NotAnEvent as exc:  # rejected, logged and counted; retrying cannot fix it
        logger.warning("stream record rejected", extra={"reason": str(exc), "event_id": record.event_id})
        metrics.add_metric(name="RejectedStreamRecords", unit="Count", value=1)
        return []
    return service.handle(event)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]  # a TypedDict of the same shape
        event=event, record_handler=record_handler, processor=processor, context=context
    )
