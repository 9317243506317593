"""The events table and the idempotency marks: one put per event, never updated (only an erasure
deletes events: ``delete_stored_events``); a subject's history read in time order; markers
written in the same transaction as the effect they make exactly-once.

How a request is shaped, paged, batched and committed is ``leadflow.platform.dynamo``'s; item keys
are ``leadflow.platform.tables``'."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from leadflow.events.model import Event
from leadflow.kernel.clock import parse_iso
from leadflow.platform.dynamo import (
    ExpiringStore,
    Item,
    delete_items,
    get,
    put_if,
    put_op,
    query_all,
    scan_all,
    serialize,
    update_if,
    update_op,
    values,
)
from leadflow.platform.tables import EVENTS_BY_TIME, Prefix, keys, time_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class HistoryWindow(TypedDict, total=False):
    """Which of a subject's events a history read yields, in which order."""

    since: datetime | None
    until: datetime | None
    newest_first: bool
    limit: int | None


def event_history(
    client: DynamoDBClient,
    table: str,
    subject_pk: str,
    **window: Unpack[HistoryWindow],
) -> Iterator[Item]:
    """A subject's (``C#<contact>``/``V#<visitor>``) events in the order they happened, from the
    ``by_time`` index: ``since``/``until`` inclusive (to the millisecond), every page read (boto3
    paginator) unless ``limit`` events were yielded. Correct whatever the event ids are."""
    since, until, limit = window.get("since"), window.get("until"), window.get("limit")
    condition = "pk = :pk"
    bounds: dict[str, Any] = {"pk": subject_pk}
    if since is not None and until is not None:
        condition += " AND #at BETWEEN :lo AND :hi"
        bounds.update(lo=time_key(since), hi=time_key(until) + "$")
    elif since is not None:
        condition += " AND #at >= :lo"
        bounds["lo"] = time_key(since)
    elif until is not None:
        condition += " AND #at <= :hi"
        bounds["hi"] = time_key(until) + "$"
    names = {"ExpressionAttributeNames": {"#at": EVENTS_BY_TIME.sort_key}} if len(bounds) > 1 else {}
    yield from query_all(
        client,
        limit=limit,
        TableName=table,
        IndexName=EVENTS_BY_TIME.name,
        KeyConditionExpression=condition,
        ExpressionAttributeValues=values(**bounds),
        ScanIndexForward=not window.get("newest_first", False),
        PaginationConfig={"PageSize": 100 if limit is None else min(100, limit)},
        **names,
    )


def stored_events(client: DynamoDBClient, table: str, subject_pk: str) -> list[Item]:
    """Every stored event of a subject (``C#<contact>``/``V#<visitor>``) from the table itself:
    consistent (an event written just before is there), every page, in event-id order. For the
    lead engine's replays; time-ordered reads go through ``event_history``."""
    return list(
        query_all(
            client,
            TableName=table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
            ExpressionAttributeValues=values(pk=subject_pk, ev="EV#"),
            ConsistentRead=True,
        )
    )


def delete_stored_events(client: DynamoDBClient, table: str, events: Sequence[Item]) -> int:
    """Delete these events (as ``stored_events`` read them), batched; how many. Events are never
    updated; only erasure deletes one."""
    return delete_items(client, table, events)


def backfill_event_times(client: DynamoDBClient, table: str) -> int:
    """Give every event written before the ``by_time`` index existed its ``at`` (the index key), so
    history reads see it: run once per deployed stage after the upgrade. Idempotent and resumable
    (items that have ``at`` are filtered out; each write is conditional on it still missing); the
    stream's MODIFY records are skipped by the consumers (they read INSERTs only). Returns how
    many items it updated."""
    updated = 0
    for item in scan_all(
        client,
        TableName=table,
        FilterExpression="attribute_not_exists(#at) AND begins_with(sk, :ev)",
        ProjectionExpression="pk, sk, event_id, occurred_at",
        ExpressionAttributeNames={"#at": EVENTS_BY_TIME.sort_key},
        ExpressionAttributeValues=values(ev="EV#"),
    ):
        occurred = parse_iso(item.get("occurred_at"))
        if occurred is None:
            continue
        event_id = str(item.get("event_id") or str(item["sk"]).removeprefix("EV#"))
        op = update_op(
            table,
            {"pk": item["pk"], "sk": item["sk"]},
            sets={EVENTS_BY_TIME.sort_key: keys.event_time(occurred, event_id)},
            condition="attribute_exists(pk) AND attribute_not_exists(#s0)",
        )
        if update_if(client, op):
            updated += 1
    return updated


