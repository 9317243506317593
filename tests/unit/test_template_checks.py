"""Validation beyond the journey file: templates exist and every variable they use can exist —
through ``leadflow journeys validate`` and the start of ``make run``; each problem names the file,
the step, the template part and the variable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leadflow.journeys.checks import check_content, check_files
from leadflow.ops.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]

LEADS = """
attributes:
  company_size: {type: integer, min: 1}
  plan: {type: enum, values: [free, pro]}
"""

WEBINAR = """
id: webinar
name: Webinar
entry: {event: webinar_registered}
steps:
  - send_email:
      id: thanks
      template: thanks
      subject: "Slides: {{ entry.properties.webinar_title }}"
  - send_sms: {id: remind, template: remind, purpose: transactional}
"""

GOOD = {
    "thanks/subject.txt": "Thanks {{ contact.first_name | default('there', true) }}",
    "thanks/preheader.txt": "{{ entry.properties.webinar_title }}",
    "thanks/body.txt": (
        "{% set team = contact.company | default('your team') %}{{ team }} {{ contact.job_title }} "
        "{{ contact.attributes.plan }} {{ contact.attributes['company_size'] }} {{ contact.score }} "
        "{{ contact.stage }} {% for tag in contact.tags %}{{ loop.index }}{{ tag }}{% endfor %} "
        "{{ entry.properties.join_url }} {{ entry.occurred_at }} {{ contact.first_name.upper() }} "
        "{{ contact.attributes.intent }} {{ unsubscribe_url }} {{ salutation }}"
    ),
    "thanks/body.html": '{% extends "_layout/base.html" %}{% block content %}{{ preheader }}{% endblock %}',
    "thanks/de/subject.txt": "Danke {{ contact.first_name }}",
    "remind/sms.txt": "{{ entry.properties.webinar_title }}: {{ entry.properties.join_url }}",
    "_layout/base.html": "<title>{{ subject_line }}</title>{% block content %}{% endblock %}{{ unsubscribe_url }}",
}

SETS_INTENT = """
id: scoring
name: Scoring
entry: {stage: lead}
steps: [{update_contact: {set: {intent: high}}}]
"""


def content(tmp_path: Path, templates: dict[str, str], journeys: dict[str, str] | None = None) -> Path:
    for name, text in {**GOOD, **templates}.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tmp_path / "journeys").mkdir(exist_ok=True)
    for name, text in (journeys or {"webinar.yaml": WEBINAR, "scoring.yaml": SETS_INTENT}).items():
        (tmp_path / "journeys" / name).write_text(text, encoding="utf-8")
    (tmp_path / "leads.yaml").write_text(LEADS, encoding="utf-8")
    return tmp_path


def test_every_kind_of_variable_that_can_exist_passes(tmp_path: Path) -> None:
    assert check_content(content(tmp_path, {})) == []


def test_the_shipped_content_passes() -> None:
    assert check_content(ROOT) == []


@pytest.mark.parametrize(
    ("templates", "problem"),
    [
        (
            {"thanks/body.txt": "{{ contact.compnay }}"},
            "step 'thanks': thanks/body.txt: contact.compnay: 'compnay' is not a contact field "
            "(did you mean 'company'?)",
        ),
        (
            {"thanks/body.html": "{{ contact.attributes.plna }}"},
            "step 'thanks': thanks/body.html: contact.attributes.plna: 'plna' is not a custom attribute "
            "(did you mean 'plan'?); declare it under 'attributes' in leads.yaml",
        ),
        (
            {"thanks/de/subject.txt": "Hallo {{ contact.vorname }}"},
            "step 'thanks': thanks/de/subject.txt: contact.vorname: 'vorname' is not a contact field",
        ),
        (
            {"thanks/preheader.txt": "{{ webinar }}"},
            "step 'thanks': thanks/preheader.txt: webinar: not a template variable (a template may use: "
            "contact, entry, preheader, salutation, subject_line, unsubscribe_url)",
        ),
        (
            {"thanks/subject.txt": "{{ confirm_url }}"},
            "step 'thanks': thanks/subject.txt: confirm_url: not a template variable "
            "(only a confirmation email has it)",
        ),
        (
            {"remind/sms.txt": "{{ entry.propertys.join_url }}"},
            "step 'remind': remind/sms.txt: entry.propertys.join_url: 'propertys' is not a field of the "
            "entry event (did you mean 'properties'?)",
        ),
        (
            {"_layout/base.html": "{{ contact.fist_name }}{% block content %}{% endblock %}"},
            "step 'thanks': _layout/base.html: contact.fist_name: 'fist_name' is not a contact field "
            "(did you mean 'first_name'?)",
        ),
        (
            {"thanks/body.txt": "{% if contact.company %}{{ contact.company }"},
            "step 'thanks': thanks/body.txt: line 1: unexpected '}'",
        ),
        (
            {"thanks/body.html": '{% extends "_layout/gone.html" %}'},
            "step 'thanks': thanks/body.html: uses '_layout/gone.html', which does not exist in",
        ),
    ],
)
def test_a_variable_that_cannot_exist_is_named(
    tmp_path: Path, templates: dict[str, str], problem: str
) -> None:
    root = content(tmp_path, templates)
    problems = check_content(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{root / 'journeys' / 'webinar.yaml'}: {problem}"), problems


def test_step_subject_is_checked_and_entry_properties_need_an_event_entry(tmp_path: Path) -> None:
    journey = WEBINAR.replace("{event: webinar_registered}", "{any: [{stage: mql}, {score_reaches: 40}]}")
    journey = journey.replace("Slides: {{ entry.properties.webinar_title }}", "{{ contact.frist_name }}")
    root = content(tmp_path, {}, {"webinar.yaml": journey, "scoring.yaml": SETS_INTENT})
    problems = [p.removeprefix(f"{root / 'journeys' / 'webinar.yaml'}: ") for p in check_content(root)]
    no_properties = "this journey is not entered by an event (any entry): there are no entry properties"
    assert problems == [
        "step 'thanks': subject: contact.frist_name: 'frist_name' is not a contact field "
        "(did you mean 'first_name'?)",
        f"step 'thanks': thanks/preheader.txt: entry.properties.webinar_title: {no_properties}",
        f"step 'thanks': thanks/body.txt: entry.properties.join_url: {no_properties}",
        f"step 'remind': remind/sms.txt: entry.properties.webinar_title: {no_properties}",
        f"step 'remind': remind/sms.txt: entry.properties.join_url: {no_properties}",
    ]


def test_an_attribute_only_a_journey_sets_is_known_while_that_journey_exists(tmp_path: Path) -> None:
    root = content(tmp_path, {}, {"webinar.yaml": WEBINAR})
    assert check_content(root) == [
        f"{root / 'journeys' / 'webinar.yaml'}: step 'thanks': thanks/body.txt: contact.attributes.intent: "
        "'intent' is not a custom attribute; declare it under 'attributes' in leads.yaml"
    ]


def test_missing_templates_are_named(tmp_path: Path) -> None:
    journey = WEBINAR.replace("template: thanks", "template: thank-you").replace(
        "template: remind", "template: reminder"
    )
    root = content(tmp_path, {}, {"webinar.yaml": journey})
    source = root / "journeys" / "webinar.yaml"
    assert check_content(root) == [
        f"{source}: step 'thanks': template 'thank-you' does not exist in {root / 'templates'}",
        f"{source}: step 'remind': template 'reminder' does not exist in {root / 'templates'}",
    ]


def test_journey_errors_and_template_errors_are_all_listed(tmp_path: Path) -> None:
    root = content(
        tmp_path,
        {"thanks/body.txt": "{{ contact.nope }}"},
        {"webinar.yaml": WEBINAR, "broken.yaml": SETS_INTENT.replace("update_contact", "update_contcat")},
    )
    problems = check_files(
        sorted((root / "journeys").glob("*.yaml")), root / "templates", root / "leads.yaml"
    )
    assert problems == [
        f"{root / 'journeys' / 'broken.yaml'}: steps[0]: unknown step type 'update_contcat' "
        "(did you mean 'update_contact'?)",
        f"{root / 'journeys' / 'webinar.yaml'}: step 'thanks': thanks/body.txt: contact.nope: 'nope' is not "
        "a contact field",
    ]


def test_cli_validate_prints_every_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = content(tmp_path, {"remind/sms.txt": "{{ entry.properties.join_url }} {{ contact.phone }}"})
    files = [str(root / "journeys" / "scoring.yaml"), str(root / "journeys" / "webinar.yaml")]
    assert cli(["journeys", "validate", *files]) == 1
    out, err = capsys.readouterr()
    assert out == f"ok: {files[0]} (journey 'scoring')\n"
    assert err == (
        f"error: {files[1]}: step 'remind': remind/sms.txt: contact.phone: 'phone' is not a contact field "
        "(did you mean 'owner'?)\n"
    )
    (root / "templates" / "remind" / "sms.txt").write_text("{{ entry.properties.join_url }}")
    assert cli(["journeys", "validate", *files]) == 0
    assert capsys.readouterr().out.count("ok: ") == 2


def test_cli_validate_takes_the_templates_and_leads_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = content(tmp_path, {})
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(root / "journeys", elsewhere)
    files = [str(elsewhere / "webinar.yaml"), str(elsewhere / "scoring.yaml")]
    args = ["--templates", str(root / "templates"), "--leads", str(root / "leads.yaml")]
    assert cli(["journeys", "validate", *files, *args]) == 0
    assert (
        cli(
            [
                "journeys",
                "validate",
                *files,
                "--templates",
                str(tmp_path / "none"),
                "--leads",
                str(root / "leads.yaml"),
            ]
        )
        == 1
    )
    assert "template 'thanks' does not exist" in capsys.readouterr().err


def test_make_run_refuses_a_bad_journey_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import leadflow.local.__main__ as local_main

    root = content(tmp_path, {"thanks/body.txt": "{{ contact.compnay }}"})

    def not_started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the local system must not start with a bad journey")

    monkeypatch.setattr(local_main, "ROOT", root)
    monkeypatch.setattr(local_main, "LocalSystem", not_started)
    assert local_main.main() == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "leadflow did not start: fix these journey problems first",
        f"  error: {root / 'journeys' / 'webinar.yaml'}: step 'thanks': thanks/body.txt: contact.compnay: "
        "'compnay' is not a contact field (did you mean 'company'?)",
    ]
    assert "Traceback" not in err
