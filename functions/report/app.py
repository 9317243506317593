"""report: reporting counters from the events stream (partial batch failures, exactly-once counts).

A consumer of its own — with its own failure queue — so reporting never delays or fails lead
scoring and journey entry."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.observability import logger, metrics, tracer
from leadflow.reporting.config import report_service
from leadflow.settings import get_settings
from leadflow.streams import event_record_handler

service = report_service(get_settings(), wiring.client("dynamodb"))
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


record_handler = event_record_handler(service.apply)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]  # a TypedDict of the same shape
        event=event, record_handler=record_handler, processor=processor, context=context
    )
