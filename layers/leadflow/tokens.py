"""Signed, URL-safe tokens for open, click and unsubscribe links.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload)[:16])``. The payload holds
opaque ids only (message id, contact id) and, for clicks, the destination URL sealed by the
signature: a redirect target is never taken from anything unsigned. No PII travels in a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TokenKind = Literal["open", "click", "unsubscribe"]
_MAC_BYTES = 16
MAX_TOKEN_LENGTH = 4096


class InvalidToken(Exception):
    """The token is malformed, tampered with or signed with another key."""


class TokenClaims(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TokenKind = Field(alias="k")
    message_id: str = Field(alias="m", min_length=1, max_length=64)
    contact_id: str = Field(alias="c", min_length=1, max_length=64)
    url: str | None = Field(default=None, alias="u", max_length=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies tokens. ``key_source`` returns the current key (cached by the caller)."""

    def __init__(self, key_source: Callable[[], bytes]) -> None:
        self._key_source = key_source

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key_source(), payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, claims: TokenClaims) -> str:
        payload = json.dumps(
            claims.model_dump(by_alias=True, exclude_none=True), separators=(",", ":"), sort_keys=True
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, kind: TokenKind) -> TokenClaims:
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidToken("malformed token")
        body, mac = token.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        if not hmac.compare_digest(given, self._mac(payload)):
            raise InvalidToken("bad signature")
        try:
            claims = TokenClaims.model_validate_json(payload)
        except ValidationError as exc:
            raise InvalidToken("malformed claims") from exc
        if claims.kind != kind:
            raise InvalidToken("token of another kind")
        if kind == "click" and not (claims.url or "").startswith(("https://", "http://")):
            raise InvalidToken("click token without an http(s) destination")
        return claims
