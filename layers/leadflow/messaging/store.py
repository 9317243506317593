"""The messages table: one item per message, keyed by a deterministic id per (execution, step) or
(broadcast, contact), so a retried send finds the message it already sent instead of sending again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from leadflow.platform.dynamo import (
    ExpiringStore,
    Item,
    batch_get,
    delete_items,
    deserialize,
    is_conditional_failure,
    serialize,
    update,
    update_if,
    update_op,
    values,
)
from leadflow.platform.tables import keys


class MessageStore(ExpiringStore):
    """One item per journey message, keyed by a deterministic id per (execution, step); kept 400
    days (engagement reports read them)."""

    TTL_DAYS = 400

    def _key(self, message_id: str) -> dict[str, Any]:
        return serialize({"pk": keys.message(message_id), "sk": keys.MSG})

    def claim(self, message_id: str, fields: Mapping[str, Any], at: str) -> bool:
        """Claim the right to send: True for the first attempt, or a retry of one that never reached SES."""
        item = {
            "pk": keys.message(message_id),
            "sk": keys.MSG,
            "message_id": message_id,
            **fields,
            "status": "sending",
            "created_at": at,
            "expires_at": self.expires_at(),
        }
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(item),
                # "sending" is re-claimable: an attempt that never reached the provider may have
                # failed to release its claim; one that did reach it moved on to "handing_over"
                ConditionExpression="attribute_not_exists(pk) OR #s IN (:retryable, :sending)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(retryable="retryable", sending="sending"),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def get(self, message_id: str) -> Item | None:
        resp = self._client.get_item(TableName=self._table, Key=self._key(message_id), ConsistentRead=True)
        return deserialize(resp["Item"]) if "Item" in resp else None

    def many(self, message_ids: Sequence[str]) -> list[Item]:
        """The stored messages with these ids (batched, unprocessed keys retried); unknown ids absent."""
        return batch_get(
            self._client, self._table, [{"pk": keys.message(m), "sk": keys.MSG} for m in message_ids]
        )

    def delete_items(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Delete these stored messages (as ``many`` read them), batched; how many."""
        return delete_items(self._client, self._table, messages)

    def hand_over(self, message_id: str, at: str) -> bool:
        """Mark the moment the message goes to the provider (after this, a retry never re-sends);
        False if another attempt changed the claim meanwhile."""
        op = update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            sets={"status": "handing_over", "handed_over_at": at},
            condition="#status = :sending",
            names={"#status": "status"},
            values_={"sending": "sending"},
        )
        return update_if(self._client, op)

    def finish_op(self, message_id: str, status: str, at: str, **extra: Any) -> dict[str, Any]:
        return update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            sets={"status": status, "finished_at": at, **extra},
            condition="#status IN (:sending, :over)",
            names={"#status": "status"},
            values_={"sending": "sending", "over": "handing_over"},
        )

    def finish(self, message_id: str, status: str, at: str, **extra: Any) -> None:
        update(self._client, self.finish_op(message_id, status, at, **extra))

    def mark_engaged(self, message_id: str, attribute: str, at: str) -> bool:
        """Record the first open/click of a message; idempotent. False if no such message."""
        op = update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            set_once={attribute: at},
            condition="attribute_exists(pk)",
        )
        return update_if(self._client, op)
