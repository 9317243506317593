"""Building the reporting services from the settings (``leadflow.kernel.settings``).

Each builder imports what it builds: the ``report`` function (the consumer) does not load the
read side's report models at cold start, nor the admin API the consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leadflow.events.store import IdempotencyMarks
from leadflow.kernel.settings import Settings
from leadflow.platform.dynamo import Transaction
from leadflow.reporting.counters import ReportTable

if TYPE_CHECKING:
    from leadflow.reporting.consumer import ReportService
    from leadflow.reporting.reports import ReportReader


def report_service(settings: Settings, ddb: Any) -> ReportService:
    from leadflow.reporting.consumer import ReportService

    def commit(txn: Transaction) -> None:
        txn.commit(ddb)

    return ReportService(
        table=ReportTable(ddb, settings.reports_table),
        marks=IdempotencyMarks(ddb, settings.idempotency_table),
        transact=commit,
        goals=settings.goals,
    )


def report_reader(settings: Settings, ddb: Any) -> ReportReader:
    from leadflow.reporting.reports import ReportReader

    return ReportReader(ReportTable(ddb, settings.reports_table), settings.goals)
