"""Template versions: what a version covers (a template's folder and the layouts it uses, nothing
else), the compiler naming them, and the renderer rendering the version asked for — the layer's,
the archive's (checked against its hash), or none (a template error, never the current one)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from leadflow.journeys import JourneyError, compile_journey, parse_journey
from leadflow.messaging.render import EmailRenderer, TemplateRenderError
from leadflow.messaging.template_versions import (
    TemplateArchive,
    archive_document,
    archive_key,
    bundle_of,
    stage_archive,
    template_names,
    upload_archive,
    version_of,
)

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "leadflow-test-template-archive"


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "templates"


def versions(templates: Path) -> dict[str, str]:
    return {name: version_of(templates, name) for name in template_names(templates)}


def test_a_bundle_is_the_templates_folder_and_the_layouts_it_uses(templates: Path) -> None:
    welcome = bundle_of(templates, "welcome")
    assert sorted(welcome) == [
        "_layout/base.html",
        "welcome/body.html",
        "welcome/body.txt",
        "welcome/de/body.html",
        "welcome/de/body.txt",
        "welcome/de/subject.txt",
        "welcome/subject.txt",
    ]
    assert welcome["welcome/subject.txt"] == (templates / "welcome" / "subject.txt").read_text()
    assert sorted(bundle_of(templates, "sms-reminder")) == ["sms-reminder/sms.txt"]  # no layout
    assert len(version_of(templates, "welcome")) == 16


def test_a_layout_change_changes_every_template_that_uses_it_and_no_other(templates: Path) -> None:
    before = versions(templates)
    base = templates / "_layout" / "base.html"
    base.write_text(base.read_text().replace("Northwind Analytics", "Northwind"), encoding="utf-8")
    after = versions(templates)
    changed = {name for name in before if before[name] != after[name]}
    uses_layout = {n for n in before if "_layout/base.html" in bundle_of(templates, n)}
    assert changed == uses_layout
    assert {"welcome", "trial-offer"} <= changed
    assert {"sms-reminder", "webinar-reminder"}.isdisjoint(changed)


def test_a_template_change_changes_its_version_only(templates: Path) -> None:
    before = versions(templates)
    (templates / "welcome" / "de" / "subject.txt").write_text("Willkommen!\n", encoding="utf-8")
    after = versions(templates)
    assert {n for n in before if before[n] != after[n]} == {"welcome"}
    (templates / "welcome" / "de" / "subject.txt").write_text(
        (ROOT / "templates" / "welcome" / "de" / "subject.txt").read_text(), encoding="utf-8"
    )
    assert versions(templates) == before  # content-addressed: the same files, the same version
    (templates / "trial-offer" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden files are not rendered
    (templates / "trial-offer" / "hero.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")  # nor images
    assert versions(templates) == before
    assert EmailRenderer(templates).render("trial-offer", CONTEXT).subject


def test_a_reference_that_is_not_a_constant_takes_every_shared_folder(templates: Path) -> None:
    (templates / "_partials").mkdir()
    (templates / "_partials" / "footer.txt").write_text("Bye {{ contact.first_name }}\n", encoding="utf-8")
    (templates / "chosen").mkdir()
    (templates / "chosen" / "subject.txt").write_text("Hi\n", encoding="utf-8")
    (templates / "chosen" / "body.txt").write_text("{% include footer_name %}\n", encoding="utf-8")
    assert "_partials/footer.txt" in bundle_of(templates, "chosen")
    assert "_partials/footer.txt" not in bundle_of(templates, "welcome")  # constant references only
    assert "_partials" not in template_names(templates)


def test_staged_archive_is_one_document_per_version(templates: Path, tmp_path: Path) -> None:
    staged = stage_archive(templates, tmp_path / "staged")
    assert staged == versions(templates)
    document = tmp_path / "staged" / archive_key("welcome", staged["welcome"])
    assert json.loads(document.read_text(encoding="utf-8")) == bundle_of(templates, "welcome")


# --- the compiler ---------------------------------------------------------------------------------

SPLIT_AND_BRANCH = """
id: tv
name: Versions
entry: {event: trial_started}
steps:
  - send_email: {id: hello, template: welcome}
  - random_split:
      name: Tips
      paths:
        - {weight: 1, steps: [{send_email: {id: tips_a, template: trial-tips-a}}]}
        - {weight: 1, steps: [{send_email: {id: tips_b, template: trial-tips-b}}]}
  - branch:
      name: Opened?
      if: {opened_or_clicked: hello}
      then: [{send_email: {id: offer, template: trial-offer}}]
      else: [{send_sms: {id: remind, template: sms-reminder, purpose: transactional}}]
