"""trigger: journey entries and exits from the events stream; records email engagement."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.journeys import load_journeys
from leadflow.journeys.runtime.entry import TriggerService
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings
from leadflow.leads.model import load_lead_model

settings = get_settings()
_ddb = wiring.client("dynamodb")
service = TriggerService(
    journeys=load_journeys(settings.journeys_dir),
    messages=wiring.message_store(settings, _ddb),
    store=wiring.journey_store(settings, _ddb),
    sfn=wiring.client("stepfunctions"),
    state_machine_arn=settings.state_machine_arn,
    start_arn=settings.state_machine_alias_arn,  # the live version: executions keep theirs
    events=wiring.event_store(settings, _ddb),
    lead_model=load_lead_model(settings.leads_file),
)
batch = streams.stream_batch_handler(service.handle)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch(event, context)
