"""Admin routes of reporting (JSON, IAM-authorized in AWS): a journey's funnel, a template's
message figures and the attribution of conversions. Routes only, over the ``ReportReader`` they are
given (``leadflow.wiring.admin_app``; ``wiring.report_reader`` builds it)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.reporting.reports import AttributionReport, JourneyReport, MessageReport, ReportReader

GoalQuery = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Goal event type")]


def router(reader: ReportReader) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.get("/admin/reports/journeys/<journey_id>")
    def journey_report(journey_id: str, goal: GoalQuery = None) -> JourneyReport:
        return reader.journey(journey_id, goal)

    @router.get("/admin/reports/messages/<template>")
    def message_report(template: str) -> MessageReport:
        return reader.message(template)

    @router.get("/admin/reports/attribution")
    def attribution_report() -> AttributionReport:
        return reader.attribution()

    return router
