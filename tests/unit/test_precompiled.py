"""Precompiled content (``leadflow.precompiled``): what the layer's build validated is what a
function restores, and an artifact that does not match the files next to it is never used."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow import precompiled
from leadflow.journeys.model import Journey, JourneyError, buckets, load_journeys, read_journey_files
from leadflow.leads.model import LeadModel, load_lead_model, read_lead_file
from leadflow.segments.definitions import load_segments, read_segment_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A copy of the shipped content with its artifacts, as the layer's build leaves it."""
    out = tmp_path / "content"
    for folder in ("journeys", "segments"):
        shutil.copytree(ROOT / folder, out / folder)
    shutil.copy2(ROOT / "leads.yaml", out / "leads.yaml")
    precompiled.write_artifacts(out)
    return out


def restored(source: Path, kind: type) -> object:
    value = precompiled.load(source, kind)
    assert value is not None, f"the artifact of {source} was not used"
    return value


def test_every_shipped_journey_segment_and_the_lead_model_restore_equal_to_the_yaml(content: Path) -> None:
    journeys = restored(content / "journeys", list)
    assert isinstance(journeys, list)
    from_yaml = read_journey_files(ROOT / "journeys")
    assert [j.id for j in journeys] == [j.id for j in from_yaml] != []
    for journey, expected in zip(journeys, from_yaml, strict=True):
        assert isinstance(journey, Journey)
        assert journey == expected, journey.id
        # the step index is rebuilt (it is keyed by object identity): ids, lookups and buckets agree
        assert [journey.step_id(s) for s in journey.walk()] == [expected.step_id(s) for s in expected.walk()]
        for step in journey.walk():
            assert journey.step_by_id(journey.step_id(step)) is step
        assert buckets(journey, "c-123") == buckets(expected, "c-123")
    assert restored(content / "segments", list) == read_segment_files(ROOT / "segments") != []
    assert restored(content / "leads.yaml", LeadModel) == read_lead_file(ROOT / "leads.yaml")
    # the loaders every function calls take the artifact
    assert load_journeys(content / "journeys") == from_yaml
    assert load_segments(content / "segments") == read_segment_files(ROOT / "segments")
    assert load_lead_model(content / "leads.yaml") == read_lead_file(ROOT / "leads.yaml")


def test_two_reads_of_one_journey_file_are_equal() -> None:
    """Equality compares the fields (the step index, keyed by object identity, derives from them)."""
    assert read_journey_files(ROOT / "journeys") == read_journey_files(ROOT / "journeys")


def test_an_edited_journey_file_is_read_not_the_stale_artifact(content: Path) -> None:
    welcome = content / "journeys" / "welcome.yaml"
    text = welcome.read_text()
    assert "\nname: Newsletter welcome series\n" in text
    welcome.write_text(text.replace("\nname: Newsletter welcome series\n", "\nname: Welcome (edited)\n"))
    assert precompiled.load(content / "journeys", list) is None
    edited = next(j for j in load_journeys(content / "journeys") if j.id == "welcome")
    assert edited.name == "Welcome (edited)"


def test_an_added_or_removed_file_makes_the_artifact_stale(content: Path) -> None:
    shutil.copy2(content / "segments" / "hot-leads.yaml", content / "segments" / "more.yaml")
    assert precompiled.load(content / "segments", list) is None
    with pytest.raises(ValueError, match="hot-leads"):  # the YAML path: the duplicate id is found
        load_segments(content / "segments")
    (content / "segments" / "more.yaml").unlink()
    assert precompiled.load(content / "segments", list) is not None
    (content / "journeys" / "win-back.yaml").unlink()
    assert precompiled.load(content / "journeys", list) is None
    assert "win-back" not in {j.id for j in load_journeys(content / "journeys")}


def test_an_edited_lead_model_is_read_not_the_stale_artifact(content: Path) -> None:
    leads = content / "leads.yaml"
    leads.write_text(leads.read_text() + "\n# a comment changes the file, so the key\n")
    assert precompiled.load(leads, LeadModel) is None
    assert load_lead_model(leads) == read_lead_file(ROOT / "leads.yaml")


