"""score: lead scoring from the events stream (partial batch failures, exactly-once points)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.observability import logger, metrics, tracer
from leadflow.scoring import ScoringService
from leadflow.settings import get_settings
from leadflow.streams import stream_batch_handler

settings = get_settings()
_ddb = wiring.client("dynamodb")
service = ScoringService(
    contacts=wiring.contact_store(settings, _ddb),
    marks=wiring.idempotency_marks(settings, _ddb),
    transact=wiring.transactor(_ddb),
)
batch = stream_batch_handler(service.apply)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch(event, context)
