"""send: the journey step function — every task of a journey state machine (sends, decisions,
schedules, contact updates, sales hand-offs, webhooks, leaving). Returns the step's result."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.journeys.runtime.steps import JourneyStepRunner
from leadflow.journeys.runtime.tasks import TASK
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings
from leadflow.leads.handoff import HandoffPublisher, InteractionHistory
from leadflow.leads.routing import Assignments, OwnerPicker

settings = get_settings()
_ddb = wiring.client("dynamodb")
lead_model = wiring.lead_model(settings)
sender = wiring.send_service(settings, _ddb)  # the same lead model (wiring.lead_model)
runner = JourneyStepRunner(
    store=wiring.journey_store(settings, _ddb),
    messages=wiring.message_store(settings, _ddb),
    events=wiring.event_store(settings, _ddb),
    marks=wiring.idempotency_marks(settings, _ddb),
    sender=sender,
    transact=wiring.transactor(_ddb),
    contacts_table=settings.contacts_table,
    handoffs=HandoffPublisher(  # hand-offs, webhook dead letters and early wait answers are rare:
        sns=wiring.lazy_client("sns"),  # their clients are built at first use
        events=wiring.lazy_client("events"),
        topic_arn=settings.sales_topic_arn,
        event_bus_name=settings.event_bus_name,
    ),
    history=InteractionHistory(_ddb, settings.events_table),
    assignments=Assignments(
        client=_ddb,
        idempotency_table=settings.idempotency_table,
        picker=OwnerPicker(client=_ddb, contacts_table=settings.contacts_table, model=lambda: lead_model),
        now=time.time,
    ),
    lead_model=lambda: lead_model,
    sqs=wiring.lazy_client("sqs"),
    dead_letter_queue_url=settings.webhook_dead_letter_queue_url,
    webhook_keys=wiring.webhook_keys_source(settings.webhook_secrets_secret),
    allow_plain_http=settings.stage == "local",
    sfn=wiring.lazy_client("stepfunctions"),
)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runner.run(TASK.validate_python(event))
