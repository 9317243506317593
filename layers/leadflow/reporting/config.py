"""Building the reporting services from the settings (``leadflow.settings``)."""

from __future__ import annotations

from typing import Any

from leadflow.reporting.consumer import ReportService
from leadflow.reporting.counters import ReportTable
from leadflow.reporting.reports import ReportReader
from leadflow.settings import Settings
from leadflow.store import IdempotencyMarks, Transaction


def report_service(settings: Settings, ddb: Any) -> ReportService:
    def commit(txn: Transaction) -> None:
        txn.commit(ddb)

    return ReportService(
        table=ReportTable(ddb, settings.reports_table),
        marks=IdempotencyMarks(ddb, settings.idempotency_table),
        transact=commit,
        goals=settings.goals,
    )


def report_reader(settings: Settings, ddb: Any) -> ReportReader:
    return ReportReader(ReportTable(ddb, settings.reports_table), settings.goals)
