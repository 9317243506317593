"""Contact data normalization: the one place that decides what an email address, a phone number
and a country code are. Forms, ``POST /events``, the admin API, imports and provider feedback all
call these functions, so one person is one contact however and wherever the data was typed.

The rules come from the libraries made for them, not from hand-written patterns:
- email: ``email-validator`` (RFC 5321/5322 syntax, IDNA 2008 with UTS-46 mapping, special-use
  domains such as ``.test`` refused, no DNS lookups). The stored form is lower-case with the domain
  in ASCII (punycode): ``max@faß.de`` is ``max@xn--fa-hia.de`` (IDNA 2003 turned it into
  ``fass.de``, another domain). Local parts stay ASCII: SES does not send to SMTPUTF8 mailboxes.
- phone: ``phonenumbers`` (Google's libphonenumber metadata; ``phonenumberslite`` in the Lambda layer,
  the same API without geocoding data). National formats are read with a default region: the
  request's ``country`` when it sends one, else the stored contact's: ``030 1234567`` in ``DE`` is
  ``+49301234567``. A request model cannot know the stored contact, so a national number in a
  request without ``country`` is kept as a ``NationalNumber``; the service that reads the contact
  resolves it (``resolve_phone``) before anything is stored. The German ``+49 (0)30 1234567`` drops
  its trunk prefix; numbers that no country assigns (``+999…``) and letters (keypad "vanity"
  numbers such as ``+49 30 CALL-ME``) are refused; an extension (``ext. 12``, ``x12``) is accepted
  and not stored (E.164 has none).
- country: ISO 3166-1 alpha-2, the officially assigned codes (checked against ``pycountry`` in tests).
- time zone: an IANA name (``check_time_zone``); ``is_e164`` tells a stored phone number apart.

Every function raises ``ValueError`` with a reason a person understands and never echoes the value
(error messages end up in logs and API answers; the value is personal data).

The models that take contact data in (forms, ``POST /events``, the admin API and imports) declare
their fields with the annotated types at the end (``Email``, ``Phone``, ``Country``, ``TimeZone``,
``Name``, ``Salutation``, ``Text``; ``Required``, ``Blank``, ``Cleaned``): one declaration of each rule, no validator bodies
of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainValidator, StringConstraints, ValidationInfo

COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 - one readable block, not 249 lines
)
"""The 249 officially assigned ISO 3166-1 alpha-2 codes (no reserved ones such as UK or EU)."""

MAX_EMAIL_LENGTH = 254


def normalize_email(raw: str) -> str:
    """Trim, validate and normalize an address: lower case, domain in ASCII (IDNA 2008/UTS-46)."""
    from email_validator import EmailNotValidError, validate_email

    value = raw.strip()
    if not value or len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be an email address of at most {MAX_EMAIL_LENGTH} characters")
    if any(ch in value for ch in "\r\n\t"):
        raise ValueError("is not a valid email address")
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
    except EmailNotValidError as exc:
        raise ValueError(_email_problem(value, str(exc))) from exc
    address = checked.ascii_email or checked.normalized
    local, domain = address.rsplit("@", 1)
    return f"{local.lower()}@{domain.lower()}"


def stored_spelling(text: str) -> str:
    """How a search text for addresses reads in stored addresses: the labels of an internationalized
    domain in ASCII (``faß.de`` → ``xn--fa-hia.de``, as ``normalize_email`` stores them), lower case;
    a label that is no valid domain label on its own stays as typed."""
    import idna

    local, at, domain = text.strip().lower().rpartition("@")
    labels = []
    for label in domain.split("."):
        try:
            labels.append(idna.encode(label, uts46=True).decode() if not label.isascii() else label)
        except idna.IDNAError:
            labels.append(label)
    return f"{local}{at}{'.'.join(labels)}"


def _email_problem(value: str, reason: str) -> str:
    """What is wrong with an address, in words a person acts on (``reason``: email-validator's)."""
    local, at, domain = value.rpartition("@")
    if not at:
        return "is not a valid email address (it has no @)"
    if not local:
        return "is missing the part before the @ (the mailbox name)"
    if not domain:
        return "is missing the domain after the @"
    if "before the @-sign" in reason or reason.startswith(("The email address", "An email address")):
        return "is not a valid email address"
    return "has an invalid domain"


_NO_COUNTRY = (
    "must be a phone number in international format, e.g. +14155550123 (or give the contact's country)"
)
_EXTENSION = re.compile(r"[\s,;]*(?:ext(?:ension)?\.?|x|#)\s*\d{1,7}#?\s*$", re.IGNORECASE)


def _without_letters(value: str) -> str:
    """``value`` when no letter is in it but an extension's marker (``ext. 12``, ``x12``):
    ``phonenumbers`` reads keypad letters as digits, which is not what a person typing a form means."""
    if any(ch.isalpha() for ch in _EXTENSION.sub("", value)):
        raise ValueError("must be a phone number written in digits (letters are not read as keypad digits)")
    return value


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """An E.164 number (``+4930…``) from what a person types.

    ``default_region`` (ISO 3166-1 alpha-2) reads national formats (``030 1234567``); without it a
    number must be international (``+49…`` or ``0049…``)."""
    import phonenumbers

    value = _without_letters(raw.strip())
    region = default_region.upper() if default_region else None
    if region is None and value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        if region is None and not value.startswith("+"):
            raise ValueError(_NO_COUNTRY) from exc
        raise ValueError("is not a valid phone number") from exc
    if phonenumbers.region_code_for_country_code(number.country_code or 0) == "ZZ":
        raise ValueError("has a country calling code no country uses")
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_country(raw: str) -> str:
    """An assigned ISO 3166-1 alpha-2 code, upper case."""
    code = raw.strip().upper()
    if code not in COUNTRY_CODES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code like DE or US")
    return code


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def check_time_zone(value: str | None) -> str | None:
    """An IANA time zone name (None for blank); raises ``ValueError`` with a readable reason."""
    if not value:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone like Europe/Berlin") from exc
    return value


def is_e164(value: str | None) -> bool:
    return bool(value) and _E164.match(value or "") is not None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value: str) -> str | None:
    """Trimmed, inner whitespace collapsed; control characters refused; None when empty."""
    if _CONTROL.search(value.replace("\t", " ").replace("\n", " ").replace("\r", " ")):
        raise ValueError("must not contain control characters")
    cleaned = " ".join(value.split())
    return cleaned or None


