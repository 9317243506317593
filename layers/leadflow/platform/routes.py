"""The HTTP API's routes (API Gateway HTTP API route keys) and the function serving each.

Public routes (pixels, clicks, events, forms, unsubscribe, opt-in confirmation) are served by ``track`` without
credentials; admin routes are served by ``admin`` and require IAM authorization (SigV4) in AWS and
the local dev credential in the local runtime. One list for the CDK app (routes it creates) and
the local runtime (routes it serves)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str = "track"
    auth: Literal["none", "iam"] = "none"

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if ``method path`` is this route (API Gateway semantics: one segment each)."""
        if method != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return dict(found.groupdict()) if found else None


PUBLIC_ROUTES: tuple[Route, ...] = (
    Route("GET", "/t/o/{token}"),  # email open pixel; clients request /t/o/<token>.gif
    Route("GET", "/t/c/{token}"),  # email click redirect
    Route("GET", "/t/p.gif"),  # website page-view pixel
    Route("GET", "/t/lf.js"),  # website snippet
    Route("GET", "/t/stamp"),  # the signed render stamp the snippet adds to forms (minimum fill time)
    Route("POST", "/events"),  # browser events only
    Route("POST", "/events/signed"),  # server events signed with a per-source key (HMAC, 5-minute window)
    Route("POST", "/forms/{form_id}"),
    Route("GET", "/unsubscribe/{token}"),
    Route("POST", "/unsubscribe/{token}"),
    Route("GET", "/confirm/{token}"),  # double opt-in confirmation link
)


ADMIN_ROUTES: tuple[Route, ...] = (
    Route("GET", "/admin/contacts/{contact_id}", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/lookup", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/{contact_id}/do-not-contact", function="admin", auth="iam"),
    Route("POST", "/admin/journeys/{journey_id}/enrollments", function="admin", auth="iam"),
    Route("POST", "/admin/events", function="admin", auth="iam"),  # server events (one or a batch)
    Route("GET", "/admin/contacts/{contact_id}/export", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/{contact_id}/erase", function="admin", auth="iam"),
    Route("GET", "/admin/erasures/{contact_id}", function="admin", auth="iam"),
    Route("GET", "/admin/reports/journeys/{journey_id}", function="admin", auth="iam"),
    Route("GET", "/admin/reports/messages/{template}", function="admin", auth="iam"),
    Route("GET", "/admin/reports/attribution", function="admin", auth="iam"),
    # contacts: upsert, list/search, timeline, tags, merge, bulk import, attribute schema
    Route("POST", "/admin/contacts", function="admin", auth="iam"),
    Route("GET", "/admin/contacts", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/import", function="admin", auth="iam"),
    Route("GET", "/admin/contacts/{contact_id}/timeline", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/{contact_id}/tags", function="admin", auth="iam"),
    Route("POST", "/admin/contacts/{contact_id}/merge", function="admin", auth="iam"),
    Route("GET", "/admin/attributes", function="admin", auth="iam"),
    # sales feedback closes the hand-off loop
    Route("POST", "/admin/contacts/{contact_id}/sales-feedback", function="admin", auth="iam"),
    # segments and broadcasts
    Route("GET", "/admin/segments", function="admin", auth="iam"),
    Route("GET", "/admin/segments/{segment_id}", function="admin", auth="iam"),
    Route("PUT", "/admin/segments/{segment_id}", function="admin", auth="iam"),
    Route("DELETE", "/admin/segments/{segment_id}", function="admin", auth="iam"),
    Route("POST", "/admin/segments/{segment_id}/evaluate", function="admin", auth="iam"),
    Route("GET", "/admin/segments/{segment_id}/members", function="admin", auth="iam"),
    Route("POST", "/admin/broadcasts", function="admin", auth="iam"),
    Route("GET", "/admin/broadcasts/{broadcast_id}", function="admin", auth="iam"),
)

ALL_ROUTES = PUBLIC_ROUTES + ADMIN_ROUTES


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ALL_ROUTES:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None
