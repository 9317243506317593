"""DynamoDB helpers over a low-level boto3 client: the one place requests are shaped, paged,
batched and committed. Stores (``events/store.py``, ``contacts/store.py``, ``messaging/store.py``, ``segments/store.py`` ...) own
their items' keys and meanings; this module owns how an item travels.

What it owns, and the invariants it keeps:

- **Values.** ``serialize``/``deserialize``/``values`` convert between Python and DynamoDB's
  typed JSON: floats are stored as ``Decimal`` (DynamoDB has no binary float), numbers come back as
  ``int`` where integral and ``float`` otherwise, ``None`` attributes are never written.
- **Update expressions.** ``update_op`` builds one ``Update`` (for a transaction, or
  ``client.update_item(**op["Update"])``) from field -> value mappings. Every attribute name goes
  through a placeholder (``#s0 = :s0``), so reserved words (``status``, ``name``) and odd field
  names are always safe; placeholders of the parts never collide (``#s``/``#o``/``#a``/``#d``/``#r``
  prefixes, caller-supplied names for raw clauses).
- **Paging.** ``pages``/``query_all``/``scan_all`` read through boto3 paginators: every page
  (``LastEvaluatedKey`` followed) unless the caller stops; a caller that keeps a cursor reads the
  raw page's ``LastEvaluatedKey`` itself.
- **Batches.** ``batch_get`` (100 keys a request) and ``batch_write`` (25 requests a request)
  retry what DynamoDB hands back unprocessed (``UnprocessedKeys``/``UnprocessedItems``: throttling,
  the 16 MB response limit) with capped exponential backoff and full jitter, and raise
  ``Unprocessed`` after ``max_attempts`` rather than silently dropping a key. Duplicate keys are
  read once (DynamoDB refuses a batch with duplicates). ``delete_items`` deletes items as read
  (by their ``pk``/``sk``) through ``batch_write``.
- **Transactions.** ``Transaction`` collects up to 100 operations, each with a *name* (unique in
  the transaction). When DynamoDB cancels it, ``commit`` raises ``TransactionCancelled`` (still a
  ``ClientError``): ``failed`` lists the names of the operations that caused the cancellation and
  ``reasons`` maps every name to its code, so callers ask "did ``email_claim`` fail its
  condition?" instead of decoding positions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef, UpdateTypeDef

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Item = dict[str, Any]
Op = dict[str, Any]
"""One transaction operation: ``{"Put": {...}}``, ``{"Update": {...}}``, ``{"Delete": ...}`` or
``{"ConditionCheck": ...}``."""

MAX_TRANSACTION_ITEMS = 100
BATCH_GET_KEYS = 100
BATCH_WRITE_REQUESTS = 25
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"


class ExpiringStore:
    """A store whose items expire ``ttl_days`` after they are written (``expires_at()``: the epoch
    second to put in the table's TTL attribute). ``TTL_DAYS`` is the subclass's default."""

    TTL_DAYS = 30

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        ttl_days: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._ttl_s = (self.TTL_DAYS if ttl_days is None else ttl_days) * 86400
        self._now = now

    def expires_at(self) -> int:
        return int(self._now()) + self._ttl_s


# --- values -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Decimals from DynamoDB back to int/float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def _ddb_safe(value: Any) -> Any:
    """Floats to Decimal (DynamoDB has no binary floats), recursively."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _ddb_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ddb_safe(v) for v in value]
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_ddb_safe(v)) for k, v in item.items() if v is not None}


def deserialize(image: Mapping[str, Any]) -> Item:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in image.items()}


