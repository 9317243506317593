"""The data-access layer owns DynamoDB: no module of the shipped ``leadflow`` package outside it
builds a DynamoDB request (issue 14).

The layer is ``platform/dynamo.py`` (how an item travels: values, update builder, paging,
batches, named transactions), ``platform/tables.py`` (table keys) and the stores: every
``*/store.py`` or ``*/stores.py`` plus the modules named in ``NAMED_STORES``. Everything else
(services, APIs, consumers) speaks to stores. A service may still *commit* a ``Transaction`` whose
operations its stores built (so an idempotency marker and its effect stay in one transaction), but
it builds no operation itself.

What counts as building a request, read from the source (``ast``), not by running it:
- calling a DynamoDB client operation (``put_item``, ``query``, ``batch_write_item``, ...), or
  ``get_paginator`` of a DynamoDB operation;
- a dict or a call whose keys name a request parameter (``TableName``, ``KeyConditionExpression``,
  ``UpdateExpression``, ``ConditionExpression``, ...);
- using a request builder of ``platform.dynamo`` (``update_op``, ``put_op``, ``query_all``,
  ``batch_write``, ...).

``local/`` (the embedded AWS runtime, not shipped) and ``ops/cli.py`` (operator tooling) are out
of scope; the Lambda handlers (``functions/*/app.py``) only wire and are held to the same rule."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "leadflow"
HANDLERS = ROOT / "functions"

NAMED_STORES = frozenset(
    {
        "platform/dynamo.py",
        "platform/tables.py",
        # Lanes: the progress items (META, one cursor per lane) of the bulk jobs' cursor chains
        "platform/lanes.py",
        # JourneyStore: enrollments, waits and frequency caps, next to the profile they belong to
        "journeys/runtime/enrollments.py",
    }
)
OUT_OF_SCOPE = ("local/", "ops/cli.py")

CLIENT_OPERATIONS = frozenset(
    {
        "put_item",
        "get_item",
        "update_item",
        "delete_item",
        "batch_get_item",
        "batch_write_item",
        "transact_write_items",
        "transact_get_items",
        "execute_statement",
        "batch_execute_statement",
        "execute_transaction",
    }
)
"""Operations only DynamoDB has: a call of any of them is a request, whatever the receiver."""
SHARED_NAME_OPERATIONS = frozenset({"query", "scan"})
"""Operation names other objects use too: a request when the receiver is a DynamoDB client (its
name says so) or the call passes request parameters."""
PAGINATED_OPERATIONS = frozenset({"query", "scan", "list_tables", "list_backups", "list_exports"})
REQUEST_PARAMETERS = frozenset(
    {
        "TableName",
        "KeyConditionExpression",
        "UpdateExpression",
        "ConditionExpression",
        "FilterExpression",
        "ProjectionExpression",
        "ExclusiveStartKey",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "RequestItems",
        "TransactItems",
    }
)
REQUEST_BUILDERS = frozenset(
    {
        "put_op",
        "update_op",
        "put_if",
        "update",
        "update_if",
        "update_returning",
        "get",
        "pages",
        "query_all",
        "scan_all",
        "batch_get",
        "batch_write",
        "item_key",
        "serialize",
        "values",
    }
)
"""What ``platform.dynamo`` shapes requests with. Not builders: ``Transaction``/``commit_once``/
``TransactionCancelled`` (committing the stores' operations), ``deserialize`` (stream images),
error decoding, ``Op``/``Item`` types."""
DYNAMO_MODULE = "leadflow.platform.dynamo"


@dataclass(frozen=True)
class Violation:
    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def _receiver_name(node: ast.expr) -> str:
    """``self._client`` -> ``_client``; ``ddb`` -> ``ddb``; anything else -> ``""``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _looks_like_dynamodb_client(node: ast.expr) -> bool:
    name = _receiver_name(node).lower()
    return any(word in name for word in ("client", "ddb", "dynamo"))


def _builder_aliases(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """Local names bound to ``platform.dynamo`` builders, and names bound to the module itself."""
    builders: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == DYNAMO_MODULE:
            for alias in node.names:
                if alias.name in REQUEST_BUILDERS:
                    builders[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module == "leadflow.platform":
            modules.update(alias.asname or alias.name for alias in node.names if alias.name == "dynamo")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == DYNAMO_MODULE:
                    modules.add(alias.asname or alias.name)
    return builders, modules


def requests_built(source: str) -> list[Violation]:
    """Every place ``source`` builds a DynamoDB request (empty: it builds none)."""
    tree = ast.parse(source)
    builders, modules = _builder_aliases(tree)
    found: list[Violation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == DYNAMO_MODULE:
            for alias in node.names:
                if alias.name in REQUEST_BUILDERS:
                    found.append(Violation(node.lineno, f"imports the request builder dynamo.{alias.name}"))
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in REQUEST_PARAMETERS:
                    found.append(Violation(node.lineno, f"builds a request dict with {key.value!r}"))
        elif isinstance(node, ast.Call):
            found.extend(_call_violations(node, builders, modules))
    return sorted(set(found), key=lambda v: (v.line, v.what))


def _call_violations(node: ast.Call, builders: dict[str, str], modules: set[str]) -> Iterator[Violation]:
    for keyword in node.keywords:
        if keyword.arg in REQUEST_PARAMETERS:
            yield Violation(node.lineno, f"passes the request parameter {keyword.arg}=")
    func = node.func
    if isinstance(func, ast.Name) and func.id in builders:
        yield Violation(node.lineno, f"calls the request builder dynamo.{builders[func.id]}")
    if not isinstance(func, ast.Attribute):
        return
    if isinstance(func.value, ast.Name) and func.value.id in modules and func.attr in REQUEST_BUILDERS:
        yield Violation(node.lineno, f"calls the request builder dynamo.{func.attr}")
    elif func.attr in CLIENT_OPERATIONS or (
        func.attr in SHARED_NAME_OPERATIONS and _looks_like_dynamodb_client(func.value)
    ):
        yield Violation(node.lineno, f"calls the DynamoDB operation {func.attr}")
    elif (
        func.attr == "get_paginator"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in PAGINATED_OPERATIONS
        and _looks_like_dynamodb_client(func.value)
    ):
        yield Violation(node.lineno, f"pages the DynamoDB operation {node.args[0].value}")


def is_store(relative: str) -> bool:
    return relative in NAMED_STORES or Path(relative).name in ("store.py", "stores.py")


def shipped_modules() -> list[str]:
    """Every module of the shipped package, relative to it (``capture/tracking.py``)."""
    modules = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))
    return [m for m in modules if not m.startswith(OUT_OF_SCOPE)]


def test_only_stores_build_dynamodb_requests() -> None:
    outside = {
        module: requests_built((PACKAGE / module).read_text())
        for module in shipped_modules()
        if not is_store(module)
    }
    offenders = {module: [str(v) for v in found] for module, found in outside.items() if found}
    assert offenders == {}, "modules outside the data-access layer that build DynamoDB requests"


def test_handlers_only_wire_and_build_no_dynamodb_requests() -> None:
    handlers = sorted(HANDLERS.glob("*/app.py"))
    assert len(handlers) >= 10  # every Lambda function's handler
    offenders = {
        path.parent.name: [str(v) for v in found]
        for path in handlers
        if (found := requests_built(path.read_text()))
    }
    assert offenders == {}


def test_the_scan_covers_the_package_and_the_layer_is_where_it_says() -> None:
    modules = shipped_modules()
    assert {"capture/tracking.py", "wiring.py"} <= set(modules)
    assert [m for m in modules if m.startswith("local/") or m == "ops/cli.py"] == []
    assert set(NAMED_STORES) <= set(modules)  # a renamed store must be renamed here too
    stores = [m for m in modules if is_store(m)]
    # the layer really builds requests: a store that builds none would be no store (``tables``
    # only names keys)
    idle = [m for m in stores if m != "platform/tables.py" and not requests_built((PACKAGE / m).read_text())]
    assert idle == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def f(client):\n    client.put_item(TableName='t', Item={})\n",
            [
                "line 2: calls the DynamoDB operation put_item",
                "line 2: passes the request parameter TableName=",
            ],
        ),
        (
            "def f(self):\n    return self._client.query(**self._params)\n",
            ["line 2: calls the DynamoDB operation query"],
        ),
        (
            "def f(ddb):\n    return ddb.get_paginator('scan')\n",
            ["line 2: pages the DynamoDB operation scan"],
        ),
        (
            "op = {'Update': {'TableName': 't', 'UpdateExpression': 'SET a = :a'}}\n",
            [
                "line 1: builds a request dict with 'TableName'",
                "line 1: builds a request dict with 'UpdateExpression'",
            ],
        ),
        (
            "from leadflow.platform.dynamo import Transaction, update_op as op\n\nx = op('t', {}, add={'n': 1})\n",
            [
                "line 1: imports the request builder dynamo.update_op",
                "line 3: calls the request builder dynamo.update_op",
            ],
        ),
        (
            "from leadflow.platform import dynamo\n\ndynamo.batch_write(c, 't', deletes=[])\n",
            ["line 3: calls the request builder dynamo.batch_write"],
        ),
    ],
    ids=[
        "client-operation",
        "query-on-a-client",
        "dynamodb-paginator",
        "request-dict",
        "builder",
        "module-builder",
    ],
)
def test_the_checker_catches_a_request_built_outside_a_store(source: str, expected: list[str]) -> None:
    assert [str(v) for v in requests_built(source)] == expected


def test_the_checker_lets_services_commit_their_stores_operations() -> None:
    service = (
        "from leadflow.platform.dynamo import Transaction, TransactionCancelled, commit_once, deserialize\n"
        "def f(store, client, sfn, params):\n"
        "    txn = Transaction()\n"
        "    txn.add(store.claim_op('x'), 'claim')\n"
        "    txn.commit(client)\n"
        "    sfn.get_paginator('list_executions')\n"
        "    search.query('text')\n"
        "    return deserialize(params['NewImage']), params['TableName']\n"
    )
    assert requests_built(service) == []
