"""send: the journey step function — every task of a journey state machine (sends, decisions,
schedules, contact updates, sales hand-offs, webhooks, leaving). Returns the step's result."""

from __future__ import annotations

from email.utils import formataddr
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.journey_steps import JourneyStepRunner, StepRequest
from leadflow.messaging import EmailRenderer
from leadflow.observability import logger, metrics, tracer
from leadflow.sending import SendService
from leadflow.settings import get_settings

settings = get_settings()
_ddb = wiring.client("dynamodb")
sender = SendService(
    contacts=wiring.contact_store(settings, _ddb),
    messages=wiring.message_store(settings, _ddb),
    events=wiring.event_store(settings, _ddb),
    renderer=EmailRenderer(settings.templates_dir),
    signer=wiring.token_signer(settings),
    ses=wiring.client("ses"),
    transact=wiring.transactor(_ddb),
    public_base_url=settings.public_base_url,
    sender=formataddr((settings.sender_name, settings.sender_email)),
    unsubscribe_mailto=settings.unsubscribe_mailto,
    configuration_set=settings.ses_configuration_set,
    sns=wiring.client("sns"),
    sms_sender_id=settings.sms_sender_id,
    sms_origination_number=settings.sms_origination_number,
    sms_type=settings.sms_type,
)
runner = JourneyStepRunner(
    store=wiring.journey_store(settings, _ddb),
    messages=wiring.message_store(settings, _ddb),
    events=wiring.event_store(settings, _ddb),
    marks=wiring.idempotency_marks(settings, _ddb),
    sender=sender,
    transact=wiring.transactor(_ddb),
    contacts_table=settings.contacts_table,
    sns=wiring.client("sns"),
    sales_topic_arn=settings.sales_topic_arn,
    webhook_keys=wiring.webhook_keys_source(settings.webhook_secrets_secret),
    allow_plain_http=settings.stage == "local",
)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runner.run(parse(event=event, model=StepRequest))
