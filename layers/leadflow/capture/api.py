"""Server events over HTTP: ``POST /admin/events`` (IAM-authorized, the admin function) and the
answer ``POST /events/signed`` shares with it once its signature is checked (the track function).

A body is one server event (the body of ``POST /events``) or ``{"events": [...]}`` (up to 500):
202 with the event's result, or one result per event of a batch; a body that is not JSON or does
not validate is 400 naming the field (``InvalidInput``, answered by ``platform.http.map_errors``)."""

from __future__ import annotations

import json
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import ValidationError

from leadflow.capture.server_events import ServerEvents
from leadflow.kernel.errors import InvalidFields, InvalidInput
from leadflow.platform.http import json_response, validation_fields


def record_server_events(events: ServerEvents, body: str) -> Response[str]:
    """202 with what ``events`` recorded of the JSON ``body``."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", "is not valid JSON") from exc
    try:
        _, result = events.record_body(data)
    except ValidationError as exc:
        raise InvalidFields(validation_fields(list(exc.errors()))) from exc
    return json_response(HTTPStatus.ACCEPTED, result)


def admin_router(events: ServerEvents) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.post("/admin/events")
    def post_server_events() -> Response[str]:
        """One server event or ``{"events": [...]}`` (up to 500)."""
        return record_server_events(events, router.current_event.decoded_body or "")

    return router
