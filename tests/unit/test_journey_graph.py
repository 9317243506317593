"""Journey diagrams (``leadflow journeys graph``): every shipped journey and every step type draws as
well-formed, deterministic SVG that names each step in the marketer's words, with every name escaped."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadflow.journeys import Journey, load_journey, parse_journey
from leadflow.journeys.graph import render_svg
from leadflow.ops.cli import main
from tests.unit.test_journey_language import EVERY_STEP, EVERY_STEP_NAMES

ROOT = Path(__file__).resolve().parents[2]
JOURNEY_FILES = sorted((ROOT / "journeys").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"


HOSTILE = """
id: hostile
name: 'Tom & Jerry''s "<script>alert(1)</script>" journey'
entry: {event: form_submitted}
steps:
  - send_email: {id: hi, name: '<script>alert("x")</script> & co', template: welcome}
  - branch:
      name: "Is it <b>bold</b> & 'quoted'?"
      cases:
        - name: '"hot" & <hot>'
          if: {score: {gte: 50}}
          steps: [{update_contact: {add_tags: [hot]}}]
      default: []
  - random_split:
      name: A & B
      paths:
        - {name: "<a> path", weight: 1, steps: []}
        - {weight: 3, steps: [{wait: {days: 1}}]}
"""


def journey(text: str, source: str = "test.yaml") -> Journey:
    data: Any = yaml.safe_load(text)
    return parse_journey(data, source)


def parse(svg: str) -> ET.Element:
    """Our own output: parsing it as XML is the well-formedness check."""
    return ET.fromstring(svg)  # noqa: S314


def texts(svg: str) -> list[str]:
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    return [el.text or "" for el in root.iter(f"{SVG}text")]


def node_labels(svg: str) -> set[str]:
    """Each node's text, its wrapped lines joined again."""
    root = parse(svg)
    return {
        " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
        for group in root.iter(f"{SVG}g")
        if (group.get("class") or "").startswith("node ")
    }


def edge_labels(svg: str) -> list[str]:
    root = parse(svg)
    return [
        text.text or ""
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "edge-label"
        for text in group.iter(f"{SVG}text")
    ]


@pytest.mark.parametrize("path", JOURNEY_FILES, ids=lambda p: p.stem)
def test_every_shipped_journey_draws(path: Path) -> None:
    svg = render_svg(load_journey(path))
    root = parse(svg)
    width, height = (float(v) for v in root.get("viewBox", "").split()[2:])
    assert 200 < width < 3000
    assert 200 < height < 6000
    labels = node_labels(svg)
    assert "Journey complete" in labels
    assert not any(label.startswith("Leave journey") for label in labels)  # folded into the end
    assert any("exit rules → Contact exited" in t for t in texts(svg))


def test_welcome_shows_the_series_with_yes_and_no() -> None:
    svg = render_svg(load_journey(ROOT / "journeys" / "welcome.yaml"))
    labels = node_labels(svg)
    assert {
        "Start: form_submitted where form_id = newsletter",
        "Send email: welcome",
        "Wait 2 days",
        "Opened or clicked the welcome email?",
        "Send email: engaged follow-up",
        "Send email: nudge follow-up",
        "Journey complete",
    } <= labels
    assert sorted(edge_labels(svg)) == ["no", "yes"]


def test_every_step_type_has_its_node_and_edge_labels() -> None:
    svg = render_svg(journey(EVERY_STEP))
    labels = node_labels(svg)
    expected = EVERY_STEP_NAMES | {
        "Wait until renewal_date -7 days",
        "Update contact: tag hot",
        "Send email: hello_again",
        "Journey complete",
    }
    assert expected <= labels, expected - labels
    assert "Contact exited" not in labels  # a note says it once instead of an edge from every task
    shapes = {group.get("class") for group in parse(svg).iter(f"{SVG}g")}
    assert {"node send", "node wait", "node choice", "node decision", "node end"} <= shapes
    edges = edge_labels(svg)
    for label in [
        "yes",
        "no",
        "score ≥ 50",
        "weight 70%",
        "weight 30%",
        "held out 15%",
        "treated",
        "did it",
        "timed out",
        "otherwise",
    ]:
        assert label in edges, (label, edges)
    assert any(e.startswith("did pricing_viewed") for e in edges)
    # one diamond per choice: two branches, the split and the holdout (wait_for is one task)
    assert len(list(parse(svg).iter(f"{SVG}polygon"))) == 4


