"""Signed, URL-safe tokens for open, click, unsubscribe and double opt-in confirmation links.

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
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TokenKind = Literal["open", "click", "unsubscribe", "confirm"]
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


MIN_KEY_BYTES = 32
MAX_KEYS = 8


class KeyRing(BaseModel):
    """The signing key secret's value: the key that signs, and older keys that still verify.

    Rotation puts a new ``current`` key in front and keeps the previous ones (at most ``MAX_KEYS`` in
    all), so links in emails sent before a rotation keep working — unsubscribe links above all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    current: str = Field(min_length=MIN_KEY_BYTES)
    previous: list[str] = Field(default_factory=list, max_length=MAX_KEYS - 1)

    @classmethod
    def parse(cls, secret_value: str | bytes) -> KeyRing:
        try:
            return cls.model_validate_json(secret_value)
        except ValidationError as exc:
            raise ValueError(
                'the signing key secret must be JSON {"current": "<key>", "previous": [...]} '
                f"with keys of at least {MIN_KEY_BYTES} characters"
            ) from exc

    @property
    def keys(self) -> list[bytes]:
        return [key.encode() for key in (self.current, *self.previous)]

    def rotated(self, new_key: str) -> KeyRing:
        return KeyRing(current=new_key, previous=[self.current, *self.previous][: MAX_KEYS - 1])


class TokenSigner:
    """Signs with the first key of ``keys_source()`` and verifies with any of them.

    ``keys_source(refresh)`` returns the key ring (cached by the caller); a token no cached key
    verifies makes the signer ask once more with ``refresh=True`` — a key rotated in since the
    cache was filled verifies too — and the source decides how often it really refetches."""

    def __init__(self, keys_source: Callable[[bool], Sequence[bytes]]) -> None:
        self._keys_source = keys_source

    @staticmethod
    def _mac(key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, claims: TokenClaims) -> str:
        payload = json.dumps(
            claims.model_dump(by_alias=True, exclude_none=True), separators=(",", ":"), sort_keys=True
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(self._keys_source(False)[0], payload))}"

    def _signed_by_a_key(self, payload: bytes, given: bytes) -> bool:
        for refresh in (False, True):
            if any(hmac.compare_digest(given, self._mac(k, payload)) for k in self._keys_source(refresh)):
                return True
        return False

    def verify(self, token: str, kind: TokenKind) -> TokenClaims:
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidToken("malformed token")
        body, mac = token.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        if not self._signed_by_a_key(payload, given):
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

    def sign_text(self, text: str) -> str:
        """The MAC (base64url) of a short text with the current key: e.g. a form's render stamp."""
        return _b64(self._mac(self._keys_source(False)[0], text.encode()))

    def verify_text(self, text: str, mac: str) -> bool:
        """Whether ``mac`` is ``text``'s MAC under any key of the ring (rotated keys still verify)."""
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return False
        return len(given) == _MAC_BYTES and self._signed_by_a_key(text.encode(), given)
