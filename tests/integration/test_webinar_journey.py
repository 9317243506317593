"""The shipped webinar journey on the local system, as a marketer's registrants live it: the
confirmation with the webinar's details from the registration event, the SMS reminder an hour
before ``starts_at`` with the join link, and the follow-up by attendance — thanks (with the step's
own subject) for attendees, even one who joined before the reminder, the recording for the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.local.system import LocalSystem
from tests.integration.conftest import post_event

JSON = {"content-type": "application/json"}
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC).timestamp()  # a Tuesday morning
WEBINAR = {
    "webinar_id": "attribution-30",
    "webinar_title": "Attribution in 30 minutes",
    "starts_at": "2026-03-12T17:00:00+01:00",  # 16:00 UTC on Thursday
    "starts_at_text": "Thursday 12 March, 17:00 CET",
    "join_url": "https://webinar.example.com/j/30",
    "recording_url": "https://webinar.example.com/r/30",
}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False, clock_start=START) as local:
        yield local


def contact(system: LocalSystem, email: str, phone: str, first_name: str) -> str:
    body = {
        "email": email,
        "first_name": first_name,
        "phone": phone,
        "company": "Cobol & Co",
        "consent_email": "granted",
        "consent_source": "webinar registration form",
    }
    headers = {**JSON, "authorization": f"Bearer {system.admin_key}"}
    reply = system.invoke_http("POST", "/admin/contacts", headers=headers, body=json.dumps(body))
    assert reply["statusCode"] in (200, 201), reply
    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


def emails(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if m["channel"] == "email" and address in m["to"]]


def texts(system: LocalSystem, phone: str) -> list[str]:
    return [str(m["text"]) for m in system.outbox() if m["channel"] == "sms" and phone in m["to"]]


def until(system: LocalSystem, moment: datetime) -> None:
    system.advance(moment.timestamp() - system.clock.now())


def test_registration_reminder_and_follow_up_by_attendance(system: LocalSystem) -> None:
    people = {
        "attends": ("ada.webinar@example.com", "+14155550201"),
        "early": ("grace.webinar@example.com", "+14155550202"),
        "misses": ("linus.webinar@example.com", "+14155550203"),
    }
    for name, (email, phone) in people.items():
        contact(system, email, phone, name.capitalize())
        post_event(system, email, "product_used", feature="reports")
        post_event(system, email, "webinar_registered", **WEBINAR)
    system.settle()

    for email, phone in people.values():
        [confirmation] = emails(system, email)
        assert confirmation["subject"] == "You're registered: Attribution in 30 minutes"
        assert "on Thursday 12 March, 17:00 CET" in confirmation["text"]
        assert "https://webinar.example.com/j/30" in confirmation["text"]  # transactional: as written
        assert texts(system, phone) == []

    # Grace joins the waiting room early, before the reminder (the wait counts from entry)
    until(system, datetime(2026, 3, 12, 14, 30, tzinfo=UTC))
    post_event(system, people["early"][0], "webinar_attended", webinar_id="attribution-30")
    system.settle()
    assert texts(system, people["attends"][1]) == []

    until(system, datetime(2026, 3, 12, 14, 59, 59, tzinfo=UTC))
    assert texts(system, people["attends"][1]) == []
    until(system, datetime(2026, 3, 12, 15, 0, tzinfo=UTC))
    reminder = "Attribution in 30 minutes starts in an hour. Join: https://webinar.example.com/j/30"
    for email, phone in people.values():
        assert texts(system, phone) == [reminder], email
        [sms] = [m for m in system.outbox() if m["channel"] == "sms" and phone in m["to"]]
        assert sms["time"] == "2026-03-12T15:00:00+00:00"  # the outbox shows when (virtual time)
    assert all(len(m["to"]) == 1 for m in system.outbox())  # each recipient once
    [early_thanks] = emails(system, people["early"][0])[1:]
    assert early_thanks["subject"] == "Your slides from Attribution in 30 minutes"

    # Ada joins at 16:02, after other activity; the thanks goes out with no clock advance
    until(system, datetime(2026, 3, 12, 16, 2, tzinfo=UTC))
    post_event(system, people["attends"][0], "product_used", feature="dashboards")
    post_event(system, people["attends"][0], "webinar_attended", webinar_id="attribution-30")
    system.settle()
    [thanks] = emails(system, people["attends"][0])[1:]
    assert thanks["subject"] == "Your slides from Attribution in 30 minutes"
    assert "Thanks for joining, Attends</div>" in thanks["html"]  # the step's preheader
    assert "share them with at Cobol & Co" in thanks["text"]
    assert len(emails(system, people["misses"][0])) == 1

    # Linus never comes: four hours after the reminder, the recording
    until(system, datetime(2026, 3, 12, 19, 0, tzinfo=UTC))
    [recording] = emails(system, people["misses"][0])[1:]
    assert recording["subject"] == "The recording of Attribution in 30 minutes"
    assert [len(emails(system, p[0])) for p in people.values()] == [2, 2, 2]
