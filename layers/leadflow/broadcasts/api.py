"""Admin routes of broadcasts: start one (to a segment, paced and paged by the ``bulk`` worker)
and see how far it got. Routes only, over the ``BroadcastService`` they are given
(``leadflow.wiring.admin_app``)."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from leadflow.broadcasts.service import BroadcastAccepted, BroadcastIn, BroadcastService, BroadcastView
from leadflow.platform.http import accepted, json_response


def router(broadcasts: BroadcastService) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.post("/admin/broadcasts", responses=accepted(BroadcastAccepted, "Broadcast started"))
    def create_broadcast(body: BroadcastIn) -> Response[str]:
        return json_response(HTTPStatus.ACCEPTED, broadcasts.create(body))

    @router.get("/admin/broadcasts/<broadcast_id>")
    def get_broadcast(broadcast_id: str) -> BroadcastView:
        return broadcasts.view(broadcast_id)

    return router
