"""Broadcasts: one message to a segment's members, sent in resumable bulk pages (service) and
scheduled or started through the admin API (api)."""
