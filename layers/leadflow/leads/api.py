"""Admin routes of sales: the feedback that closes the hand-off loop.

``POST /admin/contacts/{contact_id}/sales-feedback`` with ``{outcome: accepted|rejected|won|lost,
reason?, owner?, deal_value?, currency?, request_id?}`` -> 200 ``{contact_id, outcome, stage,
previous_stage, changed}``; an unknown contact is 404, an invalid body 400 naming the field.
See ``leadflow.leads.sales_feedback``.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.leads.sales_feedback import SalesFeedbackIn, SalesFeedbackResult, SalesFeedbackService


def router(feedback: SalesFeedbackService) -> APIGatewayHttpRouter:
    """The routes over ``feedback`` (``leadflow.wiring.admin_app`` builds it)."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.post("/admin/contacts/<contact_id>/sales-feedback")
    def sales_feedback(contact_id: str, body: SalesFeedbackIn) -> SalesFeedbackResult:
        return feedback.record(contact_id, body)

    return router
