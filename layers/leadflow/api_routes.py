"""The public HTTP API's routes (API Gateway HTTP API route keys), all served by ``track``.

One list for the CDK app (routes it creates) and the local runtime (routes it serves)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str

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
    Route("POST", "/events"),
    Route("POST", "/forms/{form_id}"),
    Route("GET", "/unsubscribe/{token}"),
    Route("POST", "/unsubscribe/{token}"),
)


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in PUBLIC_ROUTES:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None
