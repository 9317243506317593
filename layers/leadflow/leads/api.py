"""Admin routes of sales: the feedback that closes the hand-off loop.

``POST /admin/contacts/{contact_id}/sales-feedback`` with ``{outcome: accepted|rejected|won|lost,
reason?, owner?, deal_value?, currency?, request_id?}`` -> 200 ``{contact_id, outcome, stage,
previous_stage, changed}``; an unknown contact is 404, an invalid body 400 naming the field.
See ``leadflow.leads.sales_feedback``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow import wiring
from leadflow.kernel.clock import utc_now
from leadflow.kernel.settings import Settings
from leadflow.leads.model import load_lead_model
from leadflow.leads.sales_feedback import SalesFeedbackIn, SalesFeedbackResult, SalesFeedbackService


def build_router(settings: Settings, client: Callable[[str], Any]) -> APIGatewayHttpRouter:
    """The routes, wired from the settings and ``client(service)`` (boto3 clients)."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]
    ddb = client("dynamodb")
    lead_model = load_lead_model(settings.leads_file)
    feedback = SalesFeedbackService(
        client=ddb,
        contacts_table=settings.contacts_table,
        events=wiring.event_store(settings, ddb),
        marks=wiring.idempotency_marks(settings, ddb),
        transact=wiring.transactor(ddb),
        lead_model=lambda: lead_model,
        now=utc_now,
    )

    @router.post("/admin/contacts/<contact_id>/sales-feedback")
    def sales_feedback(contact_id: str, body: SalesFeedbackIn) -> SalesFeedbackResult:
        return feedback.record(contact_id, body)

    return router