def test_an_artifact_made_by_other_code_is_not_used(content: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key covers the content language's code (and the pydantic version): a changed model makes
    every artifact stale."""
    monkeypatch.setattr(precompiled, "FORMAT", precompiled.FORMAT + b"changed model\n")
    for source in ("journeys", "segments", "leads.yaml"):
        assert precompiled.load(content / source, object) is None


def test_an_artifact_next_to_another_source_is_not_used(tmp_path: Path) -> None:
    """The key names its source: with the same files in both (here none), the segments' artifact
    still cannot stand in for the journeys'."""
    for folder in ("segments", "journeys"):
        (tmp_path / folder).mkdir()
    precompiled.write(tmp_path / "segments", read_segment_files(tmp_path / "segments"))
    assert precompiled.load(tmp_path / "segments", list) == []
    shutil.copy2(
        precompiled.artifact_path(tmp_path / "segments"), precompiled.artifact_path(tmp_path / "journeys")
    )
    assert precompiled.load(tmp_path / "journeys", list) is None


def test_an_artifact_whose_key_does_not_match_is_never_unpickled(content: Path) -> None:
    """A key mismatch returns before ``pickle.loads``: an artifact moved next to other files, or
    tampered with, runs nothing."""
    path = precompiled.artifact_path(content / "journeys")
    path.write_bytes(b"0" * 64 + b"\n" + b"not a pickle at all")
    assert precompiled.load(content / "journeys", list) is None
    path.write_bytes(precompiled.content_key(content / "journeys") + b"\n" + b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError):  # the same bytes ARE unpickled once the key matches
        precompiled.load(content / "journeys", list)


def test_no_artifact_is_the_yaml_path() -> None:
    assert precompiled.load(ROOT / "journeys", list) is None  # the repository has none
    assert load_journeys(ROOT / "journeys") == read_journey_files(ROOT / "journeys")


def test_the_build_fails_on_an_invalid_journey_naming_the_file(content: Path) -> None:
    (content / "journeys" / "broken.yaml").write_text(
        "id: broken\nname: Broken\nentry: {event: x}\nsteps: []\n"
    )
    with pytest.raises(JourneyError, match=r"broken\.yaml"):
        precompiled.write_artifacts(content)


RESTORE_AND_EVALUATE = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from leadflow.journeys import conditions, model
from leadflow.leads import model as leads
from leadflow.segments import definitions
content = Path(sys.argv[1])
journeys = model.load_journeys(content / "journeys")
lead_model = leads.load_lead_model(content / "leads.yaml")
segments = definitions.load_segments(content / "segments")
facts = conditions.Facts(
    profile={"stage": "lead", "score": 55, "tags": ["vip"], "country": "DE", "consent_email": "granted",
             "employees": 250},
    now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
    events=lambda since: [{"type": "page_viewed", "properties": {"path": "/pricing"},
                           "occurred_at": "2026-03-01T09:00:00Z"}],
)
import pydantic
def built():
    return sorted(
        f"{mod.__name__}.{name}"
        for mod in (model, leads, definitions, conditions)
        for name, value in vars(mod).items()
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel)
        and value.__module__ == mod.__name__ and value.__pydantic_complete__
    )
at_restore = built()
evaluated = 0
found = []
for journey in journeys:  # what the trigger function does with every event
    journey.entry.matches("form_submitted", {"form_id": "newsletter"})
    found += [journey.entry.kind, *(t.kind for t in journey.entry.triggers), model.buckets(journey, "c-1")]
    for condition in [journey.entry.if_, journey.exit.if_]:
        if condition is not None:
            conditions.evaluate(condition, facts); evaluated += 1
    for step in journey.walk():
        found.append(journey.step_id(step))
        for _, condition in model._conditions(step):
            conditions.evaluate(condition, facts); evaluated += 1
for rule in [*lead_model.fit.rules, *lead_model.lifecycle.rules]:  # the lead engine's rules
    conditions.evaluate(rule.when, facts); evaluated += 1
for segment in segments:
    conditions.evaluate(segment.when, facts); evaluated += 1
print(json.dumps({"at_restore": at_restore, "after": built(), "evaluated": evaluated, "modules": sorted(sys.modules)}))
"""


def test_restored_content_is_evaluated_without_building_a_validator(content: Path) -> None:
    """Restoring the content builds none of the journey, lead and segment models' validators (the
    condition language's are built at import), and evaluating every entry, exit, branch, lead rule
    and segment condition (what ``trigger`` and ``score`` do with each event) builds no validator
    at all: none of that work moved from the cold start to the first event."""
    run = subprocess.run(
        [sys.executable, "-c", RESTORE_AND_EVALUATE, str(content)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["evaluated"] >= 10
    assert [m for m in found["at_restore"] if not m.startswith("leadflow.journeys.conditions.")] == []
    assert found["after"] == found["at_restore"]
    assert "jinja2" not in found["modules"]
    assert "yaml" not in found["modules"]
