"""Turning a rendered template into a sendable email: for marketing, tracked links, open pixel and
one-click unsubscribe headers (RFC 8058); for transactional and confirmation emails, the links as
written and no tracking. The MIME message is built by the stdlib ``email`` package, which refuses
CR/LF in headers — no header injection through any contact field."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Container
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from pydantic import BaseModel

from leadflow.kernel import clock
from leadflow.messaging.context import template_context
from leadflow.messaging.render import RenderedEmail
from leadflow.platform.tokens import TokenClaims, TokenSigner

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BARE_URL = re.compile(r"""https?://[^\s<>"')\]]+""")
_TRAILING = ".,;:!?"


__all__ = [
    "InvalidRecipient",
    "OutgoingEmail",
    "SignedLinks",
    "compose_email",
    "compose_marketing_email",
    "rewrite_links",
    "template_context",
]


class InvalidRecipient(ValueError):
    """The recipient address cannot be put in a header safely."""


class OutgoingEmail(BaseModel):
    subject: str
    raw: bytes
    headers: dict[str, str]


class SignedLinks:
    """The signed tracking URLs of one message to one contact."""

    def __init__(self, signer: TokenSigner, base_url: str, message_id: str, contact_id: str) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")
        self._message_id = message_id
        self._contact_id = contact_id

    def _token(self, kind: str, url: str | None = None) -> str:
        claims = {"k": kind, "m": self._message_id, "c": self._contact_id}
        if url is not None:
            claims["u"] = url
        return self._signer.sign(TokenClaims.model_validate(claims))

    def click(self, url: str) -> str:
        return f"{self._base}/t/c/{self._token('click', url)}"

    @property
    def open_pixel_url(self) -> str:
        return f"{self._base}/t/o/{self._token('open')}.gif"

    @property
    def unsubscribe_url(self) -> str:
        return f"{self._base}/unsubscribe/{self._token('unsubscribe')}"

    @property
    def confirm_url(self) -> str:
        """The double opt-in confirmation link (``GET /confirm/{token}``)."""
        return f"{self._base}/confirm/{self._token('confirm')}"


def rewrite_links(
    html: str, text: str, click_url: Callable[[str], str], skip: Container[str]
) -> tuple[str, str]:
    """Replace every http(s) link of both parts with its tracked form, except those in ``skip``."""

    def html_sub(match: re.Match[str]) -> str:
        prefix, quote, raw = match.group(1), match.group(2), match.group(3)
        url = htmllib.unescape(raw).strip()
        if not url.lower().startswith(("http://", "https://")) or url in skip:
            return match.group(0)
        return f"{prefix}{quote}{htmllib.escape(click_url(url), quote=True)}{quote}"

    def text_sub(match: re.Match[str]) -> str:
        url = match.group(0)
        trailing = ""
        while url and url[-1] in _TRAILING:
            trailing = url[-1] + trailing
            url = url[:-1]
        if url in skip:
            return match.group(0)
        return click_url(url) + trailing

    return _HREF.sub(html_sub, html), _BARE_URL.sub(text_sub, text)


def _safe_address(recipient: str) -> Address:
    if any(ch in recipient for ch in '\r\n,;<>"') or recipient.count("@") != 1:
        raise InvalidRecipient("the recipient must be exactly one plain email address")
    local, domain = recipient.rsplit("@", 1)
    try:
        return Address(username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise InvalidRecipient(str(exc)) from exc


def compose_marketing_email(
    *,
    rendered: RenderedEmail,
    links: SignedLinks,
    sender: str,
    recipient: str,
    unsubscribe_mailto: str,
    configuration_set: str,
    message_id: str,
) -> OutgoingEmail:
    """A marketing email: tracked links, open pixel, List-Unsubscribe and one-click unsubscribe."""
    return compose_email(
        rendered=rendered,
        links=links,
        sender=sender,
        recipient=recipient,
        unsubscribe_mailto=unsubscribe_mailto,
        configuration_set=configuration_set,
        message_id=message_id,
        tracked=True,
    )


def compose_email(
    *,
    rendered: RenderedEmail,
    links: SignedLinks,
    sender: str,
    recipient: str,
    unsubscribe_mailto: str,
    configuration_set: str,
    message_id: str,
    tracked: bool,
) -> OutgoingEmail:
    """``tracked``: marketing (click tracking, open pixel, unsubscribe headers). Untracked emails
    (transactional, confirmation) keep their links as written and carry no pixel."""
    html, text = rendered.html, rendered.text
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = _safe_address(recipient)
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate(clock.now(), usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=message_id[:16], domain=sender.rsplit("@", 1)[-1].rstrip(">"))
    if tracked:
        unsubscribe_url = links.unsubscribe_url
        html, text = rewrite_links(html, text, links.click, skip={unsubscribe_url})
        pixel = (
            f'<img src="{htmllib.escape(links.open_pixel_url)}" width="1" height="1" alt="" '
            'style="display:none">'
        )
        html = (
            re.sub(r"</body>", pixel + "</body>", html, count=1, flags=re.IGNORECASE)
            if "</body>" in html.lower()
            else html + pixel
        )
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <mailto:{unsubscribe_mailto}?subject=unsubscribe>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-SES-CONFIGURATION-SET"] = configuration_set
    msg["X-Leadflow-Message-Id"] = message_id
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    headers = {name: str(value) for name, value in msg.items()}
    return OutgoingEmail(subject=rendered.subject, raw=msg.as_bytes(), headers=headers)
