"""Journeys: the language marketers write (``model``) and its compiler to Step Functions (``compiler``).

The names below are loaded on first access (PEP 562): a function that needs only
``leadflow.journeys.conditions`` (the lead engine) does not pay for the journey model and the
compiler at cold start."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadflow.journeys.compiler import compile_journey
    from leadflow.journeys.model import (
        Entry,
        Journey,
        JourneyError,
        load_journey,
        load_journeys,
        parse_journey,
    )

_HOMES = {
    "compile_journey": "leadflow.journeys.compiler",
    "Entry": "leadflow.journeys.model",
    "Journey": "leadflow.journeys.model",
    "JourneyError": "leadflow.journeys.model",
    "load_journey": "leadflow.journeys.model",
    "load_journeys": "leadflow.journeys.model",
    "parse_journey": "leadflow.journeys.model",
}

__all__ = [
    "Entry",
    "Journey",
    "JourneyError",
    "compile_journey",
    "load_journey",
    "load_journeys",
    "parse_journey",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
