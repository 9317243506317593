"""Admin routes of contacts: upsert by email, list/search, timeline, tags, bulk import, merge and
the attribute schema. Wiring only: parse, one call into the contacts services, answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.contacts.importing import ContactImporter, ImportReport
from leadflow.contacts.merge import ContactMerger, MergeIn, MergeResult
from leadflow.contacts.model import BUILT_IN_SCHEMA, ContactInvalid, parse_contact
from leadflow.contacts.service import ContactPage, ContactService, TagsIn, TagsResult, Timeline
from leadflow.contacts.store import ContactStore
from leadflow.events.store import EventStore
from leadflow.kernel.errors import InvalidInput
from leadflow.kernel.settings import Settings
from leadflow.leads.model import LeadModel, load_lead_model
from leadflow.platform.dynamo import Transaction
from leadflow.platform.http import error_response, json_response

MAX_IMPORT_BYTES = 5 * 1024 * 1024
"""Largest body of POST /admin/contacts/import (a Lambda request may be 6 MB)."""
MAX_PAGE = 500


def services(
    settings: Settings, ddb: Any, model: LeadModel | None = None
) -> tuple[ContactService, ContactMerger]:
    model = model or load_lead_model(settings.leads_file)
    contacts = ContactStore(ddb, settings.contacts_table)
    events = EventStore(ddb, settings.events_table, settings.event_retention_days)

    def transact(txn: Transaction) -> None:
        txn.commit(ddb)

    service = ContactService(
        client=ddb,
        contacts=contacts,
        events=events,
        events_table=settings.events_table,
        messages_table=settings.messages_table,
        model=model,
        transact=transact,
    )
    merger = ContactMerger(client=ddb, contacts=contacts, events=events, model=model, transact=transact)
    return service, merger


def build_router(settings: Settings, client: Callable[[str], Any]) -> APIGatewayHttpRouter:
    """The routes, wired from the settings and ``client(service)`` (boto3 clients)."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]
    service, merger = services(settings, client("dynamodb"))
    importer = ContactImporter(service)

    @router.exception_handler(ContactInvalid)  # type: ignore[untyped-decorator]
    def _invalid_contact(exc: ContactInvalid) -> Response[str]:
        return error_response(HTTPStatus.BAD_REQUEST, "invalid contact", exc.fields)

    @router.exception_handler(InvalidInput)  # type: ignore[untyped-decorator]
    def _invalid_input(exc: InvalidInput) -> Response[str]:
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid request", [{"field": exc.field, "message": exc.message}]
        )

    def _json_body() -> Any:
        try:
            return json.loads(router.current_event.decoded_body or "null")
        except json.JSONDecodeError as exc:
            raise InvalidInput("body", "is not valid JSON") from exc

    @router.post("/admin/contacts")
    def upsert_contact() -> Response[str]:
        contact = parse_contact(_json_body(), service.model.attributes)
        result = service.upsert(contact, source="admin")
        return json_response(HTTPStatus.CREATED if result.created else HTTPStatus.OK, result)

    @router.get("/admin/contacts")
    def list_contacts(
        q: Annotated[str | None, Query(max_length=254)] = None,
        stage: Annotated[str | None, Query(max_length=32)] = None,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        segment: Annotated[str | None, Query(max_length=64)] = None,
        country: Annotated[str | None, Query(max_length=2)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> ContactPage:
        return service.search(
            q=q, stage=stage, tag=tag, segment=segment, country=country, limit=limit, cursor=cursor
        )

    @router.post("/admin/contacts/import")
    def import_contacts() -> ImportReport:
        event = router.current_event
        content_type = event.headers.get("content-type") or ""
        return importer.run(event.decoded_body or "", content_type)

    @router.get("/admin/contacts/<contact_id>/timeline")
    def timeline(
        contact_id: str,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Timeline:
        return service.timeline(contact_id, limit=limit, cursor=cursor)

    @router.post("/admin/contacts/<contact_id>/tags")
    def tags(contact_id: str, body: TagsIn) -> TagsResult:
        return service.tags(contact_id, body)

    @router.post("/admin/contacts/<contact_id>/merge")
    def merge(contact_id: str, body: MergeIn) -> MergeResult:
        return merger.merge(contact_id, body)

    @router.get("/admin/attributes")
    def attributes() -> dict[str, Any]:
        return {
            "built_in": BUILT_IN_SCHEMA,
            "custom": {
                name: spec.model_dump(exclude_none=True)
                for name, spec in sorted(service.model.attributes.items())
            },
        }

    return router
