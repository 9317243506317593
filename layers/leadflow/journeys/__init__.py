"""Journeys: the language marketers write (``model``) and its compiler to Step Functions (``compiler``)."""

from leadflow.journeys.compiler import compile_journey
from leadflow.journeys.model import Entry, Journey, JourneyError, load_journey, load_journeys, parse_journey

__all__ = [
    "Entry",
    "Journey",
    "JourneyError",
    "compile_journey",
    "load_journey",
    "load_journeys",
    "parse_journey",
]
