"""The progress items of a bulk job (``leadflow.platform.bulk``): the store of its cursor chains.

A job ``<pk>`` has a ``META`` item (what the job is, created once: a conditional put) and one item
``LANE#<nn>`` per lane holding the recorded ``cursor`` (``START`` before the first page, ``$`` when
done), the pages done, the page counters summed, and ``advanced_by`` (the SQS message id of the
last advance). Invariants:
- the META put and every lane item are written in one transaction, with whatever the caller adds
  to it (``create(..., also=...)``): a job exists whole or not at all, and exactly once;
- a cursor moves only by compare-and-set (``advance``: ``after -> next`` and the page's counters in
  one conditional update), so each cursor value advances once whatever is redelivered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leadflow.platform.dynamo import Op, Transaction, get, put_op, query_all, update_if, update_op, values

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

START = "^"
"""The recorded cursor of a lane that has not done a page yet (``after: null`` in a job)."""
LANE_PREFIX = "LANE#"
META = "META"


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

    def __init__(self, client: DynamoDBClient, table: str) -> None:
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
        return txn.commit_unless(self._client, "meta")

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
