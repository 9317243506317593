"""Admin routes of reporting (JSON, IAM-authorized in AWS), as a Powertools router the admin
function includes::

    from leadflow.reporting.api import reports_router
    app.include_router(reports_router)

The reader is built on first use from the settings (``LEADFLOW_REPORTS_TABLE``) (``configure`` replaces it)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.reporting.reports import AttributionReport, JourneyReport, MessageReport, ReportReader

reports_router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]
_reader: list[ReportReader] = []

GoalQuery = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Goal event type")]


def configure(reader: ReportReader) -> None:
    _reader[:] = [reader]


def reset() -> None:
    """Forget the reader (a new local system, new clients)."""
    _reader.clear()


def reader() -> ReportReader:
    if not _reader:
        from leadflow import wiring
        from leadflow.kernel.settings import get_settings
        from leadflow.reporting.config import report_reader

        _reader.append(report_reader(get_settings(), wiring.client("dynamodb")))
    return _reader[0]


@reports_router.get("/admin/reports/journeys/<journey_id>")
def journey_report(journey_id: str, goal: GoalQuery = None) -> JourneyReport:
    return reader().journey(journey_id, goal)


@reports_router.get("/admin/reports/messages/<template>")
def message_report(template: str) -> MessageReport:
    return reader().message(template)


@reports_router.get("/admin/reports/attribution")
def attribution_report() -> AttributionReport:
    return reader().attribution()
