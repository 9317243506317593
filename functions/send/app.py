"""send: the journey state machines' send step (Lambda task). Returns SendResult as the task output."""

from __future__ import annotations

from email.utils import formataddr
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.messaging import EmailRenderer
from leadflow.models import SendRequest
from leadflow.observability import logger, metrics, tracer
from leadflow.sending import SendService
from leadflow.settings import get_settings

settings = get_settings()
_ddb = wiring.client("dynamodb")
service = SendService(
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
)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=SendRequest)
    return service.send_email(request).model_dump()
