"""PLACEHOLDER: admin routes, filled in by the issue-4 work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.settings import Settings


def build_router(settings: Settings, client: Callable[[str], Any]) -> APIGatewayHttpRouter:
    """The routes, wired from the settings and ``client(service)`` (boto3 clients)."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]
    return router
