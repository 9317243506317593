"""Message composition: sandboxed rendering, tracked links, compliant headers, SMS segments."""

from leadflow.messaging.compose import (
    InvalidRecipient,
    OutgoingEmail,
    SignedLinks,
    compose_email,
    compose_marketing_email,
    rewrite_links,
    template_context,
)
from leadflow.messaging.context import CONTACT_FIELDS, ENTRY_FIELDS, Fields
from leadflow.messaging.render import EmailRenderer, RenderedEmail, TemplateRenderError
from leadflow.messaging.sms import OPT_OUT_HINT, SmsText, compose_sms, measure
from leadflow.messaging.template_versions import TemplateArchive, bundle_of, version_of

__all__ = [
    "CONTACT_FIELDS",
    "ENTRY_FIELDS",
    "OPT_OUT_HINT",
    "EmailRenderer",
    "Fields",
    "InvalidRecipient",
    "OutgoingEmail",
    "RenderedEmail",
    "SignedLinks",
    "SmsText",
    "TemplateArchive",
    "TemplateRenderError",
    "bundle_of",
    "compose_email",
    "compose_marketing_email",
    "compose_sms",
    "measure",
    "rewrite_links",
    "template_context",
    "version_of",
]
