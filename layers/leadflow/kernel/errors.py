"""Typed domain errors. The track API maps them to HTTP once (resolver exception handlers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class LeadflowError(Exception):
    """Base class of domain errors."""


class InvalidInput(LeadflowError):
    """Input failed validation; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidFields(InvalidInput):
    """Every problem of a request body, by field (``[{"field": ..., "message": ...}]``); ``summary``
    heads the answer (``leadflow.platform.http.map_errors``)."""

    summary = "invalid request"

    def __init__(self, fields: list[dict[str, str]]) -> None:
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        super().__init__(first["field"], first["message"])
        self.fields = fields


class NotFound(LeadflowError):
    """A referenced thing (form, contact, token target) does not exist."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class SendThrottled(LeadflowError):
    """The provider throttled the send; the state machine retries with back-off (error name matters)."""


class Conflict(LeadflowError):
    """The request conflicts with the current state (e.g. redefining a file segment); HTTP 409."""


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one line a person reads: ``field.path: problem; ...`` (a union's tag,
    repeated in the location, is shown once)."""
    lines = []
    for err in exc.errors():
        parts: list[str | int] = []
        for part in err["loc"]:
            if not parts or part != parts[-1]:
                parts.append(part)
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{loc}: {message}" if loc else message)
    return "; ".join(dict.fromkeys(lines))
