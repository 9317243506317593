"""feedback: SNS-delivered provider feedback — SES event publishing (bounces, complaints, deliveries,
rejects) and inbound two-way SMS (STOP). Wiring only: each record's message goes to
``leadflow.messaging.provider_feedback``; a malformed one is logged (no personal data) and counted, never retried."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler, logger, metrics
from leadflow.kernel.settings import get_settings
from leadflow.messaging.provider_feedback import BadNotification

service = wiring.feedback_service(get_settings())


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    records = event.get("Records") if isinstance(event, dict) else None
    for record in records if isinstance(records, list) else [None]:
        sns = record.get("Sns") if isinstance(record, dict) else None
        try:
            if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
                raise BadNotification("not an SNS record with a Message")
            outcome: str = service.process(
                sns["Message"],
                sns_message_id=str(sns.get("MessageId") or ""),
                sns_timestamp=sns.get("Timestamp") if isinstance(sns.get("Timestamp"), str) else None,
            )
        except BadNotification as exc:
            logger.warning("notification rejected", extra={"reason": str(exc)})
            metrics.add_metric(name="FeedbackRejected", unit="Count", value=1)
            outcome = "rejected"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"outcomes": outcomes}


handler = lambda_handler(process)
