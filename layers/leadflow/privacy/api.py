"""Admin routes of privacy: a contact's data export, its erasure and the erasure's record.
Routes only, over the ``PrivacyService`` they are given (``leadflow.wiring.admin_app``)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.platform.http import iam_actor
from leadflow.privacy.service import ContactExport, ErasureRequest, ErasureResult, PrivacyService


def router(privacy: PrivacyService) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.get("/admin/contacts/<contact_id>/export")
    def export_contact(contact_id: str) -> ContactExport:
        return privacy.export(contact_id)

    @router.post("/admin/contacts/<contact_id>/erase")
    def erase_contact(contact_id: str, body: ErasureRequest) -> ErasureResult:
        return privacy.erase(contact_id, body, actor=iam_actor(router.current_event))

    @router.get("/admin/erasures/<contact_id>")
    def erasure_record(contact_id: str) -> dict[str, object]:
        return privacy.erasure_record(contact_id)

    return router
