"""admin: the authenticated admin API (IAM-authorized routes under /admin): contact reads,
do-not-contact, manual journey enrollment and server events. Wiring only."""

from __future__ import annotations

import json
from functools import cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from leadflow import wiring
from leadflow.capture.server_events import MAX_BODY_BYTES as MAX_EVENTS_BYTES
from leadflow.capture.server_events import ServerEvents
from leadflow.contacts import api as contacts_api
from leadflow.contacts.directory import (
    ContactDirectory,
    ContactLookup,
    ContactRef,
    ContactView,
    DoNotContactIn,
    DoNotContactResult,
    EnrollmentAccepted,
    EnrollmentIn,
)
from leadflow.kernel.errors import Conflict, InvalidInput, NotFound
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings
from leadflow.leads import api as sales_api
from leadflow.platform.http import error_response, json_response, refuse_unreadable, validation_fields
from leadflow.privacy.service import ContactExport, ErasureRequest, ErasureResult, PrivacyService
from leadflow.reporting.api import reports_router
from leadflow.segments import api as segments_api

settings = get_settings()
_ddb = wiring.client("dynamodb")
directory = ContactDirectory(
    contacts=wiring.contact_store(settings, _ddb),
    ddb=_ddb,
    events_table=settings.events_table,
    events=wiring.event_store(settings, _ddb),
    transact=wiring.transactor(_ddb),
)
privacy = PrivacyService(
    ddb=_ddb,
    contacts=wiring.contact_store(settings, _ddb),
    contacts_table=settings.contacts_table,
    events_table=settings.events_table,
    messages_table=settings.messages_table,
    reports_table=settings.reports_table,
    sfn=wiring.lazy_client("stepfunctions"),  # erasures only: built at their first
    state_machine_arn=settings.state_machine_arn,
)
server_events = ServerEvents(wiring.event_recorder(settings, _ddb))


@cache
def manual_journeys() -> set[str]:
    """The journeys with a manual entry, read at the first enrollment request (a rare admin call:
    the journey model is not loaded at cold start)."""
    from leadflow.journeys import load_journeys

    return {j.id for j in load_journeys(settings.journeys_dir) if j.entry.kind == "manual"}


app = APIGatewayHttpResolver(enable_validation=True)


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _validation_error(exc: RequestValidationError) -> Response[str]:
    return error_response(HTTPStatus.BAD_REQUEST, "invalid request", validation_fields(exc.errors()))


@app.exception_handler(NotFound)  # type: ignore[untyped-decorator]
def _not_found(exc: NotFound) -> Response[str]:
    return error_response(HTTPStatus.NOT_FOUND, str(exc))


@app.exception_handler(Conflict)  # type: ignore[untyped-decorator]
def _conflict(exc: Conflict) -> Response[str]:
    return error_response(HTTPStatus.CONFLICT, str(exc))


@app.get("/admin/contacts/<contact_id>")
def get_contact(contact_id: str) -> ContactView:
    return directory.view(contact_id)


@app.post("/admin/contacts/lookup")
def lookup_contact(query: ContactLookup) -> ContactRef:
    return directory.lookup(query)


@app.post("/admin/contacts/<contact_id>/do-not-contact")
def do_not_contact(contact_id: str, body: DoNotContactIn) -> DoNotContactResult:
    return directory.do_not_contact(contact_id, body, actor=_actor())


@app.post("/admin/journeys/<journey_id>/enrollments")
def enroll(journey_id: str, body: EnrollmentIn) -> Response[str]:
    accepted: EnrollmentAccepted = directory.enroll(journey_id, body, manual_journeys=manual_journeys())
    return json_response(HTTPStatus.ACCEPTED, accepted)


@app.post("/admin/events")
def post_server_events() -> Response[str]:
    """One server event (the body of ``POST /events``) or ``{"events": [...]}`` (up to 500):
    202 with the event's result, or one result per event of a batch."""
    try:
        body = json.loads(app.current_event.decoded_body or "")
    except json.JSONDecodeError:
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid request", [{"field": "body", "message": "is not valid JSON"}]
        )
    try:
        _, result = server_events.record_body(body)
    except ValidationError as exc:
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid request", validation_fields(list(exc.errors()))
        )
    except InvalidInput as exc:
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid request", [{"field": exc.field, "message": exc.message}]
        )
    return json_response(HTTPStatus.ACCEPTED, result)


def _actor() -> str:
    identity = app.current_event.request_context.authorizer.iam
    return (identity.user_arn if identity else None) or "unknown"


@app.get("/admin/contacts/<contact_id>/export")
def export_contact(contact_id: str) -> ContactExport:
    return privacy.export(contact_id)


@app.post("/admin/contacts/<contact_id>/erase")
def erase_contact(contact_id: str, body: ErasureRequest) -> ErasureResult:
    return privacy.erase(contact_id, body, actor=_actor())


@app.get("/admin/erasures/<contact_id>")
def erasure_record(contact_id: str) -> dict[str, object]:
    return privacy.erasure_record(contact_id)


app.include_router(reports_router)
for build_router in (contacts_api.build_router, segments_api.build_router, sales_api.build_router):
    # DynamoDB is the client built above; the bulk queue's (segment evaluations, broadcasts) is
    # built at its first use
    app.include_router(build_router(settings, wiring.lazy_client))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    limit = {"/admin/contacts/import": contacts_api.MAX_IMPORT_BYTES, "/admin/events": MAX_EVENTS_BYTES}.get(
        str(event.get("rawPath"))
    )
    refusal = refuse_unreadable(event, limit) if limit else refuse_unreadable(event)
    return refusal or app.resolve(event, context)
