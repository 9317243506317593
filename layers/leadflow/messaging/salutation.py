"""The greeting line by the contact's locale: informal with a first name, formal with a title and
a last name, a neutral one without either. Templates use ``{{ salutation }}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FEMALE = {"ms", "mrs", "miss", "frau", "madame", "mme", "sra", "señora"}
MALE = {"mr", "herr", "monsieur", "m", "sr", "señor"}
DOCTOR = {"dr"}

GREETINGS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "f": "Dear Ms {last},",
        "m": "Dear Mr {last},",
        "dr": "Dear Dr {last},",
        "first": "Hi {first},",
        "none": "Hello,",
    },
    "de": {
        "f": "Sehr geehrte Frau {last},",
        "m": "Sehr geehrter Herr {last},",
        "dr": "Guten Tag Dr. {last},",
        "first": "Hallo {first},",
        "none": "Guten Tag,",
    },
    "fr": {
        "f": "Madame {last},",
        "m": "Monsieur {last},",
        "dr": "Docteur {last},",
        "first": "Bonjour {first},",
        "none": "Bonjour,",
    },
    "es": {
        "f": "Estimada Sra. {last}:",
        "m": "Estimado Sr. {last}:",
        "dr": "Estimado/a Dr./Dra. {last}:",
        "first": "Hola {first}:",
        "none": "Hola:",
    },
    "nl": {
        "f": "Geachte mevrouw {last},",
        "m": "Geachte heer {last},",
        "dr": "Geachte dr. {last},",
        "first": "Hoi {first},",
        "none": "Hallo,",
    },
}
DEFAULT_LANGUAGE = "en"


def language(locale: object) -> str:
    """``de-AT`` / ``de_AT`` / ``DE`` → ``de``; unknown or missing → English."""
    if isinstance(locale, str) and len(locale) >= 2:
        code = locale[:2].lower()
        if code in GREETINGS:
            return code
    return DEFAULT_LANGUAGE


def salutation(contact: Mapping[str, Any]) -> str:
    greetings = GREETINGS[language(contact.get("locale"))]
    title = str(contact.get("salutation") or "").strip().lower().rstrip(".")
    first = str(contact.get("first_name") or "").strip()
    last = str(contact.get("last_name") or "").strip()
    if last and title in DOCTOR:
        return greetings["dr"].format(last=last)
    if last and title in FEMALE:
        return greetings["f"].format(last=last)
    if last and title in MALE:
        return greetings["m"].format(last=last)
    if first:
        return greetings["first"].format(first=first)
    return greetings["none"]
