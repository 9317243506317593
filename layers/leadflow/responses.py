"""JSON error responses shared by the API handlers (track and admin): one shape for every 4xx."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel

from leadflow.models import ClientError


def json_response(status: HTTPStatus, model: BaseModel) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


def error_response(
    status: HTTPStatus, message: str, fields: list[dict[str, str]] | None = None
) -> Response[str]:
    return json_response(status, ClientError(error=message, fields=fields or []))


def validation_fields(errors: Iterable[Any]) -> list[dict[str, str]]:
    """Pydantic/Powertools validation errors as ``[{"field": "a.b", "message": ...}]``."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


MAX_REQUEST_BYTES = 64 * 1024
"""Largest request body the API accepts (API Gateway's own limit is 10 MB): a bigger POST is
refused with 413 before any parsing."""


def refuse_oversized(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 413 answer (HTTP API v2 shape) for a POST body over ``MAX_REQUEST_BYTES``, else None.

    Checked before the resolver, so an oversized body is never parsed or validated."""
    method = (event.get("requestContext") or {}).get("http", {}).get("method")
    if method != "POST" or len(event.get("body") or "") <= MAX_REQUEST_BYTES:
        return None
    body = ClientError(
        error="request body too large",
        fields=[{"field": "body", "message": f"larger than {MAX_REQUEST_BYTES} bytes"}],
    )
    return {
        "statusCode": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }
