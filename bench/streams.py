"""Stream consumers under load: records per second through ``score`` (the lead engine) and
``trigger``, and whether a record's cost grows with the contact's history.

Records are built the way the events stream delivers them (INSERT, NEW_AND_OLD_IMAGES) and handed to
the two handlers in batches of 100, as the event source mappings do."""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

from leadflow.events.model import Event
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem
from leadflow.platform.dynamo import serialize

BATCH = 100
EVENT_MIX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("page_viewed", {"url": "https://www.example.com/pricing", "title": "Pricing"}),
    ("page_viewed", {"url": "https://www.example.com/blog/post", "title": "Blog"}),
    ("email_clicked", {"url": "https://www.example.com/whitepaper"}),
    ("page_viewed", {"url": "https://www.example.com/careers", "title": "Careers"}),
)


def stream_record(system: LocalSystem, event: Event, sequence: int) -> dict[str, Any]:
    events = system.modules["score"].settings.events_table
    item = serialize(system.modules["track"].service._events.item(event))
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{events}/stream/bench"
    return {
        "eventID": f"bench-{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": item["pk"], "sk": item["sk"]},
            "NewImage": item,
            "SequenceNumber": f"{sequence:021d}",
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": arn,
    }


def _event(contact_id: str, n: int) -> Event:
    kind, properties = EVENT_MIX[n % len(EVENT_MIX)]
    return Event(
        event_id=ids.new_event_id(),
        type=kind,
        occurred_at=iso(utc_now()),
        contact_id=contact_id,
        source="bench",
        properties=properties,
    )


def _consume(system: LocalSystem) -> Callable[[list[dict[str, Any]]], None]:
    score = system.handlers["leadflow-local-score"]
    trigger = system.handlers["leadflow-local-trigger"]
    score_ctx, trigger_ctx = lambda_context("leadflow-local-score"), lambda_context("leadflow-local-trigger")

    def consume(records: list[dict[str, Any]]) -> None:
        # Powertools prints a full metrics buffer (100 values) as EMF: Lambda's log, noise here
        with contextlib.redirect_stdout(io.StringIO()):
            _run(records)

    def _run(records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), BATCH):
            batch = {"Records": records[start : start + BATCH]}
            for handler, context in ((score, score_ctx), (trigger, trigger_ctx)):
                failures = handler(batch, context).get("batchItemFailures")
                if failures:
                    raise RuntimeError(f"bench records failed: {failures[:3]}")

    return consume


def _write_history(system: LocalSystem, contact_id: str, events: int) -> None:
    """Past events of the contact, written straight to the table (they are history, not new)."""
    ddb = system.client("dynamodb")
    table = system.modules["score"].settings.events_table
    store = system.modules["track"].service._events
    requests = [{"PutRequest": {"Item": serialize(store.item(_event(contact_id, n)))}} for n in range(events)]
    for start in range(0, len(requests), 25):
        ddb.batch_write_item(RequestItems={table: requests[start : start + 25]})


def stream_figures(
    system: LocalSystem, contacts: list[str], records: int = 2000, samples: int = 60
) -> dict[str, float]:
    """``stream_records_per_s``: records/s through score then trigger, batches of 100, spread over
    ``contacts``. ``history_cost_ratio``: median cost of a record of a contact with 10 past events
    / of one with 10,000 (1.0: history does not matter; target >= 0.9)."""
    consume = _consume(system)
    sequence = iter(range(10**9))
    warm = [stream_record(system, _event(contacts[0], n), next(sequence)) for n in range(BATCH)]
    consume(warm)

    batch = [
        stream_record(system, _event(contacts[n % len(contacts)], n), next(sequence)) for n in range(records)
    ]
    start = time.perf_counter()
    consume(batch)
    per_s = records / (time.perf_counter() - start)

    short, long = contacts[0], contacts[1]
    _write_history(system, short, 10)
    _write_history(system, long, 10_000)
    costs: dict[str, list[float]] = {short: [], long: []}
    for n in range(samples):  # interleaved, one record per call, so both see the same machine state
        for contact in (short, long):
            record = stream_record(system, _event(contact, n), next(sequence))
            began = time.perf_counter()
            consume([record])
            costs[contact].append(time.perf_counter() - began)
    ratio = statistics.median(costs[short]) / statistics.median(costs[long])
    return {"stream_records_per_s": round(per_s, 1), "history_cost_ratio": round(ratio, 3)}
