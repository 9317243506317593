"""SMS texts: encoding and segment counting (GSM-7 or UCS-2, as carriers bill them) and the opt-out
hint every marketing SMS carries."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from leadflow.messaging.render import TemplateRenderError

SmsEncoding = Literal["GSM-7", "UCS-2"]

OPT_OUT_HINT = "Reply STOP to opt out"
MAX_SEGMENTS = 10
"""Longer texts are a template error: carriers drop or garble long concatenations, and each segment
is billed."""

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = set("^{}\\[~]|€\f")
"""Characters of the GSM-7 extension table: an escape plus the character, two septets each."""
_LIMITS: dict[SmsEncoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}
"""(units in a single-part message, units per part of a concatenated one)."""
_OPT_OUT = re.compile(r"\b(STOP|STOPALL|UNSUBSCRIBE)\b", re.IGNORECASE)


class SmsText(BaseModel):
    text: str
    encoding: SmsEncoding
    segments: int
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2)."""


def is_gsm7(text: str) -> bool:
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)


def _units(text: str, encoding: SmsEncoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in _GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # astral characters are surrogate pairs


def measure(text: str) -> SmsText:
    """Encoding and segment count of ``text``. A character is never split across two segments
    (an escaped GSM-7 character or a UTF-16 surrogate pair), as handsets require."""
    encoding: SmsEncoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    units = _units(text, encoding)
    single, per_part = _LIMITS[encoding]
    total = sum(units)
    if total <= single:
        return SmsText(text=text, encoding=encoding, segments=1, units=total)
    segments, used = 1, 0
    for unit in units:
        if used + unit > per_part:
            segments, used = segments + 1, 0
        used += unit
    return SmsText(text=text, encoding=encoding, segments=segments, units=total)


def has_opt_out_hint(text: str) -> bool:
    return _OPT_OUT.search(text) is not None


def compose_sms(text: str, *, marketing: bool) -> SmsText:
    """The text to send: marketing texts end with the opt-out hint unless they carry one already.
    More than ``MAX_SEGMENTS`` segments is a template error."""
    if marketing and not has_opt_out_hint(text):
        text = f"{text}\n{OPT_OUT_HINT}"
    measured = measure(text)
    if measured.segments > MAX_SEGMENTS:
        raise TemplateRenderError(
            f"the SMS needs {measured.segments} segments ({measured.encoding}); at most {MAX_SEGMENTS}"
        )
    return measured
