"""JSON error responses shared by the API handlers (track and admin): one shape for every 4xx."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import (
    BaseModel,
    Field,
)


def json_response(status: HTTPStatus, model: BaseModel) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


def error_response(
    status: HTTPStatus, message: str, fields: list[dict[str, str]] | None = None
) -> Response[str]:
    return json_response(status, ClientError(error=message, fields=fields or []))


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}|\d{1,6}")


def validation_fields(errors: Iterable[Any]) -> list[dict[str, str]]:
    """Pydantic/Powertools validation errors as ``[{"field": "a.b", "message": ...}]``.

    A location part that is not a field name (an unexpected key is whatever the client sent, e.g. a
    whole JSON document posted as a form) is shown as ``?``: an answer never echoes posted data."""
    out = []
    for err in errors:
        loc = [
            part if _FIELD_NAME.fullmatch(part) else "?"
            for part in (str(p) for p in err.get("loc", ()) if p not in ("body",))
        ]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


MAX_REQUEST_BYTES = 64 * 1024
"""Largest request body the API accepts (API Gateway's own limit is 10 MB): a bigger POST is
refused with 413 before any parsing."""


def _refusal(status: HTTPStatus, error: str, message: str) -> dict[str, Any]:
    body = ClientError(error=error, fields=[{"field": "body", "message": message}])
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


def refuse_unreadable(event: dict[str, Any], max_bytes: int = MAX_REQUEST_BYTES) -> dict[str, Any] | None:
    """The answer (HTTP API v2 shape) for a POST/PUT body the API never parses: over ``max_bytes``
    (413) or not UTF-8 text (400, API Gateway passes such bodies base64 encoded); None for every
    other request. Checked before the resolver."""
    method = (event.get("requestContext") or {}).get("http", {}).get("method")
    if method not in ("POST", "PUT"):
        return None
    raw = event.get("body") or ""
    if len(raw) > max_bytes:
        return _refusal(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "request body too large",
            f"larger than {max_bytes} bytes",
        )
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _refusal(HTTPStatus.BAD_REQUEST, "invalid request", "is not valid UTF-8 text")
    return None


class ClientError(BaseModel):
    """The JSON body of every 4xx answer."""

    error: str
    fields: list[dict[str, str]] = Field(default_factory=list)
