"""Metering a local run for the cost model (``leadflow.journeys.cost``): the DynamoDB units of the
calls made inside metered handlers. ``make bench`` and ``leadflow journeys simulate`` both meter
this way, so their figures are the same accounting.

A handler is metered by setting ``scope`` on the meter's thread-local state around it (each Step
Functions execution runs its tasks in its own thread); every DynamoDB call made in a scope is
priced by ``call_units`` and handed to ``charge``, which decides whom it is billed to. A failed
conditional write is billed as one write unit, as DynamoDB bills it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from leadflow.journeys.cost import WRITES, Usage, call_units
from leadflow.local.system import resource_name
from leadflow.platform.tables import ALL_TABLES

SEND_MEMORY_MB = 512
"""The deployed memory size of the journey step function (``send``): its GB-seconds."""
INDEXES = {resource_name(spec.name): len(spec.indexes) for spec in ALL_TABLES}
"""Local table name -> how many global secondary indexes a write to it also writes."""


def enrollment_journey(params: Any) -> str | None:
    """The journey whose enrollment item (``J#<journey>``) a call writes or reads, if any."""
    keys = [params.get("Key"), params.get("Item")]
    keys += [
        op.get("Key") or op.get("Item") for entry in params.get("TransactItems", []) for op in entry.values()
    ]
    for key in keys:
        sk = ((key or {}).get("sk") or {}).get("S", "")
        if sk.startswith("J#"):
            return str(sk[2:])
    return None


class DynamoMeter(ABC):
    """Counts the DynamoDB units of calls made in a scope; subclasses say whom they are billed to."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()

    @abstractmethod
    def charge(self, scope: Any, params: Any, usage: Usage) -> None:
        """Bill ``usage`` of one call (its request ``params``) made in ``scope``."""

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Meter every DynamoDB call of every client while the context is open."""
        original = BaseClient._make_api_call
        meter = self

        def counted(client: BaseClient, operation: str, params: Any) -> Any:
            scope = getattr(meter.local, "scope", None)
            if scope is None or client.meta.service_model.service_name != "dynamodb":
                return original(client, operation, params)
            try:
                response = original(client, operation, params)
            except ClientError:
                if operation in WRITES:  # a failed conditional write is billed too
                    meter.charge(scope, params, Usage(write_units=1.0))
                raise
            writes, reads = call_units(operation, params, response, INDEXES)
            meter.charge(scope, params, Usage(write_units=writes, read_units=reads))
            return response

        BaseClient._make_api_call = counted
        try:
            yield
        finally:
            BaseClient._make_api_call = original
