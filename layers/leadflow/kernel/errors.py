"""Typed domain errors. The track API maps them to HTTP once (resolver exception handlers). Also
the validation helpers every context's models share (``require_any``, ``describe_validation``) and
the one formatter of validation errors every API answers with (``validation_fields``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

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


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}|\d{1,6}")


def validation_message(err: Any) -> str:
    """A pydantic error's message without pydantic's ``Value error, `` prefix."""
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


def validation_fields(errors: Iterable[Any]) -> list[dict[str, str]]:
    """Pydantic/Powertools validation errors as ``[{"field": "a.b", "message": ...}]``: the one
    shape of the admin API, forms, ``POST /events`` and imports.

    The message is the validator's own (no ``Value error, `` prefix); a model-level check names its
    field first (``consent_source: ...``); a key the model does not take is an "unknown field". A
    location part that is not a field name (an unexpected key is whatever the client sent, e.g. a
    whole JSON document posted as a form) is shown as ``?``: an answer never echoes posted data."""
    out = []
    for err in errors:
        loc = [
            part if _FIELD_NAME.fullmatch(part) else "?"
            for part in (str(p) for p in err.get("loc", ()) if p not in ("body",))
        ]
        field = ".".join(loc)
        message = validation_message(err)
        if not field and ": " in message:  # model-level checks name their field first
            field, _, message = message.partition(": ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field or "body", "message": message})
    return out


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
        message = validation_message(err)
        lines.append(f"{loc}: {message}" if loc else message)
    return "; ".join(dict.fromkeys(lines))


_Model = TypeVar("_Model")


def require_any(model: _Model, *fields: str, message: str) -> _Model:
    """``model`` when at least one of ``fields`` is set (not None), else ``ValueError(message)``:
    the body of a pydantic ``model_validator(mode="after")``."""
    if all(getattr(model, name) is None for name in fields):
        raise ValueError(message)
    return model
