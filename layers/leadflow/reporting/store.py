"""The reports table: counter items, per-event state, and the batch of changes one event makes.

Counter items (``COUNTS``) hold many counters each, updated with ``ADD``; a report reads one item
per journey, template or day. One event's changes — counters and state — are committed in one
transaction together with the idempotency marker ``REPORT#<event id>``: a redelivered stream record
finds the marker and changes nothing. Only an erasure deletes items (a contact's, visitor's or
message's state; aggregates stay).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from leadflow.platform.dynamo import (
    ExpiringStore,
    batch_get,
    delete_items,
    get,
    query_all,
    serialize,
    update_op,
    values,
)
from leadflow.platform.tables import Prefix

if TYPE_CHECKING:
    pass

COUNTS = "COUNTS"
STATE = "STATE"
TOUCH = "TOUCH"
STATE_TTL_DAYS = 400


class rkeys:
    """Key builders of the reports table."""

    ATTRIBUTION = "ATTR"

    journey = Prefix("J")
    template = Prefix("T")
    day = Prefix("DAY")
    message_state = Prefix("S#M")
    contact_state = Prefix("S#C")
    visitor_state = Prefix("S#V")
    membership = Prefix("J")
    """A journey's membership counters share its counter item's partition (``J#<journey>``)."""


def link_key(url: str) -> str:
    """A short, stable name for a link's counters (URLs are long; the URL is kept beside them)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


class Changes:
    """Counter increments and state writes of one event, merged per item (a transaction may not
    touch an item twice)."""

    def __init__(self) -> None:
        self._adds: dict[tuple[str, str], dict[str, int | float]] = {}
        self._sets: dict[tuple[str, str], dict[str, Any]] = {}
        self._set_once: dict[tuple[str, str], dict[str, Any]] = {}
        self._puts: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, pk: str, name: str, n: int | float = 1, sk: str = COUNTS) -> None:
        if n == 0:
            return
        counters = self._adds.setdefault((pk, sk), {})
        counters[name] = counters.get(name, 0) + n

    def set(self, pk: str, sk: str, **fields: Any) -> None:
        self._sets.setdefault((pk, sk), {}).update(fields)

    def set_once(self, pk: str, sk: str, **fields: Any) -> None:
        """SET name = if_not_exists(name, value)."""
        self._set_once.setdefault((pk, sk), {}).update(fields)

    def put(self, pk: str, sk: str, item: Mapping[str, Any]) -> None:
        """Replace a state item (no other change to it in the same event)."""
        self._puts[(pk, sk)] = dict(item)

    @property
    def empty(self) -> bool:
        return not (self._adds or self._sets or self._set_once or self._puts)

    def adds(self, pk: str, sk: str = COUNTS) -> Mapping[str, int | float]:
        return self._adds.get((pk, sk), {})

    def ops(self, table: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (pk, sk), item in self._puts.items():
            out.append({"Put": {"TableName": table, "Item": serialize({**item, "pk": pk, "sk": sk})}})
        keys_ = (set(self._adds) | set(self._sets) | set(self._set_once)) - set(self._puts)
        for pk, sk in sorted(keys_):
            out.append(
                update_op(
                    table,
                    {"pk": pk, "sk": sk},
                    add=dict(sorted(self._adds.get((pk, sk), {}).items())),
                    sets=dict(sorted(self._sets.get((pk, sk), {}).items())),
                    set_once=dict(sorted(self._set_once.get((pk, sk), {}).items())),
                )
            )
        return out


class ReportTable(ExpiringStore):
    """Reads of the reports table (writes go through ``Changes`` in a transaction; erasure deletes);
    state items expire ``TTL_DAYS`` after they are written (``expires_at``)."""

    TTL_DAYS = STATE_TTL_DAYS

    @property
    def name(self) -> str:
        return self._table

    def get(self, pk: str, sk: str = COUNTS) -> dict[str, Any] | None:
        return get(self._client, self._table, {"pk": pk, "sk": sk}, consistent=True)

    def get_many(self, item_keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Up to 100 items in one BatchGetItem (plus retries of unprocessed keys)."""
        wanted = list(dict.fromkeys(item_keys))
        if len(wanted) > 100:
            raise ValueError("at most 100 items per read")
        items = batch_get(self._client, self._table, [{"pk": pk, "sk": sk} for pk, sk in wanted])
        return {(str(item["pk"]), str(item["sk"])): item for item in items}

    def partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item under ``pk`` (a contact's, visitor's or message's state; consistent)."""
        return list(
            query_all(
                self._client,
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=values(pk=pk),
                ConsistentRead=True,
            )
        )

    def delete_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Delete these items (as ``partition`` read them), batched; how many."""
        return delete_items(self._client, self._table, items)

    def query_state(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        """One contact's state items (its journey memberships): per event, never per report."""
        return list(
            query_all(
                self._client,
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues=values(pk=pk, p=prefix),
                ConsistentRead=True,
            )
        )
