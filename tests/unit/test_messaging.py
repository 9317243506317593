"""Email composition: rendering, tracked links, compliant and injection-proof headers."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest

from leadflow.messaging.compose import (
    InvalidRecipient,
    SignedLinks,
    compose_marketing_email,
    rewrite_links,
    template_context,
)
from leadflow.messaging.render import EmailRenderer, RenderedEmail, TemplateRenderError
from leadflow.platform.tokens import TokenSigner

ROOT = Path(__file__).resolve().parents[2]
SIGNER = TokenSigner(lambda refresh: [b"s" * 32])
BASE = "https://track.example.com"


def links() -> SignedLinks:
    return SignedLinks(SIGNER, BASE, "m123", "c01contact")


def compose(rendered: RenderedEmail, recipient: str = "ada@example.com") -> email.message.EmailMessage:
    out = compose_marketing_email(
        rendered=rendered,
        links=links(),
        sender="Northwind <news@example.com>",
        recipient=recipient,
        unsubscribe_mailto="unsubscribe@example.com",
        configuration_set="leadflow-local",
        message_id="m123",
    )
    msg = email.message_from_bytes(out.raw, policy=default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def render(name: str, contact: dict[str, object]) -> RenderedEmail:
    return EmailRenderer(ROOT / "templates").render(name, template_context(contact, links().unsubscribe_url))


@pytest.mark.parametrize("name", ["welcome", "welcome-followup-engaged", "welcome-followup-nudge"])
def test_example_templates_render_with_and_without_a_first_name(name: str) -> None:
    with_name = render(name, {"first_name": "Ada", "email": "ada@example.com"})
    without = render(name, {"first_name": None, "email": "x@example.com"})
    assert "Ada" in with_name.subject or "Ada" in with_name.html
    assert "None" not in without.subject
    assert "None" not in without.html
    assert links().unsubscribe_url in with_name.html
    assert links().unsubscribe_url in with_name.text


def test_welcome_falls_back_to_there() -> None:
    assert render("welcome", {"email": "x@example.com"}).subject == "Welcome to Northwind Analytics, there!"


def test_missing_template_and_undefined_variables_fail(tmp_path: Path) -> None:
    renderer = EmailRenderer(tmp_path)
    with pytest.raises(TemplateRenderError, match=r"no subject\.txt"):
        renderer.render("nope", {})
    (tmp_path / "t").mkdir()
    for part in ("subject.txt", "body.txt"):
        (tmp_path / "t" / part).write_text("Hello")
    (tmp_path / "t" / "body.html").write_text("<p>{{ contact.nickname.upper() }}</p>")
    with pytest.raises(TemplateRenderError, match=r"has no attribute .nickname."):
        renderer.render("t", {"contact": {}})


def test_sandbox_blocks_attribute_escapes(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "subject.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    (tmp_path / "t" / "body.txt").write_text("x")
    (tmp_path / "t" / "body.html").write_text("x")
    with pytest.raises(TemplateRenderError):
        EmailRenderer(tmp_path).render("t", {})


def test_locale_folder_overrides_and_falls_back(tmp_path: Path) -> None:
    (tmp_path / "t" / "de").mkdir(parents=True)
    for part in ("subject.txt", "body.txt", "body.html"):
        (tmp_path / "t" / part).write_text(f"en {part}")
    (tmp_path / "t" / "de" / "subject.txt").write_text("Hallo")
    rendered = EmailRenderer(tmp_path).render("t", {}, locale="de-AT")
    assert (rendered.subject, rendered.text) == ("Hallo", "en body.txt")


def test_links_are_rewritten_except_unsubscribe_and_mailto() -> None:
    html = (
        '<a href="https://example.com/a?x=1&amp;y=2">a</a> <a href="mailto:hi@example.com">m</a> '
        '<a class="u" href="https://u.example/unsub">u</a>'
    )
    text = "See https://example.com/b. Or https://u.example/unsub"
    new_html, new_text = rewrite_links(html, text, lambda url: f"T({url})", skip={"https://u.example/unsub"})
    assert 'href="T(https://example.com/a?x=1&amp;y=2)"' in new_html
    assert 'href="mailto:hi@example.com"' in new_html
    assert 'href="https://u.example/unsub"' in new_html
    assert new_text == "See T(https://example.com/b). Or https://u.example/unsub"


def test_tracked_links_carry_the_original_url_signed() -> None:
    msg = compose(render("welcome", {"first_name": "Ada"}))
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    tokens = [part.split('"')[0] for part in html.split(f"{BASE}/t/c/")[1:]]
    urls = {SIGNER.verify(token, "click").url for token in tokens}
    assert "https://example.com/start?utm_source=leadflow&utm_medium=email&utm_campaign=welcome" in urls
    assert f"{BASE}/t/o/" in html
    assert 'width="1" height="1"' in html
    assert links().unsubscribe_url in html  # visible, direct (untracked) unsubscribe link


def test_one_click_unsubscribe_headers() -> None:
    msg = compose(render("welcome", {"first_name": "Ada"}))
    assert msg["List-Unsubscribe"] == (
        f"<{links().unsubscribe_url}>, <mailto:unsubscribe@example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-SES-CONFIGURATION-SET"] == "leadflow-local"
    assert msg["To"] == "ada@example.com"


@pytest.mark.parametrize(
    "first_name",
    [
        "Ada\r\nBcc: victim@example.com",
        "<script>alert(1)</script>",
        "Ünïcødé 李雷 محمد 🚀",
        "A" * 5000,
    ],
)
def test_hostile_contact_fields_are_rendered_safely(first_name: str) -> None:
    msg = compose(render("welcome", {"first_name": first_name}))
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"])
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<script>" not in html
    if first_name.startswith("Ü"):
        assert first_name in html
        for word in first_name.split():  # RFC 2047 encoded-words may fold the spaces between scripts
            assert word in str(msg["Subject"])


@pytest.mark.parametrize(
    "recipient", ["a@example.com\r\nBcc: x@evil.com", "a@example.com, b@example.com", "nobody"]
)
def test_recipient_header_injection_is_refused(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        compose(render("welcome", {"first_name": "Ada"}), recipient=recipient)
