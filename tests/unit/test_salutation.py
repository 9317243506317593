"""Greeting lines by locale: formal with a title and last name, informal with a first name."""

from __future__ import annotations

import pytest

from leadflow.messaging.salutation import language, salutation


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        (
            {"locale": "de-AT", "salutation": "Frau", "first_name": "Eva", "last_name": "Müller"},
            "Sehr geehrte Frau Müller,",
        ),
        ({"locale": "de", "salutation": "Herr", "last_name": "Schmidt"}, "Sehr geehrter Herr Schmidt,"),
        ({"locale": "de", "first_name": "Eva"}, "Hallo Eva,"),
        ({"locale": "de"}, "Guten Tag,"),
        ({"locale": "fr_FR", "salutation": "Mme", "last_name": "Dubois"}, "Madame Dubois,"),
        ({"locale": "es", "salutation": "Sr.", "last_name": "García"}, "Estimado Sr. García:"),
        ({"locale": "en-GB", "salutation": "Dr.", "last_name": "Okafor"}, "Dear Dr Okafor,"),
        ({"first_name": "Ada"}, "Hi Ada,"),
        ({"locale": "xx", "salutation": "Ms", "first_name": "Ada"}, "Hi Ada,"),  # a title needs a last name
        ({}, "Hello,"),
    ],
)
def test_greeting_by_locale_title_and_name(contact: dict[str, str], expected: str) -> None:
    assert salutation(contact) == expected


def test_language_of_a_locale() -> None:
    assert [language(v) for v in ("de-CH", "DE", "pt-BR", None, 7)] == ["de", "de", "en", "en", "en"]
