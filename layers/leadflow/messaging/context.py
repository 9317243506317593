"""What a template sees: the template context, and the names it may use (``TEMPLATE_NAMES``).

The context (documented with examples in ``journeys/README.md``)::

    contact.first_name, .last_name, .email, .salutation (title), .gender, .locale, .timezone,
    contact.company, .job_title, .country, .owner (the sales owner's address)
    contact.score (the behaviour score now, decayed, rounded), .stage, .tags (a list)
    contact.attributes.<name>       custom attributes (leads.yaml ``attributes``, or set by a journey)
    entry.type, entry.occurred_at   the event that entered the contact into the journey
    entry.properties.<name>         its properties (webinar title, join link, plan...)
    salutation                      the greeting line for the contact's locale ("Dear Ms Lovelace")
    unsubscribe_url                 the one-click unsubscribe link (marketing emails)
    confirm_url                     the double opt-in link (confirmation emails only)
    subject_line, preheader         the rendered subject and preheader (bodies and the layout)

Invariants:

- a value that may exist but is not known for this contact (no company, an event without that
  property) is *missing*: it renders as an empty string, is false in ``{% if %}``, and
  ``| default("…")`` replaces it (``| default("…", true)`` also replaces an empty string);
- a name that cannot exist (``contact.compnay``, ``{{ webinar }}``) is an error: ``leadflow
  journeys validate`` and ``make run`` refuse it before any send (``journeys.checks``), and at run
  time rendering fails loudly rather than send a half-rendered message;
- internal profile fields (consent bookkeeping, lead engine state, keys) are never in the context.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from jinja2 import ChainableUndefined

from leadflow.contacts.fields import BUILT_IN_FIELDS, INTERNAL_FIELDS

CONTACT_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "salutation",
        "gender",
        "locale",
        "timezone",
        "company",
        "job_title",
        "country",
        "owner",
        "score",
        "stage",
        "tags",
        "attributes",
    }
)
"""The names under ``contact``."""
ENTRY_FIELDS = frozenset({"type", "occurred_at", "properties"})
"""The names under ``entry``."""
TOP_LEVEL = frozenset({"contact", "entry", "salutation", "unsubscribe_url", "subject_line", "preheader"})
"""Top-level names every message template may use (``confirm_url``: confirmation emails only)."""
CONFIRMATION_ONLY = frozenset({"confirm_url"})

_NOT_ATTRIBUTES = BUILT_IN_FIELDS | INTERNAL_FIELDS | CONTACT_FIELDS


class Fields(dict[str, Any]):
    """A mapping of values a template reads by name. A name in ``known`` (every name when
    ``known`` is None) that has no value is missing (renders empty, ``default`` replaces it); any
    other name is undefined, which the strict environment turns into an error."""

    def __init__(self, values: Mapping[str, Any], known: Collection[str] | None) -> None:
        super().__init__({k: v for k, v in values.items() if v is not None and v != ""})
        self._known = known

    def __missing__(self, key: str) -> Any:
        if self._known is None or key in self._known:
            return ChainableUndefined(name=key)
        raise KeyError(key)


def _plain(value: Any) -> Any:
    """DynamoDB values as a template shows them: whole numbers without ``.0``, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def custom_attributes(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's custom attributes: every field that is not a built-in or internal one."""
    return {
        k: _plain(v)
        for k, v in profile.items()
        if k not in _NOT_ATTRIBUTES and not k.startswith(("consent_", "_"))
    }


def template_context(
    contact: Mapping[str, Any],
    unsubscribe_url: str,
    *,
    confirm_url: str | None = None,
    score: int | None = None,
    entry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The context of one message. ``contact``: the stored profile; ``score``: the behaviour
    score now (decayed, rounded; the stored ``score`` when not given); ``entry``: the event that
    entered the contact (absent: ``entry`` has no type and no properties)."""
    from leadflow.messaging.salutation import salutation

    values = {name: _plain(contact.get(name)) for name in CONTACT_FIELDS - {"attributes", "tags"}}
    values["score"] = score if score is not None else _plain(contact.get("score"))
    values["tags"] = sorted(str(t) for t in contact.get("tags") or [])
    values["attributes"] = Fields(custom_attributes(contact), known=None)
    event = entry or {}
    occurred = event.get("occurred_at")
    context: dict[str, Any] = {
        "contact": Fields(values, CONTACT_FIELDS),
        "entry": Fields(
            {
                "type": event.get("type"),
                "occurred_at": occurred.isoformat() if isinstance(occurred, datetime) else occurred,
                "properties": Fields(_plain(dict(event.get("properties") or {})), known=None),
            },
            ENTRY_FIELDS,
        ),
        "salutation": salutation(contact),
        "unsubscribe_url": unsubscribe_url,
    }
    if confirm_url is not None:
        context["confirm_url"] = confirm_url
    return context