def values(**kwargs: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments (``:name`` placeholders)."""
    return {f":{k}": _serializer.serialize(_ddb_safe(v)) for k, v in kwargs.items()}


def item_key(pk: str, sk: str) -> dict[str, Any]:
    """The serialized primary key of a ``pk``/``sk`` table."""
    return serialize({"pk": pk, "sk": sk})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_conditional_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def cancellation_codes(exc: ClientError) -> list[str]:
    """Per-item reason codes of a cancelled transaction (``None`` codes become ``"None"``), in the
    order of its operations. Prefer ``TransactionCancelled.reasons``: it names them."""
    reasons = exc.response.get("CancellationReasons") or []
    return [str(reason.get("Code", "None")) for reason in reasons]


# --- single operations ----------------------------------------------------------------------------


def put_op(
    table: str,
    item: Mapping[str, Any],
    condition: str | None = None,
    *,
    names: Mapping[str, str] | None = None,
    values_: Mapping[str, Any] | None = None,
) -> Op:
    """One ``Put`` of the whole ``item`` (plain values); ``condition`` over ``names``/``values_``
    placeholders (``values_`` plain, keyed without the colon)."""
    op: PutTypeDef = {"TableName": table, "Item": serialize(item)}
    if condition:
        op["ConditionExpression"] = condition
    if names:
        op["ExpressionAttributeNames"] = dict(names)
    if values_:
        op["ExpressionAttributeValues"] = values(**values_)
    return {"Put": op}


def put_if(client: DynamoDBClient, op: Op) -> bool:
    """Run one conditional ``put_op`` outside a transaction: False (nothing written) when its
    condition fails."""
    try:
        client.put_item(**op["Put"])
    except ClientError as exc:
        if is_conditional_failure(exc):
            return False
        raise
    return True


def update_op(
    table: str,
    key: Mapping[str, Any],
    *,
    sets: Mapping[str, Any] | None = None,
    set_once: Mapping[str, Any] | None = None,
    set_clauses: Sequence[str] = (),
    add: Mapping[str, Any] | None = None,
    delete: Mapping[str, Any] | None = None,
    remove: Sequence[str] = (),
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values_: Mapping[str, Any] | None = None,
) -> Op:
    """One ``Update`` operation on the item with ``key`` (plain values, serialized here).

    - ``sets``: field -> value, each ``#s{i} = :s{i}`` (``None`` values are skipped: an absent
      value is never written; remove a field with ``remove``);
    - ``set_once``: field -> value written only where the field is absent
      (``#o{i} = if_not_exists(#o{i}, :o{i})``; ``None`` values skipped too);
    - ``set_clauses``: raw ``SET`` clauses (``"created_at = if_not_exists(created_at, :at)"``),
      their placeholders in ``names``/``values_``;
    - ``add``: field -> number or set (``ADD #a{i} :a{i}``); ``delete``: field -> set to take out
      (``DELETE #d{i} :d{i}``); ``remove``: fields to drop (``REMOVE #r{i}``);
    - ``condition``: a ``ConditionExpression`` over ``names``/``values_`` placeholders.

    Raises ``ValueError`` for an update that changes nothing."""
    all_names: dict[str, str] = dict(names or {})
    all_values: dict[str, Any] = dict(values_ or {})

    def placed(prefix: str, mapping: Mapping[str, Any] | None, shape: str) -> list[str]:
        """``shape`` (over ``{n}``/``{v}``) for each field with a value, its placeholders recorded."""
        parts = []
        for i, (name, value) in enumerate((mapping or {}).items()):
            if value is None:
                continue
            all_names[f"#{prefix}{i}"] = name
            all_values[f"{prefix}{i}"] = value
            parts.append(shape.format(n=f"#{prefix}{i}", v=f":{prefix}{i}"))
        return parts

    set_parts = [
        *set_clauses,
        *placed("s", sets, "{n} = {v}"),
        *placed("o", set_once, "{n} = if_not_exists({n}, {v})"),
    ]
    clauses = ["SET " + ", ".join(set_parts)] if set_parts else []
    for keyword, prefix, mapping in (("ADD", "a", add), ("DELETE", "d", delete)):
        parts = placed(prefix, mapping, "{n} {v}")
        if parts:
            clauses.append(f"{keyword} " + ", ".join(parts))
    if remove:
        for i, name in enumerate(remove):
            all_names[f"#r{i}"] = name
        clauses.append("REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))))
    if not clauses:
        raise ValueError("an update needs at least one SET, ADD, DELETE or REMOVE")
    op: UpdateTypeDef = {
        "TableName": table,
        "Key": serialize(key),
        "UpdateExpression": " ".join(clauses),
    }
    if condition:
        op["ConditionExpression"] = condition
    if all_names:
        op["ExpressionAttributeNames"] = all_names
    if all_values:
        op["ExpressionAttributeValues"] = values(**all_values)
    return {"Update": op}


def update(client: DynamoDBClient, op: Op) -> None:
    """Run one ``update_op`` outside a transaction."""
    client.update_item(**op["Update"])


def update_if(client: DynamoDBClient, op: Op) -> bool:
    """Run one conditional ``update_op``: False (nothing written) when its condition fails."""
    try:
        update(client, op)
    except ClientError as exc:
        if is_conditional_failure(exc):
            return False
        raise
    return True


def update_returning(client: DynamoDBClient, op: Op) -> Item | None:
    """Run one conditional ``update_op`` and return the item as it is after the write (``ALL_NEW``,
    in the same request); None (nothing written) when its condition fails."""
    try:
        resp = client.update_item(**op["Update"], ReturnValues="ALL_NEW")
    except ClientError as exc:
        if is_conditional_failure(exc):
            return None
        raise
    return deserialize(resp.get("Attributes") or {})


def get(
    client: DynamoDBClient,
    table: str,
    key: Mapping[str, Any],
    *,
    consistent: bool = False,
    fields: Sequence[str] = (),
) -> Item | None:
    """One item by its key (plain values), or None; only ``fields`` when given."""
    params: dict[str, Any] = {"TableName": table, "Key": serialize(key), "ConsistentRead": consistent}
    if fields:
        params["ProjectionExpression"] = ", ".join(f"#f{i}" for i in range(len(fields)))
        params["ExpressionAttributeNames"] = {f"#f{i}": name for i, name in enumerate(fields)}
    resp = client.get_item(**params)
    return deserialize(resp["Item"]) if "Item" in resp else None


# --- paging ---------------------------------------------------------------------------------------


def pages(
    client: DynamoDBClient, operation: Literal["query", "scan"], **params: Any
) -> Iterator[dict[str, Any]]:
    """Raw response pages of ``query`` or ``scan`` from boto3's paginator (``Limit`` is the page
    size; an ``ExclusiveStartKey`` in ``params`` starts there). Each page keeps its
    ``LastEvaluatedKey``, for callers that hand out a cursor."""
    if operation not in ("query", "scan"):
        raise ValueError(f"pages reads query or scan, not {operation!r}")
    yield from client.get_paginator(operation).paginate(**params)


def query_all(client: DynamoDBClient, *, limit: int | None = None, **params: Any) -> Iterator[Item]:
    """Every item of a query, deserialized, page after page (at most ``limit`` items)."""
    yield from _items(pages(client, "query", **params), limit)


def scan_all(client: DynamoDBClient, *, limit: int | None = None, **params: Any) -> Iterator[Item]:
    """Every item of a scan, deserialized, page after page (at most ``limit`` items)."""
    yield from _items(pages(client, "scan", **params), limit)


def _items(source: Iterator[dict[str, Any]], limit: int | None) -> Iterator[Item]:
    if limit is not None and limit <= 0:
        return
    yielded = 0
    for page in source:
        for raw in page.get("Items", []):
            yield deserialize(raw)
            yielded += 1
            if limit is not None and yielded >= limit:
                return


# --- batches --------------------------------------------------------------------------------------


class Unprocessed(RuntimeError):
    """DynamoDB kept handing back part of a batch after every retry."""

    def __init__(self, operation: str, remaining: int, attempts: int) -> None:
        super().__init__(f"{operation}: {remaining} request(s) still unprocessed after {attempts} attempts")
        self.operation = operation
        self.remaining = remaining
        self.attempts = attempts


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter (the AWS-recommended shape): before retry ``n``
    (1-based) wait a random time in ``[0, min(cap, base * 2**(n-1))]``."""

    base: float = 0.05
    cap: float = 2.0
    max_attempts: int = 8
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform

    def wait(self, retry: int) -> None:
        self.sleep(self.jitter(0.0, min(self.cap, self.base * 2 ** (retry - 1))))


DEFAULT_BACKOFF = Backoff()


def _retrying(
    send: Callable[[dict[str, Any]], Mapping[str, Any]],
    request: dict[str, Any],
    unprocessed_field: str,
    operation: str,
    backoff: Backoff,
) -> None:
    attempt = 0
    while request:
        if attempt:
            backoff.wait(attempt)
        resp = send(request)
        attempt += 1
        request = resp.get(unprocessed_field) or {}
        if request and attempt >= backoff.max_attempts:
            remaining = sum(
                len(entry.get("Keys", [])) if isinstance(entry, dict) else len(entry)
                for entry in request.values()
            )
            raise Unprocessed(operation, remaining, attempt)


def batch_get(
    client: DynamoDBClient,
    table: str,
    item_keys: Sequence[Mapping[str, Any]],
    *,
    consistent: bool = True,
    fields: Sequence[str] = (),
    backoff: Backoff = DEFAULT_BACKOFF,
) -> list[Item]:
    """The items with these keys (plain values; duplicates read once), deserialized, in no
    particular order; absent keys are simply missing. ``fields`` projects (include the key fields
    if the caller needs them). ``UnprocessedKeys`` are retried with ``backoff``."""
    unique = list({tuple(sorted(k.items())): k for k in item_keys}.values())
    projection: dict[str, Any] = {}
    if fields:
        projection = {
            "ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(fields))),
            "ExpressionAttributeNames": {f"#p{i}": name for i, name in enumerate(fields)},
        }
    found: list[Item] = []

    def send(request: dict[str, Any]) -> Mapping[str, Any]:
        resp = client.batch_get_item(RequestItems=request)
        found.extend(deserialize(raw) for raw in resp.get("Responses", {}).get(table, []))
        return resp

    for start in range(0, len(unique), BATCH_GET_KEYS):
        chunk = unique[start : start + BATCH_GET_KEYS]
        request = {table: {"Keys": [serialize(k) for k in chunk], "ConsistentRead": consistent, **projection}}
        _retrying(send, request, "UnprocessedKeys", "BatchGetItem", backoff)
    return found


def batch_write(
    client: DynamoDBClient,
    table: str,
    *,
    puts: Sequence[Mapping[str, Any]] = (),
    deletes: Sequence[Mapping[str, Any]] = (),
    backoff: Backoff = DEFAULT_BACKOFF,
) -> int:
    """Put ``puts`` (whole items) and delete the items with keys ``deletes`` (plain values), 25
    requests a call, ``UnprocessedItems`` retried with ``backoff``. Not atomic: use a
    ``Transaction`` where all-or-nothing matters. Returns how many requests were written."""
    requests = [{"PutRequest": {"Item": serialize(item)}} for item in puts]
    requests += [{"DeleteRequest": {"Key": serialize(key)}} for key in deletes]

    def send(request: dict[str, Any]) -> Mapping[str, Any]:
        resp = client.batch_write_item(RequestItems=request)
        return resp

    for start in range(0, len(requests), BATCH_WRITE_REQUESTS):
        chunk = requests[start : start + BATCH_WRITE_REQUESTS]
        _retrying(send, {table: chunk}, "UnprocessedItems", "BatchWriteItem", backoff)
    return len(requests)


def delete_items(client: DynamoDBClient, table: str, items: Sequence[Mapping[str, Any]]) -> int:
    """Delete these items of a ``pk``/``sk`` table (as read: each by its ``pk`` and ``sk``) with
    ``batch_write``; returns how many delete requests were written."""
    return batch_write(client, table, deletes=[{"pk": item["pk"], "sk": item["sk"]} for item in items])


# --- transactions ---------------------------------------------------------------------------------


class TransactionCancelled(ClientError):  # type: ignore[misc]  # botocore is untyped here
    """A ``TransactionCanceledException`` that knows which named operations caused it."""

    def __init__(self, cause: ClientError, names: Sequence[str]) -> None:
        super().__init__(cause.response, cause.operation_name)
        codes = cancellation_codes(cause)
        self.reasons: dict[str, str] = dict(zip(names, codes, strict=False))
        self.failed: list[str] = [name for name, code in self.reasons.items() if code != "None"]

    def failed_condition(self, name: str | None = None) -> bool:
        """Did ``name`` (or, without a name, any operation) fail its condition?"""
        if name is None:
            return CONDITIONAL_CHECK_FAILED in self.reasons.values()
        return self.reasons.get(name) == CONDITIONAL_CHECK_FAILED

    def conflicted(self) -> bool:
        """Was it cancelled because another transaction was writing the same item?"""
        return "TransactionConflict" in self.reasons.values()


@dataclass
class Transaction:
    """Collects named operations for one ``transact_write_items`` call (max 100 items).

    ``add(op, name)`` returns the operation's position; a name is unique in the transaction
    (unnamed operations are called ``op<position>``). ``commit`` raises ``TransactionCancelled``
    naming the failed operations."""

    items: list[Op] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, item: Op, name: str | None = None) -> int:
        position = len(self.items)
        label = name or f"op{position}"
        if label in self.names:
            raise ValueError(f"transaction operation {label!r} is named twice")
        self.items.append(item)
        self.names.append(label)
        return position

    def extend(self, ops: Sequence[Op], name: str) -> None:
        """Add ``ops`` named ``name[0]``, ``name[1]``, ..."""
        for i, op in enumerate(ops):
            self.add(op, f"{name}[{i}]")

    def __len__(self) -> int:
        return len(self.items)

    def commit_unless(self, client: DynamoDBClient, guard: str) -> bool:
        """Commit, or nothing when the condition of the operation named ``guard`` fails: False
        then (e.g. a job or an enrollment that exists already); any other cancellation raises."""
        return commit_once(lambda txn: txn.commit(client), self, guard)

    def commit(self, client: DynamoDBClient) -> None:
        try:
            # the operations are the plain dicts ``put_op``/``update_op``/the stores build (``Op``);
            # their shape is DynamoDB's, checked there, not re-declared as TypedDicts at every store
            client.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", self.items))
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise TransactionCancelled(exc, self.names) from exc
            raise


def commit_once(commit: Callable[[Transaction], None], txn: Transaction, guard: str) -> bool:
    """Commit ``txn``, made exactly-once by its operation named ``guard`` (a conditional put: an
    idempotency marker, or the event itself): False when the guard exists already — a redelivery,
    nothing written; any other cancellation raises. ``commit`` is the caller's committer (e.g. the
    transactor ``wiring`` builds), so what commits stays injectable."""
    try:
        commit(txn)
    except TransactionCancelled as exc:
        if exc.failed_condition(guard):
            return False
        raise
    return True
