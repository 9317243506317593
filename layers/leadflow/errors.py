"""Typed domain errors. The track API maps them to HTTP once (resolver exception handlers)."""

from __future__ import annotations


class LeadflowError(Exception):
    """Base class of domain errors."""


class InvalidInput(LeadflowError):
    """Input failed validation; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LeadflowError):
    """A referenced thing (form, contact, token target) does not exist."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class SendThrottled(LeadflowError):
    """The provider throttled the send; the state machine retries with back-off (error name matters)."""


class Conflict(LeadflowError):
    """The request conflicts with the current state (e.g. redefining a file segment); HTTP 409."""
