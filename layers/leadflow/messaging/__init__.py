"""Messaging: composing a message (sandboxed rendering, tracked links, compliant headers, SMS
segments, versioned templates), sending it through SES or SNS with consent, suppression and caps
(``sending``), the messages table (``store``), the send contract (``model``) and what the providers
report back (``provider_feedback``: bounces, complaints, deliveries, inbound SMS).

The package imports nothing itself: ``feedback`` reads one tag name (``tags``) without loading the
send path (Jinja2, templates)."""
