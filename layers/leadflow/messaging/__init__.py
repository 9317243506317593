"""Email composition: sandboxed rendering, tracked links, compliant headers."""

from leadflow.messaging.compose import (
    InvalidRecipient,
    OutgoingEmail,
    SignedLinks,
    compose_marketing_email,
    rewrite_links,
    template_context,
)
from leadflow.messaging.render import EmailRenderer, RenderedEmail, TemplateRenderError

__all__ = [
    "EmailRenderer",
    "InvalidRecipient",
    "OutgoingEmail",
    "RenderedEmail",
    "SignedLinks",
    "TemplateRenderError",
    "compose_marketing_email",
    "rewrite_links",
    "template_context",
]
