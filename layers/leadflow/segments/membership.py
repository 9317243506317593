"""Segment membership items in the contacts table.

- member: ``SEGMENT#<id>#<shard>`` / ``C#<contact id>`` (``entered_at``): a segment's members are
  spread over ``SHARDS`` partitions, so a million-member segment is written and read (export,
  broadcast) in parallel without a hot partition;
- count: ``SEGCOUNT#<id>`` / ``<shard>`` (``members``), changed by ±1 in the same transaction as
  the member item: a count reads ``SHARDS`` small items, never the members.

The profile's ``segments`` set is the other half of a membership: whoever changes membership (the
lead engine from the stream, a full re-evaluation) writes the profile, the member item and the
count in one transaction, with the ``segment_entered``/``segment_left`` event.
"""

from __future__ import annotations

import hashlib
from typing import Any

from leadflow.platform.dynamo import batch_get, put_op, serialize, update_op, values
from leadflow.platform.tables import keys

SHARDS = 16


def shard_of(contact_id: str) -> int:
    return int.from_bytes(hashlib.sha256(contact_id.encode()).digest()[:4], "big") % SHARDS


class SegmentMembership:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def member_pk(segment_id: str, shard: int) -> str:
        return f"SEGMENT#{segment_id}#{shard:02d}"

    @staticmethod
    def count_pk(segment_id: str) -> str:
        return f"SEGCOUNT#{segment_id}"

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
