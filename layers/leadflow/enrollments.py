"""Journey bookkeeping in the contacts table, next to the profile it belongs to.

- Enrollment ``C#<contact>`` / ``J#<journey>``: whether the contact is in the journey now, how often
  it entered, when it left and why — the basis of re-entry rules and "at most one active
  execution per contact and journey". A pending exit (an exit event arrived during a wait) is
  recorded here and honoured before the next step.
- Frequency-cap counters ``C#<contact>`` / ``CAP#<channel>#D#<day>`` and ``#W#<week>`` with TTL,
  reserved atomically per message (``CAPRES#<message id>``), so a retried step counts once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from leadflow.clock import parse_iso
from leadflow.store import cancellation_codes, deserialize, is_conditional_failure, serialize, values
from leadflow.tables import keys

CAP_TTL_SECONDS = 9 * 86400
EVENTS_SCAN_LIMIT = 500


def enrollment_key(contact_id: str, journey_id: str) -> dict[str, Any]:
    return serialize({"pk": keys.contact(contact_id), "sk": f"J#{journey_id}"})


class CapExceeded(Exception):
    """The message would exceed the contact's frequency cap."""


class JourneyStore:
    def __init__(
        self,
        client: Any,
        *,
        contacts_table: str,
        events_table: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._contacts = contacts_table
        self._events = events_table
        self._now = now

    # --- profile and enrollment ----------------------------------------------------------------

    def profile_and_enrollment(
        self, contact_id: str, journey_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Both in one round trip (strongly consistent)."""
        profile_key = serialize({"pk": keys.contact(contact_id), "sk": keys.PROFILE})
        enrollment = enrollment_key(contact_id, journey_id)
        resp = self._client.batch_get_item(
            RequestItems={self._contacts: {"Keys": [profile_key, enrollment], "ConsistentRead": True}}
        )
        found: dict[str, dict[str, Any]] = {}
        for item in resp.get("Responses", {}).get(self._contacts, []):
            plain = deserialize(item)
            found[str(plain["sk"])] = plain
        return found.get(keys.PROFILE), found.get(f"J#{journey_id}")

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        resp = self._client.get_item(
            TableName=self._contacts,
            Key=serialize({"pk": keys.contact(contact_id), "sk": keys.PROFILE}),
            ConsistentRead=True,
        )
        return deserialize(resp["Item"]) if "Item" in resp else None

    def enrollment(self, contact_id: str, journey_id: str) -> dict[str, Any] | None:
        resp = self._client.get_item(
            TableName=self._contacts, Key=enrollment_key(contact_id, journey_id), ConsistentRead=True
        )
        return deserialize(resp["Item"]) if "Item" in resp else None

    def enter(
        self,
        contact_id: str,
        journey_id: str,
        *,
        entries: int,
        previous_entries: int | None,
        execution_name: str,
        entry_event_id: str,
        at: str,
        with_ops: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Record a new entry; False if someone else changed the enrollment since it was read.
        ``with_ops`` (the ``journey_entered`` event) are committed in the same transaction."""
        item = {
            "pk": keys.contact(contact_id),
            "sk": f"J#{journey_id}",
            "journey_id": journey_id,
            "status": "active",
            "entries": entries,
            "execution_name": execution_name,
            "entry_event_id": entry_event_id,
            "entered_at": at,
        }
        condition = "attribute_not_exists(pk)" if previous_entries is None else "entries = :prev"
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if previous_entries is not None:
            kwargs["ExpressionAttributeValues"] = values(prev=previous_entries)
        try:
            if with_ops:
                put = {"TableName": self._contacts, "Item": serialize(item), **kwargs}
                self._client.transact_write_items(TransactItems=[{"Put": put}, *with_ops])
            else:
                self._client.put_item(TableName=self._contacts, Item=serialize(item), **kwargs)
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if is_conditional_failure(exc) or (codes and codes[0] == "ConditionalCheckFailed"):
                return False
            raise
        return True

    def request_exit(self, contact_id: str, journey_id: str, reason: str, at: str) -> bool:
        """Mark an active enrollment to leave before its next step; False if it is not active."""
        try:
            self._client.update_item(
                TableName=self._contacts,
                Key=enrollment_key(contact_id, journey_id),
                UpdateExpression="SET exit_reason = if_not_exists(exit_reason, :r), exit_requested_at = :at",
                ConditionExpression="#s = :active",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(r=reason, at=at, active="active"),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def leave(
        self, contact_id: str, journey_id: str, execution_name: str, outcome: str, reason: str | None, at: str
    ) -> bool:
        """Close the enrollment of this execution (idempotent); False if a newer entry owns it."""
        names = {"#s": "status"}
        sets = "#s = :outcome, left_at = if_not_exists(left_at_of, :at), left_at_of = :name"
        vals: dict[str, Any] = {"outcome": outcome, "at": at, "name": execution_name}
        if reason:
            sets += ", exit_reason = if_not_exists(exit_reason, :reason)"
            vals["reason"] = reason
        try:
            self._client.update_item(
                TableName=self._contacts,
                Key=enrollment_key(contact_id, journey_id),
                UpdateExpression=f"SET {sets}",
                ConditionExpression="attribute_not_exists(pk) OR execution_name = :name",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**vals),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- frequency caps ------------------------------------------------------------------------

    def _cap_key(self, contact_id: str, channel: str, period: str) -> dict[str, Any]:
        return serialize({"pk": keys.contact(contact_id), "sk": f"CAP#{channel}#{period}"})

    def cap_counts(self, contact_id: str, channel: str, periods: Sequence[str]) -> dict[str, int]:
        if not periods:
            return {}
        resp = self._client.batch_get_item(
            RequestItems={
                self._contacts: {
                    "Keys": [self._cap_key(contact_id, channel, p) for p in dict.fromkeys(periods)],
                    "ConsistentRead": True,
                }
            }
        )
        counts = dict.fromkeys(periods, 0)
        for item in resp.get("Responses", {}).get(self._contacts, []):
            plain = deserialize(item)
            counts[str(plain["sk"]).split("#", 2)[2]] = int(plain.get("n", 0))
        return counts

    def reserve(self, contact_id: str, channel: str, message_id: str, limits: Mapping[str, int]) -> bool:
        """Count one message against each period's limit (``{"D#2026-11-25": 1, "W#2026-W48": 3}``).

        True when reserved now or by an earlier attempt of the same message; raises CapExceeded
        when a period is full."""
        expires = int(self._now()) + CAP_TTL_SECONDS
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._contacts,
                    "Item": serialize(
                        {
                            "pk": keys.contact(contact_id),
                            "sk": f"CAPRES#{message_id}",
                            "expires_at": expires,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        for period, limit in limits.items():
            items.append(
                {
                    "Update": {
                        "TableName": self._contacts,
                        "Key": self._cap_key(contact_id, channel, period),
                        "UpdateExpression": "ADD n :one SET expires_at = :exp",
                        "ConditionExpression": "attribute_not_exists(n) OR n < :limit",
                        "ExpressionAttributeValues": values(one=1, exp=expires, limit=limit),
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if codes and codes[0] == "ConditionalCheckFailed":
                return True  # this message was counted by an earlier attempt
            if "ConditionalCheckFailed" in codes:
                raise CapExceeded(channel) from exc
            raise
        return True

    # --- events ----------------------------------------------------------------------------------

    def events_since(self, contact_id: str, since: datetime | None) -> list[dict[str, Any]]:
        """The contact's events, newest first, back to ``since`` (at most ``EVENTS_SCAN_LIMIT``)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._events,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :ev)",
            "ExpressionAttributeValues": values(pk=keys.contact(contact_id), ev="EV#"),
            "ScanIndexForward": False,
            "Limit": 100,
        }
        while len(found) < EVENTS_SCAN_LIMIT:
            page = self._client.query(**kwargs)
            for raw in page["Items"]:
                item = deserialize(raw)
                when = parse_iso(item.get("occurred_at"))
                if since is not None and when is not None and when < since:
                    return found
                found.append(item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found
