"""Contacts: normalization, the contacts API (upsert, search, timeline, tags, import), identity merge."""
