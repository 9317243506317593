"""Pure message rules: SMS segments, phone numbers, who may receive what, hostile contact fields in
the raw MIME, feedback event ids."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from leadflow.contacts.model import Contact
from leadflow.contacts.normalize import normalize_phone
from leadflow.messaging.compose import InvalidRecipient, SignedLinks, compose_email, template_context
from leadflow.messaging.provider_feedback import InboundSms, feedback_event_id
from leadflow.messaging.render import EmailRenderer, TemplateRenderError
from leadflow.messaging.sending import email_skip_reason, sms_skip_reason
from leadflow.messaging.sms import OPT_OUT_HINT, compose_sms, measure
from leadflow.platform.tokens import TokenSigner

ROOT = Path(__file__).resolve().parents[2]
SIGNER = TokenSigner(lambda refresh: [b"k" * 32])


# --- SMS segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters count two septets
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # an escaped character never straddles two parts
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        ("Grüße aus Köln, Ça va? ñ", "GSM-7", 1),
        ("日" * 70, "UCS-2", 1),
        ("日" * 71, "UCS-2", 2),
        ("a" * 69 + "ç", "UCS-2", 1),  # ç is not GSM-7 (only Ç is): the whole text is UCS-2
        ("😀" * 35, "UCS-2", 1),  # surrogate pairs: two units each
        ("😀" * 36, "UCS-2", 2),
        ("مرحبا " * 30, "UCS-2", 3),
    ],
)
def test_segments_and_encoding(text: str, encoding: str, segments: int) -> None:
    measured = measure(text)
    assert (measured.encoding, measured.segments) == (encoding, segments)


def test_marketing_sms_gets_the_opt_out_hint_once() -> None:
    assert compose_sms("Webinar tomorrow", marketing=True).text == f"Webinar tomorrow\n{OPT_OUT_HINT}"
    assert compose_sms("Webinar tomorrow. Text STOP to end", marketing=True).text.count("STOP") == 1
    assert compose_sms("Your code is 1234", marketing=False).text == "Your code is 1234"


def test_more_than_ten_segments_is_a_template_error() -> None:
    assert compose_sms("a" * (153 * 10), marketing=False).segments == 10
    with pytest.raises(TemplateRenderError, match="11 segments"):
        compose_sms("a" * (153 * 10 + 1), marketing=False)
    with pytest.raises(TemplateRenderError, match="UCS-2"):
        compose_sms("日" * (67 * 10), marketing=True)  # the hint tips it over


def test_sms_template_renders_in_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "sms.txt").write_text("Hi {{ contact.first_name }}\r\n\x07bye  \n")
    renderer = EmailRenderer(tmp_path)
    assert renderer.render_sms("t", {"contact": {"first_name": "<b>Ada</b>"}}) == "Hi <b>Ada</b>\n bye"
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "sms.txt").write_text("{{ contact.__class__.__mro__ }}")
    with pytest.raises(TemplateRenderError):
        renderer.render_sms("evil", {"contact": {"first_name": "x"}})
    with pytest.raises(TemplateRenderError, match=r"no sms\.txt"):
        EmailRenderer(ROOT / "templates").render_sms("welcome", {})


# --- phone numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (415) 555-0123", "+14155550123"),
        ("0049 30 1234567", "+49301234567"),
        ("+44.20.7946.0958", "+442079460958"),
        (" +81 3-1234-5678 ", "+81312345678"),
    ],
)
def test_phone_numbers_become_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["", "4155550123", "+0 123 4567", "+1 415 CALL ME", "+1234", "+1" + "2" * 15])
def test_not_a_phone_number(raw: str) -> None:
    # no region to read a national number in, no such country code, letters, too short or too long
    with pytest.raises(ValueError, match="phone number"):
        normalize_phone(raw)


# --- who may receive what ----------------------------------------------------------------------


def contact(**fields: object) -> Contact:
    return Contact.model_validate({"contact_id": "c1", "email": "ada@example.com", **fields})


@pytest.mark.parametrize(
    ("consent", "purpose", "reason"),
    [
        ("granted", "marketing", None),
        ("unknown", "marketing", "no_consent"),
        ("revoked", "marketing", "unsubscribed"),
        ("pending", "marketing", "consent_pending"),
        ("granted", "transactional", None),
        ("unknown", "transactional", None),
        ("revoked", "transactional", None),
        ("pending", "transactional", "consent_pending"),
        ("pending", "confirmation", None),
        ("granted", "confirmation", "already_confirmed"),
        ("revoked", "confirmation", "unsubscribed"),
        ("unknown", "confirmation", "no_consent"),
    ],
)
def test_email_consent_by_purpose(consent: str, purpose: str, reason: str | None) -> None:
    assert email_skip_reason(contact(consent_email=consent), purpose, None) == reason


def test_suppression_and_do_not_contact_win_over_everything() -> None:
    for purpose in ("marketing", "transactional", "confirmation"):
        assert email_skip_reason(contact(consent_email="granted"), purpose, "bounce") == "suppressed_bounce"
        assert (
            email_skip_reason(contact(consent_email="pending", suppressed="complaint"), purpose, None)
            == "suppressed_complaint"
        )
        assert (
            email_skip_reason(contact(do_not_contact=True, suppressed="bounce"), purpose, None)
            == "do_not_contact"
        )
        assert (
            sms_skip_reason(contact(do_not_contact=True, phone="+14155550123"), purpose) == "do_not_contact"
        )


@pytest.mark.parametrize(
    ("fields", "purpose", "reason"),
    [
        ({"phone": "+14155550123", "consent_sms": "granted"}, "marketing", None),
        ({"phone": "+14155550123"}, "marketing", "no_sms_consent"),
        ({"phone": "+14155550123"}, "transactional", None),
        ({"phone": "+14155550123", "consent_sms": "revoked"}, "transactional", "sms_opted_out"),
        ({"phone": "+14155550123", "consent_sms": "revoked"}, "marketing", "sms_opted_out"),
        ({"consent_sms": "granted"}, "marketing", "invalid_phone"),
        ({"phone": "(415) 555-0123", "consent_sms": "granted"}, "marketing", "invalid_phone"),
    ],
)
def test_sms_rules(fields: dict[str, str], purpose: str, reason: str | None) -> None:
    assert sms_skip_reason(contact(**fields), purpose) == reason


# --- hostile contact fields in the raw MIME ----------------------------------------------------

HOSTILE_NAMES = [
    "Ada\r\nBcc: victim@example.com",
    "Ada\nSubject: injected\n\n<h1>body</h1>",
    '"><script>alert(1)</script>',
    "{{ 7 * 7 }}{% raw %}",
    "x" * 10_000,
    "日本語 テスト",
    "مرحبا بالعالم",
    "Zoë \u202e\u0000 Ünïcødé",
]


def build(first_name: str, *, tracked: bool, recipient: str = "ada@example.com") -> EmailMessage:
    links = SignedLinks(SIGNER, "https://t.example.com", "m1", "c1")
    profile = {"first_name": first_name, "last_name": first_name, "email": recipient}
    rendered = EmailRenderer(ROOT / "templates").render(
        "welcome", template_context(profile, links.unsubscribe_url)
    )
    out = compose_email(
        rendered=rendered,
        links=links,
        sender="Northwind <news@example.com>",
        recipient=recipient,
        unsubscribe_mailto="unsubscribe@example.com",
        configuration_set="leadflow-test",
        message_id="m1",
        tracked=tracked,
    )
    msg = email.message_from_bytes(out.raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("tracked", [True, False])
def test_hostile_names_cannot_inject_headers_or_markup(name: str, tracked: bool) -> None:
    msg = build(name, tracked=tracked)
    assert msg.get_all("To") == ["ada@example.com"]
    assert msg.get_all("Bcc") is None
    assert len(msg.get_all("Subject") or []) == 1
    subject = str(msg["Subject"])
    assert "\n" not in subject
    assert "\r" not in subject
    assert len(subject) <= 998
    assert sorted(msg.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "X-SES-CONFIGURATION-SET", "X-Leadflow-Message-Id"]
        + (["List-Unsubscribe", "List-Unsubscribe-Post"] if tracked else [])
        + ["MIME-Version", "Content-Type"]
    )
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    html = html_part.get_content()
    assert "<script>" not in html
    assert "<h1>body</h1>" not in html
    assert "49" not in subject  # a name is data, never a template
    if name.startswith(("日本語", "مرحبا")):
        assert name in subject
        assert name in html
        assert name in text_part.get_content()
    for line in msg.as_bytes().splitlines():
        assert len(line) <= 998


@pytest.mark.parametrize(
    "recipient", ["ada@example.com\r\nBcc: x@example.com", "a@b.com, c@d.com", "Ada <ada@example.com>"]
)
def test_recipient_must_be_one_plain_address(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        build("Ada", tracked=False, recipient=recipient)


# --- feedback ----------------------------------------------------------------------------------


def test_feedback_event_ids_are_stable_and_time_ordered() -> None:
    a = feedback_event_id(1_700_000_000_000, "ses-1", "email_bounced", "Permanent", "a@example.com")
    assert a == feedback_event_id(1_700_000_000_000, "ses-1", "email_bounced", "Permanent", "a@example.com")
    assert a != feedback_event_id(1_700_000_000_000, "ses-1", "email_bounced", "Transient", "a@example.com")
    later = feedback_event_id(1_700_000_000_001, "ses-0", "email_bounced", "Permanent", "a@example.com")
    assert len(a) == 26
    assert later > a


@pytest.mark.parametrize(
    ("body", "keyword", "stop"),
    [
        ("STOP", None, True),
        ("  stop\n", None, True),
        ("Quit", None, True),
        ("stop it please", None, False),
        ("yes", "STOPALL", True),
        ("see you", "KEYWORD_1", False),
    ],
)
def test_stop_keywords(body: str, keyword: str | None, stop: bool) -> None:
    sms = InboundSms(originationNumber="+14155550123", messageBody=body, messageKeyword=keyword)
    assert sms.is_stop is stop
