"""AWS calls to build a journey report, with few and with many contacts enrolled (target: equal).

Contacts are enrolled through the report consumer's own code: the first 100 as real
``journey_entered``/``email_sent``/``purchase`` events through ``ReportService.apply``, the rest as the
same counter increments merged per thousand contacts (``Changes``), so 10,000 enrollments take seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leadflow.events.model import Event
from leadflow.events.store import IdempotencyMarks
from leadflow.local.system import resource_name
from leadflow.platform.dynamo import Transaction
from leadflow.reporting.consumer import ReportService
from leadflow.reporting.reports import ReportReader
from leadflow.reporting.store import Changes, ReportTable, rkeys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REAL_EVENTS = 100


def _service(ddb: DynamoDBClient) -> tuple[ReportService, ReportTable]:
    table = ReportTable(ddb, resource_name("reports"))

    def commit(txn: Transaction) -> None:
        txn.commit(ddb)

    marks = IdempotencyMarks(ddb, resource_name("idempotency"))
    return ReportService(table=table, marks=marks, transact=commit), table


def enroll(ddb: DynamoDBClient, journey_id: str, contacts: int) -> None:
    service, table = _service(ddb)
    for i in range(min(contacts, REAL_EVENTS)):
        cid = f"{journey_id}-c{i}"
        at = "2026-03-02T09:00:00.000Z"
        service.apply(Event(event_id=f"{cid}-in", type="journey_entered", occurred_at=at, contact_id=cid,
                            journey_id=journey_id, source="journey"))  # fmt: skip
        if i % 2:
            service.apply(Event(event_id=f"{cid}-buy", type="purchase", occurred_at="2026-03-03T09:00:00.000Z",
                                contact_id=cid, source="api", properties={"revenue": 10}))  # fmt: skip
    rest = contacts - min(contacts, REAL_EVENTS)
    while rest > 0:
        chunk = min(rest, 1000)
        changes = Changes()
        pk = rkeys.journey(journey_id)
        changes.add(pk, "entered", chunk)
        changes.add(pk, "goal.purchase.treated", chunk // 2)
        changes.add(pk, "goal.purchase.revenue", 10 * (chunk // 2))
        txn = Transaction()
        txn.extend(changes.ops(table.name), "counters")
        txn.commit(ddb)
        rest -= chunk


def report_calls(ddb: DynamoDBClient, contacts: int) -> int:
    """AWS API calls (counted with a botocore event hook) to build the journey report."""
    journey_id = f"bench-{contacts}"
    enroll(ddb, journey_id, contacts)
    _, table = _service(ddb)
    reader = ReportReader(table, ("purchase",))
    calls = [0]

    def count(**_: Any) -> None:
        calls[0] += 1

    ddb.meta.events.register("before-call.*.*", count)
    try:
        report = reader.journey(journey_id)
    finally:
        ddb.meta.events.unregister("before-call.*.*", count)
    assert report.entered == contacts, report
    return calls[0]
