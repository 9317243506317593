"""The SES message tag that carries leadflow's message id from a send (``leadflow.messaging.sending``) into
SES event publishing (``leadflow.messaging.provider_feedback``): its own module, so the feedback function does not
load the send path (templates, Jinja2, the lead model) at cold start to read one name."""

from __future__ import annotations

MESSAGE_TAG = "leadflow_message_id"
"""The SES message tag that carries our message id into SES event publishing (feedback)."""
