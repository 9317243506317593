"""Signed link tokens: what a recipient's mail client carries back to us."""

from __future__ import annotations

import base64
import json

import pytest

from leadflow.platform.tokens import InvalidToken, TokenClaims, TokenSigner

KEY = b"k" * 32


def signer(key: bytes = KEY) -> TokenSigner:
    return TokenSigner(lambda refresh: [key])


def click_claims(url: str = "https://example.com/pricing?x=1") -> TokenClaims:
    return TokenClaims.model_validate({"k": "click", "m": "msg1", "c": "c01abc", "u": url})


def test_round_trip_keeps_claims_and_is_url_safe() -> None:
    """Given click claims, when signed and verified, then the same claims come back from a URL-safe token."""
    token = signer().sign(click_claims())
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    claims = signer().verify(token, "click")
    assert claims == click_claims()
    assert claims.url == "https://example.com/pricing?x=1"


def test_tampered_payload_is_rejected() -> None:
    """Given a valid click token, when its sealed URL is swapped for another, verification fails."""
    token = signer().sign(click_claims())
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["u"] = "https://evil.example/phish"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        signer().verify(f"{forged}.{mac}", "click")


def test_other_key_and_other_kind_are_rejected() -> None:
    token = signer().sign(click_claims())
    with pytest.raises(InvalidToken):
        signer(b"x" * 32).verify(token, "click")
    with pytest.raises(InvalidToken, match="another kind"):
        signer().verify(token, "unsubscribe")


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "!!!.???", "a" * 5000, "eyJ9.AAAA", "%2e%2e%2f.x", "..", "\r\n.x"]
)
def test_garbage_is_rejected_not_crashing(token: str) -> None:
    with pytest.raises(InvalidToken):
        signer().verify(token, "open")


def test_click_token_needs_http_destination() -> None:
    """A correctly signed click token whose URL is not http(s) never becomes a redirect."""
    token = signer().sign(click_claims("javascript:alert(1)"))
    with pytest.raises(InvalidToken, match="http"):
        signer().verify(token, "click")


def test_token_carries_no_email_address() -> None:
    token = signer().sign(TokenClaims.model_validate({"k": "unsubscribe", "m": "m1", "c": "c01xyz"}))
    decoded = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()
    assert "@" not in decoded
