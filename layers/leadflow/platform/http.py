"""JSON error responses shared by the API handlers (track and admin): one shape for every 4xx
(``ClientError``: ``error`` and the ``fields`` that failed, never the values given), and one mapping
of the domain errors to it (``map_errors``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel, Field

from leadflow.kernel.errors import Conflict, InvalidFields, InvalidInput, NotFound, validation_fields


def json_response(status: HTTPStatus, model: BaseModel) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


def error_response(
    status: HTTPStatus, message: str, fields: list[dict[str, str]] | None = None
) -> Response[str]:
    return json_response(status, ClientError(error=message, fields=fields or []))


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


def map_errors(resolver: APIGatewayHttpResolver, on_rejected: Callable[[], None] = lambda: None) -> None:
    """Answer the domain errors the same way on every route of ``resolver``: a request that does
    not validate and ``InvalidInput`` 400 naming the fields (``on_rejected`` is called, e.g. to
    count it), ``NotFound`` 404, ``Conflict`` 409. ``InvalidFields`` (every problem of a body)
    answers all of them, under its ``summary``."""

    @resolver.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _validation_error(exc: RequestValidationError) -> Response[str]:
        on_rejected()
        return error_response(HTTPStatus.BAD_REQUEST, "invalid request", validation_fields(exc.errors()))

    @resolver.exception_handler(InvalidInput)  # type: ignore[untyped-decorator]
    def _invalid_input(exc: InvalidInput) -> Response[str]:
        on_rejected()
        if isinstance(exc, InvalidFields):
            return error_response(HTTPStatus.BAD_REQUEST, exc.summary, exc.fields)
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid request", [{"field": exc.field, "message": exc.message}]
        )

    @resolver.exception_handler(NotFound)  # type: ignore[untyped-decorator]
    def _not_found(exc: NotFound) -> Response[str]:
        return error_response(HTTPStatus.NOT_FOUND, str(exc))

    @resolver.exception_handler(Conflict)  # type: ignore[untyped-decorator]
    def _conflict(exc: Conflict) -> Response[str]:
        return error_response(HTTPStatus.CONFLICT, str(exc))


def iam_actor(event: APIGatewayProxyEventV2) -> str:
    """Who called an IAM-authorized route (the caller's ARN), for audit records."""
    identity = event.request_context.authorizer.iam
    return (identity.user_arn if identity else None) or "unknown"


def serve(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: Any,
    body_limits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload v2) invocation: an unreadable or too large body is refused before the
    resolver (``refuse_unreadable``; ``body_limits``: a larger limit by raw path)."""
    limit = (body_limits or {}).get(str(event.get("rawPath")), MAX_REQUEST_BYTES)
    return refuse_unreadable(event, limit) or app.resolve(event, context)


def accepted(model: type[BaseModel], description: str) -> dict[int, Any]:
    """The OpenAPI description of a 202 answer with ``model`` as its body (a route's ``responses``)."""
    return {202: {"description": description, "content": {"application/json": {"model": model}}}}
