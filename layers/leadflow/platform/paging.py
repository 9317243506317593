"""Paging through AWS list calls that boto3 has no paginator for (e.g. Step Functions'
``ListStateMachineVersions``): follow ``nextToken`` until a page has none. Calls with a paginator
(``ListExecutions``, ``GetExecutionHistory``, DynamoDB's query/scan) use ``client.get_paginator``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def token_pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item under ``key`` of every page of ``client.<operation>(**params)``."""
    token: str | None = None
    while True:
        page = getattr(client, operation)(**params, **({"nextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return
