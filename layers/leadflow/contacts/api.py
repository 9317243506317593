"""Admin routes of contacts: upsert by email, reads (one contact, lookup, list/search, timeline),
tags, do-not-contact, manual journey enrollment, bulk import, merge and the attribute schema.
Routes only: parse, one call into the contacts services they are given
(``leadflow.wiring.admin_app`` builds them), answer. Domain errors are answered by the app's one
mapping (``leadflow.platform.http.map_errors``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Set
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.contacts.directory import (
    ContactDirectory,
    ContactLookup,
    ContactRef,
    ContactView,
    DoNotContactIn,
    DoNotContactResult,
    EnrollmentIn,
)
from leadflow.contacts.importing import ContactImporter, ImportReport
from leadflow.contacts.merge import ContactMerger, MergeIn, MergeResult
from leadflow.contacts.model import BUILT_IN_SCHEMA, parse_contact
from leadflow.contacts.service import ContactPage, TagsIn, TagsResult, Timeline
from leadflow.kernel.errors import InvalidInput
from leadflow.platform.http import iam_actor, json_response

MAX_IMPORT_BYTES = 5 * 1024 * 1024
"""Largest body of POST /admin/contacts/import (a Lambda request may be 6 MB)."""
MAX_PAGE = 500


def router(
    service: ContactMerger,
    importer: ContactImporter,
    directory: ContactDirectory,
    manual_journeys: Callable[[], Set[str]],
) -> APIGatewayHttpRouter:
    """The routes over the given services (``service``: the contacts service with merging;
    ``manual_journeys``: the journeys a contact may be enrolled in by hand, read at the first
    enrollment)."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    def _json_body() -> Any:
        try:
            return json.loads(router.current_event.decoded_body or "null")
        except json.JSONDecodeError as exc:
            raise InvalidInput("body", "is not valid JSON") from exc

    @router.get("/admin/contacts/<contact_id>")
    def get_contact(contact_id: str) -> ContactView:
        return directory.view(contact_id)

    @router.post("/admin/contacts/lookup")
    def lookup_contact(query: ContactLookup) -> ContactRef:
        return directory.lookup(query)

    @router.post("/admin/contacts/<contact_id>/do-not-contact")
    def do_not_contact(contact_id: str, body: DoNotContactIn) -> DoNotContactResult:
        return directory.do_not_contact(contact_id, body, actor=iam_actor(router.current_event))

    @router.post("/admin/journeys/<journey_id>/enrollments")
    def enroll(journey_id: str, body: EnrollmentIn) -> Response[str]:
        accepted = directory.enroll(journey_id, body, manual_journeys=set(manual_journeys()))
        return json_response(HTTPStatus.ACCEPTED, accepted)

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
        return service.merge(contact_id, body)

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
