"""Bulk jobs: the messages of the SQS bulk queue, how they are sent, and the cursor chains that
make a long job (a broadcast, a full segment evaluation) resumable and exactly-once.

A bulk job walks one *lane* (a segment membership shard, a parallel scan segment) page by page.
Each page is one SQS message ``{..., "after": <cursor>}``; the lane's progress is one item
``<pk>``/``LANE#<nn>`` holding the recorded ``cursor`` (stored by ``leadflow.platform.lanes``). A
page job:

1. reads the lane; a job whose ``after`` is not the recorded cursor is stale (a redelivery of a
   page that was done, or a duplicate continuation) and is dropped;
2. does the page's work (idempotent by itself: deterministic message/event ids);
3. compare-and-sets the cursor ``after -> next`` and adds the page's counters in the same update;
4. only if that CAS succeeded, enqueues the continuation ``after = next``.

So each cursor value advances exactly once and each advance enqueues at most one successor: a
redelivered or duplicated job never forks a second chain. The advance records the SQS message id
(``advanced_by``): if the worker dies between the CAS and the enqueue, SQS redelivers the same
message, which recognizes its own advance and enqueues the continuation it owes. ``resume`` (any
time, e.g. after jobs went to the dead-letter queue) re-enqueues every unfinished lane at its
recorded cursor; a duplicate of a live job is harmless (only one CAS wins)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from leadflow.kernel.clock import iso, utc_now
from leadflow.platform.lanes import Lane, Lanes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BULK_WORKERS = 4
"""Concurrent bulk workers (the SQS event source's maximum concurrency in the CDK app): a broadcast
paces each worker to ``broadcast_send_rate / BULK_WORKERS`` emails per second."""
BULK_BATCH_SIZE = 1
"""Jobs per invocation: one page each, so a throttled page only redelivers itself."""
BULK_FUNCTION_TIMEOUT_SECONDS = 300
BULK_VISIBILITY_TIMEOUT_SECONDS = 6 * BULK_FUNCTION_TIMEOUT_SECONDS
"""AWS's advice for an SQS event source: six times the function timeout."""
BULK_MAX_RECEIVE_COUNT = 5
"""Deliveries of a job before it goes to the bulk dead-letter queue (a throttled page is redelivered
too); ``resume`` re-enqueues a dead-lettered lane at its recorded cursor."""


# --- job messages ---------------------------------------------------------------------------------


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentScanStart(_Job):
    """Start a full evaluation: ``segment_id`` null = every segment (the daily schedule's message)."""

    kind: Literal["segment_scan_start"]
    segment_id: str | None = None
    run_id: str | None = None
    """Given by the admin API (which created the run); derived from the SQS message id otherwise."""


class _Page(_Job):
    """One page of a scan, from the key ``after`` (None: the start)."""

    after: str | None = None


class _RunPage(_Page):
    """A page of one lane of a segment evaluation run."""

    run_id: str
    lane: int = Field(ge=0, le=255)


class SegmentScanPage(_RunPage):
    kind: Literal["segment_scan_page"]


class SegmentCleanupPage(_RunPage):
    kind: Literal["segment_cleanup_page"]
    segment_id: str


class BroadcastPage(_Page):
    kind: Literal["broadcast_page"]
    broadcast_id: str
    shard: int = Field(ge=0, le=255)


Job = Annotated[
    SegmentScanStart | SegmentScanPage | SegmentCleanupPage | BroadcastPage, Field(discriminator="kind")
]
JOB = TypeAdapter(Job)


def parse_job(body: str) -> SegmentScanStart | SegmentScanPage | SegmentCleanupPage | BroadcastPage:
    return JOB.validate_json(body)


class BulkQueue:
    """Sends jobs to the bulk queue (batches of ten)."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, jobs: Sequence[BaseModel]) -> None:
        for start in range(0, len(jobs), 10):
            chunk = jobs[start : start + 10]
            resp = self._sqs.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "MessageBody": job.model_dump_json(exclude_none=False)}
                    for i, job in enumerate(chunk)
                ],
            )
            if resp.get("Failed"):
                raise RuntimeError(f"bulk queue refused {len(resp['Failed'])} job(s)")


# --- one page of a lane ---------------------------------------------------------------------------


PageOutcome = Literal["done", "stale", "continued", "finished", "recovered"]


PageJob = SegmentScanPage | SegmentCleanupPage | BroadcastPage


def run_page(
    lanes: Lanes,
    queue: BulkQueue,
    pk: str,
    index: int,
    job: PageJob,
    message_id: str,
    work: Callable[[], tuple[str | None, Mapping[str, int]]],
    on_lane_done: Callable[[], None],
) -> PageOutcome:
    """One page of ``job``'s lane (``pk``, ``index``) with the chain guarantees (see the module
    docstring). ``work()`` does the page and returns the next cursor (None at the end) and the
    page's counters; the continuation is ``job`` again at the next cursor."""
    after = job.after

    def enqueue(cursor: str) -> None:
        queue.send([job.model_copy(update={"after": cursor})])

    lane = lanes.lane(pk, index)
    if lane is None:
        return "stale"
    if lane.done or lane.cursor != after:
        if lane.advanced_by == message_id:
            # our own advance, redelivered after a crash: owe the continuation (or the finish)
            if lane.done:
                on_lane_done()
            elif lane.cursor is not None:
                enqueue(lane.cursor)
            return "recovered"
        return "stale"
    next_cursor, counts = work()
    at = iso(utc_now())
    if not lanes.advance(
        pk, index, after=after, next_cursor=next_cursor, message_id=message_id, counts=counts, at=at
    ):
        return "stale"
    if next_cursor is None:
        on_lane_done()
        return "finished"
    enqueue(next_cursor)
    return "continued"


def unfinished(lanes: Iterable[Lane]) -> list[Lane]:
    return [lane for lane in lanes if not lane.done]


# --- pacing ---------------------------------------------------------------------------------------


class Pacer:
    """At most ``per_second`` calls of ``wait()`` per second (evenly spaced), per process."""

    def __init__(
        self,
        per_second: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / per_second
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = -float("inf")

    def wait(self) -> None:
        now = self._monotonic()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


def encode_key(key: Mapping[str, Any]) -> str:
    """A DynamoDB LastEvaluatedKey as a cursor string."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def decode_key(cursor: str) -> dict[str, Any]:
    value = json.loads(cursor)
    if not isinstance(value, dict):
        raise ValueError("not a key")
    return value