def test_a_goto_loop_draws_a_repeat_node() -> None:
    loop = journey("""
id: loop
name: Loop
entry: {event: form_submitted}
steps:
  - send_email: {id: ping, template: welcome}
  - wait: {days: 7}
  - branch:
      name: Clicked?
      if: {clicked: ping}
      then: []
      else: [{goto: ping}]
""")
    svg = render_svg(loop)
    assert "Repeat from ping" in node_labels(svg)
    assert 'stroke-dasharray="5 4"' in svg  # the loop back up is dashed


def test_hostile_names_are_escaped() -> None:
    svg = render_svg(journey(HOSTILE))
    for raw in ("<script", "<b>", "<a>", "<hot>"):
        assert raw not in svg
    assert "&lt;script&gt;" in svg
    assert "&amp; co" in svg
    root = parse(svg)  # still well-formed
    assert root.get("aria-label", "").startswith("Tom & Jerry's \"<script>")
    joined = " ".join(texts(svg))
    assert '<script>alert("x")</script> & co' in " ".join(node_labels(svg))
    assert "Tom & Jerry's" in joined
    edges = edge_labels(svg)
    assert {'"hot" & <hot>', "<a> path", "weight 75%"} <= set(edges)


def test_long_names_are_wrapped_and_cut() -> None:
    long = journey(
        """
id: long
name: Long
entry: {event: form_submitted}
steps:
  - branch:
      name: Did the contact open every single one of the emails we sent?
      if: {opened: x1}
      then: []
      else: []
  - send_email: {id: x1, name: Averyveryverylongwordwithoutanyspacesatallinsideitforsure, template: welcome}
""".replace("opened: x1", "tag: vip")
    )
    svg = render_svg(long)
    for text in texts(svg):
        assert len(text) <= 100
    root = parse(svg)
    for group in root.iter(f"{SVG}g"):
        if (group.get("class") or "").startswith("node "):
            lines = [t.text or "" for t in group.iter(f"{SVG}text")]
            assert len(lines) <= 3, lines
            assert all(len(line) <= 28 for line in lines), lines


def test_rendering_is_deterministic_across_processes() -> None:
    mine = render_svg(journey(EVERY_STEP))
    assert render_svg(journey(EVERY_STEP)) == mine
    code = (
        "import sys, yaml; from leadflow.journeys import parse_journey; "
        "from leadflow.journeys.graph import render_svg; "
        "sys.stdout.write(render_svg(parse_journey(yaml.safe_load(sys.stdin.read()), 'test.yaml')))"
    )
    for seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", code],
            input=EVERY_STEP,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert other == mine


def test_cli_writes_the_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = ROOT / "journeys" / "welcome.yaml"
    out = tmp_path / "welcome.svg"
    assert main(["journeys", "graph", str(source), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_svg(load_journey(source))
    assert "wrote" in capsys.readouterr().out
    assert main(["journeys", "graph", str(source)]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")


def test_cli_refuses_png_without_a_converter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "welcome.png"
    assert main(["journeys", "graph", str(ROOT / "journeys" / "welcome.yaml"), "-o", str(out)]) == 2
    assert "PNG needs an SVG converter" in capsys.readouterr().err
    assert not out.exists()


def test_cli_reports_an_invalid_journey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: Bad\nentry: {event: x}\nsteps: []\n", encoding="utf-8")
    assert main(["journeys", "graph", str(bad)]) == 1
    assert "error:" in capsys.readouterr().err


def test_cli_says_what_to_install_when_the_layout_library_is_missing(tmp_path: Path) -> None:
    """A non-dev install has no grandalf (``leadflow[graph]`` is an extra): the command names the
    extra instead of a traceback, and writes nothing."""
    out = tmp_path / "welcome.svg"
    code = (
        "import sys; sys.modules['grandalf'] = None; "  # import grandalf -> ModuleNotFoundError
        "from leadflow.ops.cli import main; "
        f"sys.exit(main(['journeys', 'graph', {str(ROOT / 'journeys' / 'welcome.yaml')!r}, '-o', {str(out)!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 1, run.stderr
    assert "journey diagrams need grandalf: pip install 'leadflow[graph]'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()
