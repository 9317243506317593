"""admin: the authenticated admin API (IAM-authorized routes under /admin): contacts, privacy,
server events, segments, broadcasts, sales feedback and reports — each context's router over the
services ``leadflow.wiring.admin_app`` builds. Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler
from leadflow.kernel.settings import get_settings
from leadflow.platform.http import serve

app = wiring.admin_app(get_settings())
body_limits = wiring.admin_body_limits()


def resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return serve(app, event, context, body_limits)


handler = lambda_handler(resolve, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
