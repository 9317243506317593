"""What orchestrating journeys costs, next to what the emails cost: a pure model.

Inputs are what AWS bills by: Step Functions state transitions and Lambda invocations (counted
from execution histories), Lambda GB-seconds (billed duration x memory), DynamoDB request units
(counted from the requests and responses of the calls made: 1 KB per write unit, 4 KB per read
unit, transactions x2, eventually consistent reads x0.5, a write to a table with a global index
writes the index too). ``make bench`` prices a scripted behaviour mix with it; ``leadflow journeys
simulate`` can reuse it. Prices are on-demand list prices (us-east-1), overridable.

Invariants: nothing here calls AWS; the same history gives the same figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})


@dataclass(frozen=True)
class Prices:
    """US dollars per unit."""

    transition: float = 0.025 / 1000
    lambda_request: float = 0.20 / 1_000_000
    gb_second: float = 0.0000166667
    write_unit: float = 1.25 / 1_000_000
    read_unit: float = 0.25 / 1_000_000
    email: float = 0.10 / 1000


@dataclass
class Usage:
    """Billed quantities of some orchestration (one journey, one contact, a whole run)."""

    transitions: int = 0
    lambda_calls: int = 0
    gb_seconds: float = 0.0
    write_units: float = 0.0
    read_units: float = 0.0
    emails: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def orchestration_cost(self, prices: Prices = Prices()) -> float:
        """Step Functions + Lambda + DynamoDB, in dollars."""
        return (
            self.transitions * prices.transition
            + self.lambda_calls * prices.lambda_request
            + self.gb_seconds * prices.gb_second
            + self.write_units * prices.write_unit
            + self.read_units * prices.read_unit
        )

    def email_cost(self, prices: Prices = Prices()) -> float:
        """What SES charges for the emails."""
        return self.emails * prices.email

    def per_email(self) -> float:
        """Transitions per email sent (inf when nothing was sent)."""
        return self.transitions / self.emails if self.emails else math.inf

    def vs_ses(self, prices: Prices = Prices()) -> float:
        """Orchestration cost / SES cost (inf when nothing was sent)."""
        ses = self.email_cost(prices)
        return self.orchestration_cost(prices) / ses if ses else math.inf


# --- Step Functions and Lambda, from execution histories -------------------------------------------


def history_usage(events: Iterable[Mapping[str, Any]]) -> Usage:
    """Transitions (every state entered) and Lambda invocations (every Lambda task scheduled,
    retries included) of one execution's history (``GetExecutionHistory`` events)."""
    transitions = calls = 0
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            transitions += 1
        elif (
            kind == "TaskScheduled"
            and event.get("taskScheduledEventDetails", {}).get("resourceType") == "lambda"
        ) or kind == "LambdaFunctionScheduled":
            calls += 1
    return Usage(transitions=transitions, lambda_calls=calls)


def gb_seconds(duration_ms: float, memory_mb: int) -> float:
    """One invocation: billed duration (rounded up to the millisecond) x memory."""
    return math.ceil(duration_ms) / 1000 * memory_mb / 1024


# --- DynamoDB request units ---------------------------------------------------------------------


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's wire form (``{"S": ...}``), as DynamoDB sizes it."""
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        digits = str(data).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(value_size(member) + 1 for member in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in data.items())
    return len(json.dumps(data))


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item: its attribute names and values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return float(units * (2 if transactional else 1))


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return float(units * 2)
    return units * (1.0 if consistent else 0.5)


def call_units(
    operation: str,
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    indexes: Mapping[str, int] | None = None,
) -> tuple[float, float]:
    """(write units, read units) of one DynamoDB call from its request and response.
    ``indexes``: global secondary indexes per table name (a put writes each one too). An update
    is sized by the item it returns, else as one unit (leadflow's updated items are small)."""
    indexes = indexes or {}

    def put(table: str, item: Mapping[str, Any], transactional: bool = False) -> float:
        return write_units(item_size(item), transactional=transactional) * (1 + indexes.get(table, 0))

    if operation == "PutItem":
        return put(str(params["TableName"]), params["Item"]), 0.0
    if operation == "UpdateItem":
        attributes = response.get("Attributes")
        return write_units(item_size(attributes) if attributes else 0), 0.0
    if operation == "DeleteItem":
        return 1.0, 0.0
    if operation == "TransactWriteItems":
        total = 0.0
        for entry in params.get("TransactItems", []):
            for kind, op in entry.items():
                if kind == "Put":
                    total += put(str(op["TableName"]), op["Item"], transactional=True)
                else:
                    total += write_units(0, transactional=True)
        return total, 0.0
    if operation == "BatchWriteItem":
        total = 0.0
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                total += put(table, request["PutRequest"]["Item"]) if "PutRequest" in request else 1.0
        return total, 0.0
    if operation == "GetItem":
        item = response.get("Item") or {}
        return 0.0, read_units(item_size(item), consistent=bool(params.get("ConsistentRead")))
    if operation in ("Query", "Scan"):
        size = sum(item_size(i) for i in response.get("Items", []))
        return 0.0, read_units(size, consistent=bool(params.get("ConsistentRead")))
    if operation == "BatchGetItem":
        total = 0.0
        for table, found in response.get("Responses", {}).items():
            consistent = bool(params.get("RequestItems", {}).get(table, {}).get("ConsistentRead"))
            total += sum(read_units(item_size(i), consistent=consistent) for i in found)
        requested = sum(len(r.get("Keys", [])) for r in params.get("RequestItems", {}).values())
        returned = sum(len(found) for found in response.get("Responses", {}).values())
        return 0.0, total + 0.5 * max(0, requested - returned)  # a missing item still costs a read
    if operation == "TransactGetItems":
        items = [r.get("Item") or {} for r in response.get("Responses", [])]
        return 0.0, sum(read_units(item_size(i), consistent=True, transactional=True) for i in items)
    return 0.0, 0.0
