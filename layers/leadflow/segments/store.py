"""Segment items in the contacts table: definitions, run pointers and membership.

- definitions made through the admin API: one small partition (``SEGDEFS``/``<segment id>``):
  listing them is one query, never a table scan; ``segment_source`` joins them to the files'
  segments the lead engine evaluates;
- run pointers ``SEGLASTRUN``/``<segment id or every segment>``: the latest evaluation run;
- member: ``SEGMENT#<id>#<shard>`` / ``C#<contact id>`` (``entered_at``): a segment's members are
  spread over ``SHARDS`` partitions, so a million-member segment is written and read (export,
  broadcast) in parallel without a hot partition;
- count: ``SEGCOUNT#<id>`` / ``<shard>`` (``members``), changed by ±1 in the same transaction as
  the member item: a count reads ``SHARDS`` small items, never the members.

The profile's ``segments`` set is the other half of a membership: whoever changes membership (the
lead engine from the stream, a full re-evaluation) writes the profile, the member item and the
count in one transaction, with the ``segment_entered``/``segment_left`` event; this module builds
the member and count operations, the caller commits them with the rest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from leadflow.platform.dynamo import (
    batch_get,
    is_conditional_failure,
    pages,
    put_op,
    serialize,
    update_op,
    values,
)
from leadflow.platform.tables import Prefix, keys
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


# --- membership -------------------------------------------------------------------------------------

SHARDS = 16
SEGMENT = Prefix("SEGMENT")


def shard_of(contact_id: str) -> int:
    return int.from_bytes(hashlib.sha256(contact_id.encode()).digest()[:4], "big") % SHARDS


class SegmentMembership:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def member_pk(segment_id: str, shard: int) -> str:
        return SEGMENT(f"{segment_id}#{shard:02d}")

    count_pk = Prefix("SEGCOUNT")

    def delete_zero_count(self, segment_id: str, shard: int) -> bool:
        """Delete a shard's member count when it is zero (or absent): False when it holds members."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=serialize({"pk": self.count_pk(segment_id), "sk": f"{shard:02d}"}),
                ConditionExpression="attribute_not_exists(members) OR members = :zero",
                ExpressionAttributeValues=values(zero=0),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def _count_op(self, segment_id: str, shard: int, delta: int) -> dict[str, Any]:
        return update_op(
            self._table, {"pk": self.count_pk(segment_id), "sk": f"{shard:02d}"}, add={"members": delta}
        )

    def enter_ops(self, segment_id: str, contact_id: str, at: str) -> list[dict[str, Any]]:
        """The member item (conditional: entering twice fails the transaction) and the count."""
        shard = shard_of(contact_id)
        member = put_op(
            self._table,
            {"pk": self.member_pk(segment_id, shard), "sk": keys.contact(contact_id), "entered_at": at},
            "attribute_not_exists(pk)",
        )
        return [member, self._count_op(segment_id, shard, 1)]

    def leave_ops(self, segment_id: str, contact_id: str) -> list[dict[str, Any]]:
        """Delete the member item (conditional: leaving twice fails the transaction) and the count."""
        shard = shard_of(contact_id)
        member = {
            "Delete": {
                "TableName": self._table,
                "Key": serialize({"pk": self.member_pk(segment_id, shard), "sk": keys.contact(contact_id)}),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        return [member, self._count_op(segment_id, shard, -1)]

    def count(self, segment_id: str) -> int:
        counts = batch_get(
            self._client,
            self._table,
            [{"pk": self.count_pk(segment_id), "sk": f"{s:02d}"} for s in range(SHARDS)],
        )
        return sum(int(item.get("members", 0)) for item in counts)

    def members(
        self, segment_id: str, shard: int, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """A page of member contact ids of one shard, in id order, after the contact id ``after``;
        and the id to continue after (None at the end)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk=self.member_pk(segment_id, shard)),
            "Limit": limit,
        }
        if after:
            params["ExclusiveStartKey"] = serialize(
                {"pk": self.member_pk(segment_id, shard), "sk": keys.contact(after)}
            )
        resp = self._client.query(**params)
        ids = [item["sk"]["S"].removeprefix("C#") for item in resp["Items"]]
        more = "LastEvaluatedKey" in resp and ids
        return ids, (ids[-1] if more else None)
