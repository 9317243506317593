"""score: the lead engine on the events stream — behaviour and fit scores, lifecycle stages and
segment membership, exactly once per event (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings

settings = get_settings()
service = wiring.lead_engine(settings, wiring.client("dynamodb"))
batch = streams.stream_batch_handler(service.handle)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch(event, context)
