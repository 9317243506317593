"""Segments defined through the admin API, stored in one small partition of the contacts table
(``SEGDEFS``/``<segment id>``: listing them is one query, never a table scan), and the set of all
segments (files + API) the lead engine evaluates."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from leadflow.platform.dynamo import batch_get, pages, put_op, serialize, values
from leadflow.segments.definitions import Segment, SegmentError, parse_segment

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFS_PK = "SEGDEFS"
LAST_RUN_PK = "SEGLASTRUN"
"""Pointers to the latest evaluation run of each segment (sort key: its id, or every segment's)."""


class SegmentDefinitionStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def last_run_op(self, target: str, run_id: str, kind: str, at: str) -> dict[str, Any]:
        """Point ``target`` (a segment id, or every segment) at the run that starts now."""
        item = {"pk": LAST_RUN_PK, "sk": target, "run_id": run_id, "kind": kind, "started_at": at}
        return put_op(self._table, item)

    def last_runs(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        """The run pointers of these targets that exist (consistent)."""
        return batch_get(self._client, self._table, [{"pk": LAST_RUN_PK, "sk": t} for t in targets])

    @staticmethod
    def key(segment_id: str) -> dict[str, Any]:
        return serialize({"pk": DEFS_PK, "sk": segment_id})

    def put(self, segment: Segment, at: str) -> None:
        op = put_op(
            self._table,
            {
                "pk": DEFS_PK,
                "sk": segment.id,
                "segment_id": segment.id,
                "definition": segment.model_dump_json(by_alias=True, exclude_none=True),
                "updated_at": at,
            },
        )["Put"]
        self._client.put_item(**op)

    def get(self, segment_id: str) -> Segment | None:
        resp = self._client.get_item(TableName=self._table, Key=self.key(segment_id), ConsistentRead=True)
        if "Item" not in resp:
            return None
        return _parse(resp["Item"])

    def delete(self, segment_id: str) -> bool:
        resp = self._client.delete_item(
            TableName=self._table, Key=self.key(segment_id), ReturnValues="ALL_OLD"
        )
        return "Attributes" in resp

    def list(self) -> list[Segment]:
        """Every API-defined segment, in id order (one query of one partition)."""
        found = [
            _parse(item)
            for page in pages(
                self._client,
                "query",
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=values(pk=DEFS_PK),
                ConsistentRead=True,
            )
            for item in page["Items"]
        ]
        return sorted(found, key=lambda s: s.id)


def _parse(item: dict[str, Any]) -> Segment:
    raw = item["definition"]["S"]
    try:
        return parse_segment(json.loads(raw), f"segment {item.get('segment_id', {}).get('S', '?')}")
    except (json.JSONDecodeError, SegmentError) as exc:
        raise SegmentError(f"stored segment definition is unreadable: {exc}") from exc


def segment_source(
    files: Sequence[Segment],
    store: SegmentDefinitionStore | None,
    now: Callable[[], float] = time.monotonic,
    cache_seconds: float = 0.0,
) -> Callable[[], list[Segment]]:
    """All segments: the files' and the API-defined ones, re-read at most every ``cache_seconds``
    (0: at every call — one small query, so a segment defined through the API is live at once).
    A file segment's id cannot be defined through the API, so ids never clash."""
    cached: list[Segment] = []
    read_at = [-float("inf")]

    def segments() -> list[Segment]:
        if store is not None and (cache_seconds <= 0 or now() - read_at[0] >= cache_seconds):
            file_ids = {s.id for s in files}
            cached[:] = [s for s in store.list() if s.id not in file_ids]
            read_at[0] = now()
        return [*files, *cached]

    return segments
