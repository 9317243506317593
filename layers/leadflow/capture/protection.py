"""What keeps the public surface from being abused: the sign-up forms' honeypot, signed render
stamp (minimum fill time), optional CAPTCHA and the count of every refusal. The per-source and
per-recipient-domain budgets are counters of ``capture/store.py`` (hashed keys, expiring items).

Invariants:
- A refused sign-up leaves nothing behind: the budget counters (``capture/store.SignupBudgets``)
  are conditional updates inside the sign-up's own transaction, so a post over budget writes no
  contact, consent, event or email, and a post that fails for another reason spends no budget.
- A bot's post (honeypot filled, sent faster than a person can fill the form) gets the answer a
  person's post gets and stores nothing: the bot learns nothing to adapt to.
- Every refusal is counted (CloudWatch metric ``PublicRefusals`` by ``reason``; locally
  ``refusals``, shown by the dashboard) and logged by reason and route only, never with the
  address, the IP or a field value."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from leadflow.kernel.observability import count_by, logger
from leadflow.kernel.settings import CaptchaConfig, FormConfig
from leadflow.platform.tokens import TokenSigner

HONEYPOT_FIELD = "website_url"
"""A text input the form hides from people (off-screen, ``tabindex=-1``, ``autocomplete=off``)."""
STAMP_FIELD = "lf_stamp"
"""The signed render stamp the snippet adds to every leadflow form (``<epoch seconds>.<mac>``)."""
STAMP_MAX_AGE_SECONDS = 86_400
CAPTCHA_FIELDS = ("cf-turnstile-response", "h-captcha-response", "g-recaptcha-response", "captcha_response")
"""Where the providers' widgets put the response token (the last one for JSON clients)."""
SITEVERIFY_URLS: Mapping[str, str] = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}

RefusalReason = Literal[
    "honeypot",
    "too_fast",
    "form_expired",
    "rate_limited",
    "captcha_required",
    "captcha_failed",
    "server_event_type",
    "unknown_source",
    "stale_signature",
    "bad_signature",
    "replayed_signature",
]

refusals: Counter[str] = Counter()
"""Refusals of this process by reason: the local runtime's dashboard figures (AWS: the metric)."""


def count_refusal(reason: RefusalReason, route: str) -> None:
    """Count and log one refusal, without personal data."""
    refusals[reason] += 1
    count_by("PublicRefusals", "reason", reason)
    logger.info("public request refused", extra={"reason": reason, "route": route})


class SignupRefused(Exception):
    """A sign-up refused with a clear answer; nothing of it was stored."""

    def __init__(
        self,
        reason: RefusalReason,
        message: str,
        *,
        retry_after: int | None = None,
        captcha: CaptchaConfig | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.captcha = captcha


@dataclass(frozen=True)
class PostSignals:
    """What a form post says about who sent it, besides the sign-up fields."""

    honeypot: str = ""
    stamp: str | None = None
    captcha_response: str | None = None

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> PostSignals:
        def text(name: str) -> str | None:
            value = data.get(name)
            return value.strip()[:4096] if isinstance(value, str) and value.strip() else None

        captcha = next((value for name in CAPTCHA_FIELDS if (value := text(name))), None)
        return cls(honeypot=text(HONEYPOT_FIELD) or "", stamp=text(STAMP_FIELD), captcha_response=captcha)


# --- the signed render stamp -----------------------------------------------------------------------


def _stamp_text(at: int) -> str:
    return f"form-stamp:{at}"


def render_stamp(signer: TokenSigner, now: float) -> str:
    """``<epoch seconds>.<mac>``: when the page rendered the form, signed with the token key ring."""
    at = int(now)
    return f"{at}.{signer.sign_text(_stamp_text(at))}"


def stamp_age(signer: TokenSigner, stamp: str | None, now: float) -> float | None:
    """Seconds since a valid stamp was issued; None for a missing, forged or expired one."""
    if not stamp or stamp.count(".") != 1:
        return None
    at_text, mac = stamp.split(".")
    if not at_text.isdigit() or len(at_text) > 12:
        return None
    at = int(at_text)
    age = now - at
    if not -60 <= age <= STAMP_MAX_AGE_SECONDS or not signer.verify_text(_stamp_text(at), mac):
        return None
    return max(age, 0.0)


def forms_that_send_email(forms: Mapping[str, FormConfig], journeys: Iterable[Any]) -> frozenset[str]:
    """Forms whose sign-ups send email: double opt-in forms (the confirmation) and forms a journey
    with an email step enters on (``form_submitted`` with the form's properties)."""
    from leadflow.journeys.model import step_kind

    sending = [j for j in journeys if any(step_kind(s) == "send_email" for s in j.walk())]
    found = set()
    for form_id, form in forms.items():
        properties: dict[str, Any] = {"form_id": form_id, "consent": True}
        if form.double_opt_in:
            properties["double_opt_in"] = True
        if form.double_opt_in or any(j.entry.matches("form_submitted", properties) for j in sending):
            found.add(form_id)
    return frozenset(found)


# --- CAPTCHA ---------------------------------------------------------------------------------------


class CaptchaVerifier(Protocol):
    def verify(self, config: CaptchaConfig, response: str) -> bool:
        """Whether the provider confirms the widget's response token."""


class SiteverifyCaptcha:
    """Server-side verification: a plain HTTPS POST of ``secret`` and ``response`` to the provider's
    siteverify endpoint, which answers ``{"success": true|false, ...}``. The visitor's IP is not
    sent (optional in every provider's API). A provider that does not answer fails closed.

    ``endpoints`` is injectable so tests talk to a local fake provider, never the network."""

    def __init__(
        self,
        secret: Callable[[str], str],
        endpoints: Mapping[str, str] = SITEVERIFY_URLS,
        timeout: float = 5.0,
    ) -> None:
        for url in endpoints.values():
            if not url.startswith(("https://", "http://127.0.0.1:")):
                raise ValueError(f"siteverify endpoint {url!r}: https only (or a local test endpoint)")
        self._secret = secret
        self._endpoints = endpoints
        self._timeout = timeout

    def verify(self, config: CaptchaConfig, response: str) -> bool:
        if config.secret_id is None:
            raise ValueError("the form's captcha has no secret_id")
        body = urlencode({"secret": self._secret(config.secret_id), "response": response}).encode()
        request = urllib.request.Request(  # noqa: S310 (https endpoints, checked at construction)
            self._endpoints[config.provider],
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:  # noqa: S310
                answer = json.loads(reply.read(65536))
        except (urllib.error.URLError, TimeoutError, ValueError, OSError) as exc:
            logger.warning(
                "captcha provider did not answer",
                extra={"provider": config.provider, "error": type(exc).__name__},
            )
            return False
        logger.debug(
            "captcha verified",
            extra={"provider": config.provider, "ms": round((time.monotonic() - started) * 1000)},
        )
        return isinstance(answer, dict) and answer.get("success") is True
