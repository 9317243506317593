"""Personalized sends on the local system (moto): the send step renders the contact's company,
job title, custom attributes, score and stage, and the properties of the event that entered the
contact (read by ``SendRequest.entry_event_id``), with the step's own subject and preheader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.local.system import LocalSystem
from leadflow.messaging.model import SendRequest
from tests.integration.conftest import post_event

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False) as local:
        yield local


def admin(system: LocalSystem, method: str, path: str, body: object) -> dict[str, Any]:
    headers = {**JSON, "authorization": f"Bearer {system.admin_key}"}
    reply = system.invoke_http(method, path, headers=headers, body=json.dumps(body))
    assert reply["statusCode"] in (200, 201), reply
    result: dict[str, Any] = json.loads(reply["body"])
    return result


def contact(system: LocalSystem, email: str, **fields: Any) -> str:
    body = {
        "email": email,
        "first_name": "Grace",
        "consent_email": "granted",
        "consent_source": "webinar registration form",
        **fields,
    }
    contact_id: str = admin(system, "POST", "/admin/contacts", body)["contact_id"]
    return contact_id


def send(system: LocalSystem, contact_id: str, step: str, template: str, **extra: Any) -> dict[str, Any]:
    request = SendRequest(
        action="send_email",
        journey_id="webinar",
        step_id=step,
        template=template,
        contact_id=contact_id,
        execution_id=f"arn:aws:states:us-east-1:123456789012:execution:leadflow-local-webinar:webinar-{contact_id}",
        **extra,
    )
    result = system.modules["send"].sender.send_email(request)
    return dict(result.model_dump())


def sent_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if m["channel"] == "email" and address in m["to"]]


def test_company_attributes_and_entry_properties_reach_the_email(system: LocalSystem) -> None:
    address = "grace.hopper@example.com"
    contact_id = contact(
        system,
        address,
        company="Cobol & Co",
        job_title="Head of Engineering",
        attributes={"company_size": "250", "plan": "pro"},
    )
    post_event(system, address, "product_used", feature="reports")  # other history first
    registration = post_event(
        system,
        address,
        "webinar_registered",
        webinar_title="Attribution in 30 minutes",
        join_url="https://webinar.example.com/j/42",
        recording_url="https://webinar.example.com/r/42",
        starts_at="2026-03-12T17:00:00+01:00",
    )
    post_event(system, address, "product_used", feature="dashboards")  # and after
    system.settle()

    result = send(
        system,
        contact_id,
        "thanks",
        "webinar-thanks",
        subject="Your slides from {{ entry.properties.webinar_title }}, {{ contact.first_name }}",
        preheader="For {{ contact.company }} ({{ contact.attributes.plan }} plan)",
        entry_event_id=registration,
    )
    assert result["status"] == "sent", result
    # the shipped webinar journey confirmed the registration meanwhile; the thanks email is ours
    [email] = [m for m in sent_to(system, address) if m["subject"].startswith("Your slides")]
    assert email["subject"] == "Your slides from Attribution in 30 minutes, Grace"
    assert "Thanks for joining Attribution in 30 minutes." in email["text"]
    assert "anyone you'd like to share them with at Cobol & Co" in email["text"]
    assert "Many Head of Engineerings start with" in email["text"]
    assert "Cobol &amp; Co" in email["html"]
    assert "For Cobol &amp; Co (pro plan)</div>" in email["html"]  # the layout's preheader
    # the recording link is click-tracked like every link of a marketing email
    assert "https://webinar.example.com/r/42" not in email["text"]
    assert "/t/c/" in email["text"]


def test_score_stage_and_a_missing_entry_event(system: LocalSystem, tmp_path: Any, monkeypatch: Any) -> None:
    from leadflow.messaging.render import EmailRenderer

    folder = tmp_path / "status"
    folder.mkdir()
    (folder / "subject.txt").write_text("{{ contact.first_name }}: {{ contact.stage | default('new') }}")
    (folder / "body.txt").write_text(
        "score={{ contact.score }} size={{ contact.attributes.company_size }} "
        "title=[{{ contact.job_title }}] plan={{ entry.properties.plan | default('unknown') }}"
    )
    (folder / "body.html").write_text("<p>{{ contact.company | default('your team') }}</p>")
    monkeypatch.setattr(system.modules["send"].sender, "_renderer", EmailRenderer(tmp_path))
    address = "ada.status@example.com"
    contact_id = contact(system, address, first_name="Ada", attributes={"company_size": "12"})
    post_event(system, address, "webinar_attended", webinar_id="w1")  # 15 points (leads.yaml)
    system.settle()

    # an entry event id that names nothing (erased, expired): its properties are missing
    result = send(system, contact_id, "status", "status", entry_event_id="01NOSUCHEVENT0000000000000")
    assert result["status"] == "sent", result
    [email] = sent_to(system, address)
    assert email["subject"] == "Ada: subscriber"  # granted consent made the contact a subscriber
    assert email["text"].startswith("score=15 size=12 title=[] plan=unknown")
    assert "<p>your team</p>" in email["html"]