"""


def _sends(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        own = [value] if "template" in value and "channel" in value else []
        return own + [s for v in value.values() for s in _sends(v)]
    if isinstance(value, list):
        return [s for v in value for s in _sends(v)]
    return []


def test_every_send_names_its_template_version(templates: Path) -> None:
    journey = parse_journey(yaml.safe_load(SPLIT_AND_BRANCH), "tv.yaml")
    sends = _sends(json.loads(compile_journey(journey, templates_dir=templates))["States"])
    assert sorted(s["template"] for s in sends) == sorted(
        ["welcome", "trial-tips-a", "trial-tips-b", "trial-offer", "sms-reminder"]
    )
    assert all(s["template_version"] == version_of(templates, s["template"]) for s in sends)
    # without a templates folder (diagrams): no versions, the same control flow
    plain = json.loads(compile_journey(journey))
    assert not any("template_version" in s for s in _sends(plain["States"]))
    # a template change is a definition change
    before = compile_journey(journey, templates_dir=templates)
    (templates / "trial-offer" / "subject.txt").write_text("A new offer\n", encoding="utf-8")
    after = compile_journey(journey, templates_dir=templates)
    assert before != after
    assert json.loads(before)["States"].keys() == json.loads(after)["States"].keys()


def test_compiling_with_a_missing_template_names_it(templates: Path) -> None:
    shutil.rmtree(templates / "trial-offer")
    journey = parse_journey(yaml.safe_load(SPLIT_AND_BRANCH), "tv.yaml")
    with pytest.raises(JourneyError, match="template 'trial-offer' does not exist"):
        compile_journey(journey, templates_dir=templates)


# --- the renderer -----------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


CONTEXT = {"contact": {"first_name": "Ada"}, "unsubscribe_url": "https://t.example/u", "salutation": "Hi Ada"}


def test_the_renderer_renders_the_version_asked_for(templates: Path, s3: Any, tmp_path: Path) -> None:
    upload_archive(s3, BUCKET, templates)
    old = version_of(templates, "welcome")
    old_subject = EmailRenderer(templates).render("welcome", CONTEXT).subject
    # a new deploy: the layer's welcome email changed
    (templates / "welcome" / "subject.txt").write_text(
        "New subject for {{ contact.first_name }}\n", encoding="utf-8"
    )
    calls: list[str] = []

    def client() -> Any:
        calls.append("s3")
        return s3

    renderer = EmailRenderer(templates, archive=TemplateArchive(client, BUCKET))
    new = renderer.version("welcome")
    assert new is not None
    assert new != old
    assert renderer.render("welcome", CONTEXT).subject == "New subject for Ada"  # no version: current
    assert renderer.render("welcome", CONTEXT, version=new).subject == "New subject for Ada"
    assert calls == []  # the layer's own version: no AWS call
    assert renderer.render("welcome", CONTEXT, version=old).subject == old_subject
    assert renderer.render("welcome", CONTEXT, version=old, locale="de").subject != old_subject  # locales too
    assert calls == ["s3"]  # fetched once per process


def test_a_version_found_nowhere_is_a_template_error(templates: Path, s3: Any) -> None:
    renderer = EmailRenderer(templates, archive=TemplateArchive(lambda: s3, BUCKET))
    with pytest.raises(TemplateRenderError, match="version 0123456789abcdef: not in this deployment"):
        renderer.render("welcome", CONTEXT, version="0123456789abcdef")
    with pytest.raises(TemplateRenderError, match="not in this deployment"):
        EmailRenderer(templates).render_sms("sms-reminder", CONTEXT, version="0123456789abcdef")
    # archived later (a deploy in progress): found then, a miss is not remembered
    (templates / "sms-reminder" / "sms.txt").write_text(
        "Old text {{ contact.first_name }}\n", encoding="utf-8"
    )
    old = version_of(templates, "sms-reminder")
    upload_archive(s3, BUCKET, templates)
    with pytest.raises(TemplateRenderError):
        renderer.render_sms("sms-reminder", CONTEXT, version="fedcba9876543210")
    shutil.rmtree(templates / "sms-reminder")
    assert renderer.render_sms("sms-reminder", CONTEXT, version=old) == "Old text Ada"


def test_a_tampered_archive_document_is_refused(templates: Path, s3: Any) -> None:
    version = version_of(templates, "welcome")
    files = bundle_of(templates, "welcome")
    files["welcome/subject.txt"] = "Something else\n"
    s3.put_object(Bucket=BUCKET, Key=archive_key("welcome", version), Body=archive_document(files))
    (templates / "welcome" / "subject.txt").write_text("Changed\n", encoding="utf-8")  # not the layer's
    renderer = EmailRenderer(templates, archive=TemplateArchive(lambda: s3, BUCKET))
    with pytest.raises(TemplateRenderError, match="does not hash to its version"):
        renderer.render("welcome", CONTEXT, version=version)


def test_the_cli_compiles_as_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    from leadflow.ops.cli import main

    assert main(["journeys", "compile", str(ROOT / "journeys" / "welcome.yaml")]) == 0
    sends = _sends(json.loads(capsys.readouterr().out)["States"])
    assert {s["template"]: s["template_version"] for s in sends} == {
        name: version_of(ROOT / "templates", name)
        for name in ("welcome", "welcome-followup-engaged", "welcome-followup-nudge")
    }
