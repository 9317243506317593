"""Bulk jobs: the messages of the SQS bulk queue, how they are sent, and the cursor chains that
make a long job (a broadcast, a full segment evaluation) resumable and exactly-once.

A bulk job walks one *lane* (a segment membership shard, a parallel scan segment) page by page.
Each page is one SQS message ``{..., "after": <cursor>}``; the lane's progress is one item
``<pk>``/``LANE#<nn>`` holding the recorded ``cursor``. A page job:

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
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from leadflow.platform.dynamo import (
    Op,
    Transaction,
    TransactionCancelled,
    get,
    put_op,
    query_all,
    update_if,
    update_op,
    values,
)

START = "^"
"""The recorded cursor of a lane that has not done a page yet (``after: null`` in a job)."""
LANE_PREFIX = "LANE#"
META = "META"

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


class SegmentScanPage(_Job):
    kind: Literal["segment_scan_page"]
    run_id: str
    lane: int = Field(ge=0, le=255)
    after: str | None = None


class SegmentCleanupPage(_Job):
    kind: Literal["segment_cleanup_page"]
    run_id: str
    segment_id: str
    lane: int = Field(ge=0, le=255)
    after: str | None = None


class BroadcastPage(_Job):
    kind: Literal["broadcast_page"]
    broadcast_id: str
    shard: int = Field(ge=0, le=255)
    after: str | None = None


Job = Annotated[
    SegmentScanStart | SegmentScanPage | SegmentCleanupPage | BroadcastPage, Field(discriminator="kind")
]
JOB = TypeAdapter(Job)


def parse_job(body: str) -> SegmentScanStart | SegmentScanPage | SegmentCleanupPage | BroadcastPage:
    return JOB.validate_json(body)


class BulkQueue:
    """Sends jobs to the bulk queue (batches of ten)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
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


# --- lanes: the cursor chains --------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    index: int
    cursor: str | None
    """None: not started; else the cursor the next page starts after."""
    done: bool
    advanced_by: str | None
    pages: int
    counts: dict[str, int] = field(default_factory=dict)


def lane_sk(index: int) -> str:
    return f"{LANE_PREFIX}{index:02d}"


class Lanes:
    """The progress items of one job (``pk``): a ``META`` item and one item per lane."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def create(
        self, pk: str, meta: Mapping[str, Any], lanes: int, at: str, *, also: Mapping[str, Op] | None = None
    ) -> bool:
        """Create the job's items — the ``meta`` put (conditional: a job id is created once) and one
        item per lane — with the operations ``also`` (by name) in one transaction (``lanes`` +
        ``len(also)`` + 1 items, at most 100); False if the job exists already (then nothing is
        written)."""
        txn = Transaction()
        txn.add(
            put_op(
                self._table,
                {"pk": pk, "sk": META, "lanes": lanes, "created_at": at, **meta},
                "attribute_not_exists(pk)",
            ),
            "meta",
        )
        lane_item = {"pk": pk, "cursor": START, "done": False, "pages": 0, "counts": {}, "updated_at": at}
        txn.extend([put_op(self._table, {**lane_item, "sk": lane_sk(i)}) for i in range(lanes)], "lanes")
        for name, op in (also or {}).items():
            txn.add(op, name)
        try:
            txn.commit(self._client)
        except TransactionCancelled as exc:
            if exc.failed_condition("meta"):
                return False
            raise
        return True

    def meta(self, pk: str) -> dict[str, Any] | None:
        return get(self._client, self._table, {"pk": pk, "sk": META}, consistent=True)

    def lane(self, pk: str, index: int) -> Lane | None:
        item = get(self._client, self._table, {"pk": pk, "sk": lane_sk(index)}, consistent=True)
        return _lane(item) if item is not None else None

    def read(self, pk: str) -> tuple[dict[str, Any] | None, list[Lane]]:
        """META and every lane: one query of one small partition."""
        meta: dict[str, Any] | None = None
        lanes: list[Lane] = []
        for item in query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=pk),
            ConsistentRead=True,
        ):
            if item["sk"] == META:
                meta = item
            elif str(item["sk"]).startswith(LANE_PREFIX):
                lanes.append(_lane(item))
        return meta, sorted(lanes, key=lambda lane: lane.index)

    def advance(
        self,
        pk: str,
        index: int,
        *,
        after: str | None,
        next_cursor: str | None,
        message_id: str,
        counts: Mapping[str, int],
        at: str,
    ) -> bool:
        """Compare-and-set the lane's cursor ``after -> next_cursor`` (None: the lane is done) and add
        the page's counters; False when the recorded cursor is not ``after`` (someone else did it)."""
        clauses = ["pages = pages + :one"]
        names = {"#cursor": "cursor"}
        vals: dict[str, Any] = {"one": 1, "after": after if after is not None else START, "no": False}
        for i, (name, value) in enumerate(sorted(counts.items())):
            if not value:
                continue
            names[f"#k{i}"] = name
            vals[f"v{i}"] = value
            vals["zero"] = 0
            clauses.append(f"counts.#k{i} = if_not_exists(counts.#k{i}, :zero) + :v{i}")
        op = update_op(
            self._table,
            {"pk": pk, "sk": lane_sk(index)},
            sets={
                "cursor": next_cursor if next_cursor is not None else "$",
                "done": next_cursor is None,
                "advanced_by": message_id,
                "updated_at": at,
            },
            set_clauses=clauses,
            condition="#cursor = :after AND done = :no",
            names=names,
            values_=vals,
        )
        return update_if(self._client, op)

    def set_meta(
        self,
        pk: str,
        fields: Mapping[str, Any],
        condition: str | None = None,
        *,
        names: Mapping[str, str] | None = None,
        **cond: Any,
    ) -> bool:
        """Set ``fields`` on the job's META item; False when ``condition`` (over ``names`` and the
        ``cond`` values) does not hold."""
        op = update_op(
            self._table, {"pk": pk, "sk": META}, sets=fields, condition=condition, names=names, values_=cond
        )
        return update_if(self._client, op)


def _lane(item: Mapping[str, Any]) -> Lane:
    cursor = str(item.get("cursor", START))
    return Lane(
        index=int(str(item["sk"]).removeprefix(LANE_PREFIX)),
        cursor=None if cursor == START else cursor,
        done=bool(item.get("done")),
        advanced_by=item.get("advanced_by"),
        pages=int(item.get("pages", 0)),
        counts={str(k): int(v) for k, v in (item.get("counts") or {}).items()},
    )


PageOutcome = Literal["done", "stale", "continued", "finished", "recovered"]


def run_page(
    lanes: Lanes,
    pk: str,
    index: int,
    after: str | None,
    message_id: str,
    work: Callable[[], tuple[str | None, Mapping[str, int]]],
    enqueue: Callable[[str], None],
    on_lane_done: Callable[[], None],
    now: Callable[[], str],
) -> PageOutcome:
    """One page of a lane with the chain guarantees (see the module docstring). ``work()`` does the
    page and returns the next cursor (None at the end) and the page's counters."""
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
    if not lanes.advance(
        pk, index, after=after, next_cursor=next_cursor, message_id=message_id, counts=counts, at=now()
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