class EventStore:
    """The events table: one put per event, never updated. Every item carries ``at`` (the
    ``by_time`` index key), so a subject's history reads in time order (``history``)."""

    def __init__(
        self, client: DynamoDBClient, table: str, retention_days: int, now: Callable[[], float] = time.time
    ):
        self._client = client
        self._table = table
        self._retention_s = retention_days * 86400
        self._now = now

    def item(self, event: Event) -> Item:
        subject = keys.contact(event.contact_id) if event.contact_id else keys.visitor(event.visitor_id or "")
        occurred = parse_iso(event.occurred_at)
        if occurred is None:
            raise ValueError(f"event {event.event_id}: occurred_at {event.occurred_at!r} is not ISO 8601")
        return {
            "pk": subject,
            "sk": keys.event(event.event_id),
            **event.model_dump(exclude_none=True),
            EVENTS_BY_TIME.sort_key: keys.event_time(occurred, event.event_id),
            "expires_at": int(self._now()) + self._retention_s,
        }

    def get(self, subject_pk: str, event_id: str) -> Item | None:
        """One event by its id (e.g. the entry event a template or a ``wait_until`` reads)."""
        return get(self._client, self._table, {"pk": subject_pk, "sk": keys.event(event_id)})

    def history(self, subject_pk: str, **window: Unpack[HistoryWindow]) -> Iterator[Item]:
        """See ``event_history``."""
        return event_history(self._client, self._table, subject_pk, **window)

    def put_op(self, event: Event) -> dict[str, Any]:
        return put_op(self._table, self.item(event), "attribute_not_exists(pk)")

    def record(self, event: Event) -> None:
        """The hot path: exactly one write, no read."""
        self._client.put_item(
            TableName=self._table,
            Item=serialize(self.item(event)),
            ConditionExpression="attribute_not_exists(pk)",
        )


class IdempotencyMarks(ExpiringStore):
    """Markers written in the same transaction as the effect they make exactly-once (kept 30 days)."""

    TTL_DAYS = 30

    def put_op(self, kind: str, key: str) -> dict[str, Any]:
        item = {"pk": f"{kind}#{key}", "sk": keys.MARK, "expires_at": self.expires_at()}
        return put_op(self._table, item, "attribute_not_exists(pk)")

    def mark(self, kind: str, key: str) -> bool:
        """Write the marker alone (no effect beside it): False when it exists already."""
        return put_if(self._client, self.put_op(kind, key))

    ASSIGNMENT_SK = "ASSIGNMENT"
    assignment_key = Prefix("ASSIGN")

    def assignment(self, handoff_key: str) -> Item | None:
        """The owner picked for a sales hand-off (``record_assignment``), or None."""
        pk = self.assignment_key(handoff_key)
        return get(self._client, self._table, {"pk": pk, "sk": self.ASSIGNMENT_SK}, consistent=True)

    def record_assignment(self, handoff_key: str, fields: Mapping[str, Any]) -> bool:
        """Record the hand-off's pick unless one is recorded already (the first writer wins)."""
        pk = self.assignment_key(handoff_key)
        item = {"pk": pk, "sk": self.ASSIGNMENT_SK, **fields, "expires_at": self.expires_at()}
        return put_if(self._client, put_op(self._table, item, "attribute_not_exists(pk)"))

    def exists(self, kind: str, key: str) -> bool:
        resp = self._client.get_item(
            TableName=self._table,
            Key=serialize({"pk": f"{kind}#{key}", "sk": keys.MARK}),
            ConsistentRead=True,
        )
        return "Item" in resp

    def decide(self, kind: str, key: str, value: str) -> str:
        """Record ``value`` as the decision for ``key`` unless one is recorded already (conditional
        put: the first writer wins); the recorded decision."""
        item = {
            "pk": f"{kind}#{key}",
            "sk": keys.MARK,
            "value": value,
            "expires_at": self.expires_at(),
        }
        if put_if(self._client, put_op(self._table, item, "attribute_not_exists(pk)")):
            return value
        recorded = get(self._client, self._table, {"pk": f"{kind}#{key}", "sk": keys.MARK}, consistent=True)
        assert recorded is not None  # the condition failed: it exists (marks expire after days)
        return str(recorded["value"])
