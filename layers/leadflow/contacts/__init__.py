"""Contacts: the profile (model, normalization by email-validator and phonenumbers), its one store,
the contacts service and admin API (upsert, search, timeline, tags, import, do-not-contact), and
identity merge."""
