"""track: the public HTTP API (API Gateway HTTP API, payload v2) — pixels, clicks, events, forms,
unsubscribes, double opt-in confirmations: capture's public routes (``leadflow.capture.api``) over
the tracking service (``leadflow.capture.tracking``). Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler
from leadflow.kernel.settings import get_settings
from leadflow.platform.http import serve

settings = get_settings()
service = wiring.tracking_service(settings)
app = wiring.track_app(settings, service)


def resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return serve(app, event, context)


handler = lambda_handler(resolve, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