def none_if_blank(value: Any) -> Any:
    """An empty or whitespace-only string (an empty form field or CSV cell) means "not given"."""
    return None if isinstance(value, str) and not value.strip() else value


def _required(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("is required")
    return value


@dataclass(frozen=True)
class NationalNumber:
    """A phone number typed without its country calling code (``030 7654321``) in a request that
    names no country: not a number yet. ``resolve_phone`` reads it in the stored contact's country;
    nothing stores it as it is. The digits are personal data: ``repr`` does not show them."""

    typed: str = field(repr=False)


def _international(value: str) -> bool:
    return value.startswith(("+", "00"))


def read_phone(raw: str, country: str | None) -> str | NationalNumber:
    """E.164 from what a request says (``country``: the request's own); a national number without
    a country is kept for the service to resolve (``NationalNumber``)."""
    value = _without_letters(raw.strip())
    if country is None and not _international(value):
        return NationalNumber(value)
    return normalize_phone(value, country)


def resolve_phone(value: str | NationalNumber | None, stored_country: str | None) -> str | None:
    """The E.164 number to store: a ``NationalNumber`` read in the stored contact's country
    (``ValueError`` naming no value when there is none or the number is not valid there)."""
    if not isinstance(value, NationalNumber):
        return value
    if not stored_country:
        raise ValueError(_NO_COUNTRY)
    return normalize_phone(value.typed, stored_country)


MAX_PHONE_LENGTH = 32


def _phone_in_country(value: Any, info: ValidationInfo) -> str | NationalNumber:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > MAX_PHONE_LENGTH:
        raise ValueError(f"must be at most {MAX_PHONE_LENGTH} characters")
    return read_phone(value, info.data.get("country"))


# --- the field types of the models that take contact data in ------------------------------------

Required = BeforeValidator(_required)
"""Field metadata: None or a blank value is refused ("is required")."""
Blank = BeforeValidator(none_if_blank)
"""Field metadata: a blank value is None (``Annotated[Country | None, Blank]``)."""
Cleaned = AfterValidator(clean_text)
"""Field metadata: free text trimmed and collapsed, control characters refused, empty is None."""
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
Phone = Annotated[str | NationalNumber, PlainValidator(_phone_in_country, json_schema_input_type=str)]
"""E.164; a national number is read in the model's ``country``, which is declared before it, or
kept as a ``NationalNumber`` when the model has none (``resolve_phone`` before it is stored)."""
Country = Annotated[str, AfterValidator(normalize_country)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_time_zone)]
Name = Annotated[str, StringConstraints(max_length=100), Cleaned]
"""A first or last name."""
Salutation = Annotated[str, StringConstraints(max_length=20), Cleaned]
Text = Annotated[str, StringConstraints(max_length=200), Cleaned]
"""Free text of a profile: company, job title, where a consent was given."""
