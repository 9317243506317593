"""A deploy that edits or removes templates while contacts wait in a journey changes nothing for
them: each execution renders the template versions of the definition it started on (the layer's,
or the template archive's), a contact who enters after the deploy gets the new ones.

The story, on the shipped welcome journey: Ada signs up and opens the welcome email (her follow-up
will be the engaged one), Ben signs up and does not open it (his will be the nudge). A day later a
deploy rewrites the nudge (subject and body), removes the engaged template and points both
branches at the nudge. Cleo signs up after the deploy. When the two-day waits end, Ada gets the
engaged email that no longer exists in the content folder, Ben the nudge as it was, Cleo the new
nudge. A version found nowhere fails the send as a template error, never the current template.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from leadflow.local.system import ROOT, LocalSystem
from leadflow.messaging.template_versions import archive_key, version_of
from tests.integration.conftest import sign_up

DAY = 86400
OLD_NUDGE_SUBJECT = "In case you missed it, Ben: 3 playbooks in 5 minutes"
NEW_NUDGE_SUBJECT = "{{ contact.first_name | default('friend', true) }}, one playbook, two minutes"
NEW_NUDGE_BODY = "Just one thing to read this week, {{ contact.first_name }}: the scoring playbook."
OLD_ENGAGED_SUBJECT = "Ada, your next step: the attribution workshop"


def content(folder: Path) -> Path:
    for name in ("journeys", "templates", "segments"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.copy2(ROOT / "leads.yaml", folder / "leads.yaml")
    return folder


@pytest.fixture
def system(tmp_path: Path) -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False, content_dir=content(tmp_path / "content")) as local:
        yield local


def mails_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if address in m["to"]]


def open_email(system: LocalSystem, mail: dict[str, Any]) -> None:
    [pixel] = re.findall(r'(https?://[^/"]+/t/o/[^"]+)"', str(mail["html"]))
    reply = system.invoke_http("GET", urlsplit(pixel).path, headers={"user-agent": "Mozilla/5.0"})
    assert reply["statusCode"] == 200


def deploy(system: LocalSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``cdk deploy`` does with changed content (``LocalSystem.deploy_journeys``): archive the
    templates' versions, publish each changed journey as a new version and move its alias (new
    executions start on it), and start the functions afresh (send's new layer)."""
    outcome = system.deploy_journeys()
    assert outcome["welcome"].startswith("published"), outcome


def edit_content(folder: Path) -> None:
    """The nudge rewritten, the engaged follow-up removed, both branches sending the nudge."""
    nudge = folder / "templates" / "welcome-followup-nudge"
    (nudge / "subject.txt").write_text(NEW_NUDGE_SUBJECT + "\n", encoding="utf-8")
    (nudge / "body.txt").write_text(NEW_NUDGE_BODY + "\n", encoding="utf-8")
    html = (nudge / "body.html").read_text(encoding="utf-8")
    body = re.sub(
        r"{% block content %}.*?{% endblock %}",
        "{% block content %}<p>" + NEW_NUDGE_BODY + "</p>{% endblock %}",
        html,
        flags=re.S,
    )
    assert body != html
    (nudge / "body.html").write_text(body, encoding="utf-8")
    shutil.rmtree(folder / "templates" / "welcome-followup-engaged")
    journey = folder / "journeys" / "welcome.yaml"
    text = journey.read_text(encoding="utf-8")
    assert "template: welcome-followup-engaged" in text
    journey.write_text(
        text.replace("template: welcome-followup-engaged", "template: welcome-followup-nudge"),
        encoding="utf-8",
    )


