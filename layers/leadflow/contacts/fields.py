"""The contact profile's field names, by who owns them: the lists the contact, lead and journey
models and the template context take their names from (so a new internal field is added once).

- ``PROFILE_FIELDS``: the built-in personal fields an upsert (admin API, import) may set, besides
  email, consent, tags and custom attributes;
- ``BUILT_IN_FIELDS``: every field leadflow defines for a contact (the schema ``GET
  /admin/attributes`` describes); a custom attribute may not reuse these names;
- ``INTERNAL_FIELDS``: bookkeeping on the profile item (keys, consent and suppression state, the
  lead engine's state, identity links, erasure): never in a template's context, never set by a
  journey.

Any other field of a profile item is a custom attribute (declared in ``leads.yaml`` or set by a
journey's ``update_contact``). Imports nothing: the journey language, the template context and the
lead model all read these names."""

from __future__ import annotations

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "salutation",
    "gender",
    "locale",
    "timezone",
    "country",
    "company",
    "job_title",
)
"""Built-in personal fields an upsert may set (besides email, consent, tags and attributes)."""

BUILT_IN_FIELDS = frozenset(
    {
        "contact_id",
        "email",
        *PROFILE_FIELDS,
        "consent_email",
        "consent_sms",
        "score",
        "fit_score",
        "stage",
        "tags",
        "segments",
        "owner",
        "created_at",
        "updated_at",
    }
)
"""Profile fields leadflow defines; a custom attribute may not reuse these names."""

INTERNAL_FIELDS = frozenset(
    {
        "pk",
        "sk",
        # consent and suppression bookkeeping
        "consent_source",
        "consent_updated_at",
        "unsubscribed_at",
        "suppressed",
        "do_not_contact",
        # lead state: the lead engine, routing and sales feedback write these (with their events)
        "score_value",
        "score_at",
        "score_event_id",
        "stage_at",
        "stage_hold_until",
        "lead_version",
        "rule_points",
        "activity",
        # identity and lifecycle of the item
        "visitor_ids",
        "merged_ids",
        "merged_into",
        "expires_at",
        "erased_at",
    }
)
"""Fields of the profile item that are leadflow's bookkeeping, not the contact's data."""
