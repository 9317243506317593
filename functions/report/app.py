"""report: reporting counters from the events stream (partial batch failures, exactly-once counts).

A consumer of its own — with its own failure queue — so reporting never delays or fails lead
scoring and journey entry."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings
from leadflow.reporting.config import report_service

service = report_service(get_settings(), wiring.client("dynamodb"))
batch = streams.stream_batch_handler(service.apply)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch(event, context)