def test_waiting_contacts_get_the_templates_they_started_with(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = system.content_dir / "templates"
    old_nudge = version_of(templates, "welcome-followup-nudge")
    old_engaged = version_of(templates, "welcome-followup-engaged")
    sign_up(system, "ada@example.com", "Ada", visitor_id="v-tplver-ada")
    sign_up(system, "ben@example.com", "Ben", visitor_id="v-tplver-ben")
    system.settle()
    open_email(system, mails_to(system, "ada@example.com")[0])
    system.settle()
    system.advance(DAY)

    edit_content(system.content_dir)
    deploy(system, monkeypatch)
    new_nudge = version_of(templates, "welcome-followup-nudge")
    assert new_nudge != old_nudge
    archived = {
        o["Key"]
        for o in system.client("s3").list_objects_v2(Bucket="leadflow-local-template-archive")["Contents"]
    }
    assert {archive_key("welcome-followup-nudge", v) for v in (old_nudge, new_nudge)} <= archived
    assert archive_key("welcome-followup-engaged", old_engaged) in archived  # never pruned
    sign_up(system, "cleo@example.com", "Cleo", visitor_id="v-tplver-cleo")
    system.settle()

    system.advance(DAY + 60)  # Ada's and Ben's waits end, on the definition they started on
    [_, ada_followup] = mails_to(system, "ada@example.com")
    assert ada_followup["subject"] == OLD_ENGAGED_SUBJECT  # its template is gone from the folder
    assert "Glad you dug in, Ada." in str(ada_followup["text"])
    [_, ben_followup] = mails_to(system, "ben@example.com")
    assert ben_followup["subject"] == OLD_NUDGE_SUBJECT
    assert "Short on time, Ben?" in str(ben_followup["text"])
    assert "Just one thing" not in str(ben_followup["text"]) + str(ben_followup["html"])
    assert len(mails_to(system, "cleo@example.com")) == 1  # Cleo still waits

    system.advance(DAY)
    [_, cleo_followup] = mails_to(system, "cleo@example.com")
    assert cleo_followup["subject"] == "Cleo, one playbook, two minutes"
    assert "Just one thing to read this week, Cleo: the scoring playbook." in str(cleo_followup["text"])
    assert "Just one thing to read this week, Cleo: the scoring playbook." in str(cleo_followup["html"])
    assert {e["status"] for e in system.executions()} == {"SUCCEEDED"}

    # the messages record which version each contact got
    messages = system.client("dynamodb").scan(TableName="leadflow-local-messages")["Items"]
    rendered = {
        (m["template"]["S"], m["template_version"]["S"])
        for m in messages
        if "template_version" in m and m["template"]["S"].startswith("welcome-followup")
    }
    assert rendered == {
        ("welcome-followup-engaged", old_engaged),
        ("welcome-followup-nudge", old_nudge),
        ("welcome-followup-nudge", new_nudge),
    }


def test_a_version_found_nowhere_fails_the_send_loudly(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive lost the version (say, emptied by hand): Ben's follow-up fails as a template
    error, recorded on the message; the current nudge is never sent in its place."""
    sign_up(system, "ben@example.com", "Ben", visitor_id="v-tplver-ben")
    system.settle()
    edit_content(system.content_dir)
    deploy(system, monkeypatch)
    s3 = system.client("s3")
    old = [o["Key"] for o in s3.list_objects_v2(Bucket="leadflow-local-template-archive")["Contents"]]
    current = version_of(system.content_dir / "templates", "welcome-followup-nudge")
    for key in old:
        if key.startswith("templates/welcome-followup-nudge/") and current not in key:
            s3.delete_object(Bucket="leadflow-local-template-archive", Key=key)

    system.advance(2 * DAY + 60)
    assert len(mails_to(system, "ben@example.com")) == 1  # the welcome email only
    messages = system.client("dynamodb").scan(TableName="leadflow-local-messages")["Items"]
    [failed] = [m for m in messages if m["template"]["S"] == "welcome-followup-nudge"]
    assert failed["status"]["S"] == "failed"
    assert "not in this deployment and not in the template archive" in failed["reason"]["S"]
    [execution] = [e for e in system.executions() if e["journey"] == "welcome"]
    assert execution["status"] == "FAILED"
