"""Rendering with the full template context: profile fields, custom attributes, score, stage,
tags, the entry event's properties, missing values, step-level subject and preheader."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from leadflow.messaging.compose import template_context
from leadflow.messaging.render import EmailRenderer, TemplateRenderError

ROOT = Path(__file__).resolve().parents[2]
UNSUBSCRIBE = "https://track.example.com/unsubscribe/tok"

# a profile as DynamoDB returns it: numbers as Decimal, tags as a set, internal fields beside
PROFILE: dict[str, Any] = {
    "pk": "C#c1",
    "sk": "PROFILE",
    "contact_id": "c1",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "salutation": "Dr",
    "locale": "en",
    "company": "Analytical Engines Ltd",
    "job_title": "Head of Data",
    "country": "GB",
    "score": Decimal("57"),
    "score_value": Decimal("57.4"),
    "stage": "mql",
    "tags": {"vip", "beta"},
    "company_size": Decimal("120"),
    "plan": "pro",
    "budget": Decimal("2500.5"),
    "consent_email": "granted",
    "consent_source": "form:newsletter",
    "rule_points": {"email-open": Decimal("3")},
    "activity": {"x": Decimal("1")},
}
REGISTRATION = {
    "event_id": "ev1",
    "type": "webinar_registered",
    "occurred_at": "2026-03-10T09:00:00Z",
    "properties": {
        "webinar_title": "Attribution in 30 minutes",
        "join_url": "https://webinar.example.com/j/123",
        "seats": Decimal("2"),
    },
}


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def test_the_full_context_renders(tmp_path: Path) -> None:
    context = template_context(PROFILE, UNSUBSCRIBE, score=52, entry=REGISTRATION)
    templates = write(
        tmp_path,
        {
            "t/subject.txt": "{{ contact.first_name }} at {{ contact.company }}",
            "t/body.txt": (
                "{{ contact.job_title }}|{{ contact.country }}|{{ contact.score }}|{{ contact.stage }}|"
                "{{ contact.tags | join(',') }}|{{ contact.attributes.company_size }}|"
                "{{ contact.attributes.plan }}|{{ contact.attributes.budget }}|"
                "{{ entry.type }}|{{ entry.properties.webinar_title }}|{{ entry.properties.join_url }}|"
                "{{ entry.properties.seats + 1 }}|{{ salutation }}"
            ),
            "t/body.html": "<p>{{ contact.company }}</p>",
        },
    )
    rendered = EmailRenderer(templates).render("t", context)
    assert rendered.subject == "Ada at Analytical Engines Ltd"
    assert rendered.text == (
        "Head of Data|GB|52|mql|beta,vip|120|pro|2500.5|webinar_registered|Attribution in 30 minutes|"
        "https://webinar.example.com/j/123|3|Dear Dr Lovelace,"
    )


def test_internal_fields_are_not_in_the_context() -> None:
    context = template_context(PROFILE, UNSUBSCRIBE)
    attributes = dict(context["contact"]["attributes"])
    assert attributes == {"company_size": 120, "plan": "pro", "budget": 2500.5}
    assert context["contact"]["score"] == 57  # the stored score when no score now is given
    assert "consent_email" not in context["contact"]


def test_missing_values_render_empty_and_take_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "t/subject.txt": "Hi {{ contact.first_name | default('there') }}",
            "t/body.txt": (
                "[{{ contact.company }}][{{ contact.company | default('your team') }}]"
                "[{% if contact.job_title %}title{% else %}no title{% endif %}]"
                "[{{ contact.attributes.industry | default('any industry') }}]"
                "[{{ entry.properties.join_url | default('https://example.com/webinars') }}]"
                "[{{ entry.properties.missing.deeper }}][{{ contact.tags | length }}]"
            ),
            "t/body.html": "<p>{{ contact.last_name }}</p>",
        },
    )
    bare = template_context({"contact_id": "c2", "email": "x@example.com", "company": ""}, UNSUBSCRIBE)
    rendered = EmailRenderer(tmp_path).render("t", bare)
    assert rendered.subject == "Hi there"
    assert rendered.text == ("[][your team][no title][any industry][https://example.com/webinars][][0]")
    assert rendered.html == "<p></p>"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ contact.compnay }}", r"has no attribute 'compnay'"),
        ("{{ webinar }}", r"'webinar' is undefined"),
        ("{{ entry.props }}", r"has no attribute 'props'"),
    ],
)
def test_names_that_cannot_exist_still_fail_at_render(tmp_path: Path, source: str, message: str) -> None:
    write(tmp_path, {"t/subject.txt": "s", "t/body.txt": source, "t/body.html": "h"})
    with pytest.raises(TemplateRenderError, match=message):
        EmailRenderer(tmp_path).render("t", template_context(PROFILE, UNSUBSCRIBE))


def test_step_subject_and_preheader_override_the_templates(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "t/subject.txt": "Template subject",
            "t/preheader.txt": "Template preheader for {{ contact.first_name }}",
            "t/body.txt": "{{ subject_line }} / {{ preheader }}",
            "t/body.html": '{% extends "_layout/base.html" %}{% block content %}x{% endblock %}',
            "t/de/subject.txt": "Betreff",
            "_layout/base.html": (ROOT / "templates" / "_layout" / "base.html").read_text(),
        },
    )
    renderer = EmailRenderer(tmp_path)
    context = template_context(PROFILE, UNSUBSCRIBE, entry=REGISTRATION)
    plain = renderer.render("t", context)
    assert (plain.subject, plain.preheader) == ("Template subject", "Template preheader for Ada")
    assert plain.text == "Template subject / Template preheader for Ada"
    assert "Template preheader for Ada</div>" in plain.html
    assert "<title>Template subject</title>" in plain.html
    german = renderer.render("t", context, locale="de")
    assert german.subject == "Betreff"
    step = renderer.render(
        "t",
        context,
        locale="de",
        subject="{{ contact.first_name }}, your slides: {{ entry.properties.webinar_title }}",
        preheader="Only for {{ contact.company }}",
    )
    assert step.subject == "Ada, your slides: Attribution in 30 minutes"
    assert step.preheader == "Only for Analytical Engines Ltd"
    assert step.text == "Ada, your slides: Attribution in 30 minutes / Only for Analytical Engines Ltd"


def test_a_step_subject_that_renders_empty_or_fails_is_a_template_error(tmp_path: Path) -> None:
    write(tmp_path, {"t/subject.txt": "s", "t/body.txt": "b", "t/body.html": "h"})
    renderer = EmailRenderer(tmp_path)
    context = template_context({"contact_id": "c", "email": "x@example.com"}, UNSUBSCRIBE)
    with pytest.raises(TemplateRenderError, match="the subject is empty"):
        renderer.render("t", context, subject="{{ contact.company }}")
    with pytest.raises(TemplateRenderError, match=r"template 't', the step's subject: .*nope"):
        renderer.render("t", context, subject="{{ contact.nope }}")


def test_html_escapes_contact_values_and_text_does_not(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "t/subject.txt": "{{ contact.company }}",
            "t/body.txt": "{{ contact.company }}",
            "t/body.html": "{{ contact.company }}",
        },
    )
    context = template_context(
        {"contact_id": "c", "email": "x@example.com", "company": "Tom & <Jerry>"}, UNSUBSCRIBE
    )
    rendered = EmailRenderer(tmp_path).render("t", context)
    assert rendered.html == "Tom &amp; &lt;Jerry&gt;"
    assert rendered.text == rendered.subject == "Tom & <Jerry>"


def test_shipped_webinar_templates_render_with_the_registration() -> None:
    renderer = EmailRenderer(ROOT / "templates")
    context = template_context(PROFILE, UNSUBSCRIBE, entry=REGISTRATION)
    sms = renderer.render_sms("webinar-reminder", context)
    assert sms == "Attribution in 30 minutes starts in an hour. Join: https://webinar.example.com/j/123"
    thanks = renderer.render("webinar-thanks", context)
    assert "Analytical Engines Ltd" in thanks.text
    assert "Head of Datas" in thanks.text
    registered = renderer.render("webinar-registered", template_context(PROFILE, UNSUBSCRIBE))
    assert registered.subject == "You're registered: our webinar"  # no entry event: the defaults
    assert "https://example.com/webinars" in registered.text
