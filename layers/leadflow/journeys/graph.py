"""Journey diagrams: the compiled state machine as a top-down SVG flowchart a marketer recognizes.

The layout is grandalf's layered (Sugiyama, "dot"-like) algorithm, pure Python and imported only
here, inside :func:`render_svg`: the Lambda layer never ships it. The SVG is written by hand, every
text escaped (names come from marketers' files), and is the same for the same journey.

What is drawn, from the compiled ASL with every decision a state of its own (``fold=False``: the
deployed definition folds splits, holdouts and branches into the tasks that act on them):

- a start node (the entry trigger), then every state in its own shape: sends are envelope-coloured
  rounded boxes, waits hourglass-coloured boxes, choices diamonds (a split and a holdout are
  choices on the contact's bucket), decisions (evaluate) decision-coloured boxes, Pass states
  small boxes;
- the leave tasks are the ends: one terminal node each for "Journey complete" and "Held out"
  (older definitions' "Leave journey…" tasks fold into the Succeed state they led to);
- choice edges carry the marketer's words: yes/no, the case's name (or its condition), the split
  path's name (or its share), "held out N%"/"treated", "did it"/"timed out";
- the exit-rule catches (every task) and the deferral loops (a deferred send waits and sends
  again) are not drawn: a note under the title says them once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from leadflow.journeys.compiler import (
    CALLBACK,
    COMPLETE,
    DEFERRED_ERROR,
    ENDINGS,
    EXITED,
    EXITED_ERROR,
    TIMEOUT_ERROR,
    compile_journey,
)
from leadflow.journeys.conditions import describe
from leadflow.journeys.model import (
    BranchStep,
    HoldoutStep,
    Journey,
    RandomSplitStep,
    Trigger,
    WaitForStep,
)

FONT = 12
CHAR_W = 6.9  # average glyph width of a 12px sans-serif font
LINE_H = 15
PAD_X = 12
PAD_Y = 9
WRAP = 28
DIAMOND_WRAP = 20
MAX_LINES = 3
EDGE_LABEL_MAX = 32
MARGIN = 20
HEADER = 58
START = "\x00start"  # the entry node's key: no state name can be it

# kind -> (fill, stroke)
STYLES: dict[str, tuple[str, str]] = {
    "start": ("#e8f5e9", "#2e7d32"),
    "send": ("#e3f0ff", "#2f6fd6"),
    "wait": ("#fff4d6", "#c98a00"),
    "timing": ("#fffaf0", "#c98a00"),
    "decision": ("#f3e8ff", "#7b3fc4"),
    "choice": ("#f3e8ff", "#7b3fc4"),
    "action": ("#eef2f6", "#56606b"),
    "pass": ("#f7f7f7", "#8a939c"),
    "end": ("#e8f5e9", "#2e7d32"),
    "held_out": ("#f1f1f1", "#6b7178"),
}


@dataclass
class _Node:
    key: str
    lines: list[str]
    kind: str
    w: float
    h: float
    xy: tuple[float, float] = (0.0, 0.0)


@dataclass
class _Edge:
    src: str
    dst: str
    labels: list[str] = field(default_factory=list)
    back: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)


# --- text --------------------------------------------------------------------------------------


def _wrap(text: str, width: int, max_lines: int = MAX_LINES) -> list[str]:
    """Greedy word wrap; words longer than a line are cut; the last line ends in … when cut short."""
    words = text.split() or [""]
    lines: list[str] = []
    current = ""
    for word in words:
        while len(word) > width:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[: width - 1] + "-")
            word = word[width - 1 :]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        lines[-1] = (last if len(last) < width else last[: width - 1].rstrip()) + "…"
    return lines


def _short(text: str, limit: int = EDGE_LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _kind(name: str, state: dict[str, Any]) -> str:
    kind = state.get("Type")
    if kind == "Choice":
        return "choice"
    if kind == "Wait":
        return "wait"
    if kind == "Pass":
        return "pass"
    if kind == "Succeed" or name in ENDINGS:
        return "held_out" if name != "Journey complete" else "end"
    if name.startswith(("Send email:", "Send SMS:")):
        return "send"
    if name.startswith(("Evaluate:", "Split:", "Holdout:")):
        return "decision"
    if name.startswith(("Schedule:", "Plan:", "Wait for ")):
        return "timing"
    return "action"


def _trigger_text(trigger: Trigger) -> str:
    if trigger.event is not None:
        text = trigger.event
        if trigger.where:
            text += " where " + ", ".join(
                f"{k} = {' or '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in trigger.where.items()
            )
        return text
    if trigger.stage is not None:
        return f"stage becomes {trigger.stage}"
    if trigger.score_reaches is not None:
        return f"score reaches {trigger.score_reaches}"
    if trigger.segment is not None:
        return f"enters segment {trigger.segment}"
    return "enrolled by hand"


def entry_text(journey: Journey) -> str:
    """The entry trigger in words ("Start: form_submitted where form_id = newsletter")."""
    entry = journey.entry
    text = "Start: " + " or ".join(_trigger_text(t) for t in entry.triggers)
    condition = entry.if_
    if condition is not None:
        text += f", if {describe(condition)}"
    return text


# --- the graph -----------------------------------------------------------------------------------


def _choice_labels(journey: Journey, state: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Labels of a Choice state's edges: by the StringEquals value (a numeric choice: by its
    position, ``#0``…), and the Default's."""
    choices = state.get("Choices", [])
    variable = str(choices[0].get("Variable", "")) if choices else ""
    parts = variable.split(".")
    step_id = parts[2] if len(parts) >= 3 else ""
    step = next((s for s in journey.walk() if journey.step_id(s) == step_id), None)
    values = [_choice_value(i, c) for i, c in enumerate(choices)]
    labels = {v: v for v in values}
    default = "otherwise"
    if isinstance(step, BranchStep):
        branch = step.branch
        if branch.cases is None:
            labels["then"], default = "yes", "no"
        else:
            for i, case in enumerate(branch.cases):
                labels[f"case{i + 1}"] = case.name or describe(case.if_)
    elif isinstance(step, RandomSplitStep):
        paths = step.random_split.paths
        total = sum(p.weight for p in paths) or 1
        names = [p.name or f"weight {_num(100 * p.weight / total)}%" for p in paths]
        for i, name in enumerate(names[:-1]):
            labels[f"path{i + 1}"] = labels[f"#{i}"] = name
        default = names[-1]
    elif isinstance(step, HoldoutStep):
        labels["held_out"] = labels["#0"] = f"held out {step.holdout.percent:g}%"
        default = "treated"
    elif isinstance(step, WaitForStep):
        labels["event"], labels["timeout"], default = "did it", "timed out", "not yet"
    return labels, default


def _leaves_itself(name: str, state: dict[str, Any]) -> bool:
    return bool(state.get("End")) and state.get("Type") == "Task" and name not in ENDINGS


def _choice_value(position: int, choice: dict[str, Any]) -> str:
    return str(choice["StringEquals"]) if "StringEquals" in choice else f"#{position}"


def _diagram(journey: Journey) -> tuple[dict[str, _Node], list[_Edge], dict[str, Any]]:
    asl: dict[str, Any] = json.loads(compile_journey(journey, fold=False))
    states: dict[str, dict[str, Any]] = asl["States"]
    # "Leave journey…" tasks of older definitions fold into the Succeed state they led to (the
    # leave tasks end the execution now and are named as the ending, ``ENDINGS``)
    folded = {
        name: str(state["Next"])
        for name, state in states.items()
        if name.startswith("Leave journey") and state.get("Type") == "Task" and state.get("Next") in states
    }

    def resolve(name: str) -> str:
        return folded.get(name, name)

    edges: dict[tuple[str, str], _Edge] = {}

    def connect(src: str, dst: str, label: str = "") -> None:
        dst = resolve(dst)
        if src == dst or dst not in states:
            return
        edge = edges.setdefault((src, dst), _Edge(src, dst))
        if label and label not in edge.labels:
            edge.labels.append(label)

    connect(START, str(asl["StartAt"]))
    if any(_leaves_itself(name, state) for name, state in states.items()):
        # the last step leaves the journey itself (its task ends the execution): drawn into the end
        states.setdefault(COMPLETE, {"Type": "Succeed"})
    for name, state in states.items():
        if name in folded:
            continue
        if state.get("Type") == "Choice":
            labels, default = _choice_labels(journey, state)
            for i, choice in enumerate(state.get("Choices", [])):
                value = _choice_value(i, choice)
                connect(name, str(choice["Next"]), labels.get(value, value))
            if "Default" in state:
                connect(name, str(state["Default"]), default)
        elif "Next" in state:
            connect(name, str(state["Next"]), "did it" if state.get("Resource") == CALLBACK else "")
        elif _leaves_itself(name, state):
            connect(name, COMPLETE)
        for catch in state.get("Catch", []):
            errors = catch.get("ErrorEquals", [])
            if EXITED_ERROR in errors or DEFERRED_ERROR in errors:
                continue  # said once in the note, not drawn from every task
            label = "timed out" if errors == [TIMEOUT_ERROR] else _short(", ".join(errors))
            connect(name, str(catch["Next"]), label)

    # only what the start reaches (the exit terminal is reached by catches alone)
    reached = [START]
    outgoing: dict[str, list[str]] = {}
    for src, dst in edges:
        outgoing.setdefault(src, []).append(dst)
    for name in reached:
        for dst in outgoing.get(name, []):
            if dst not in reached:
                reached.append(dst)
    order = [START] + [n for n in states if n in reached]  # deterministic: ASL reading order
    nodes = {
        key: _node(key, entry_text(journey) if key == START else key, states.get(key, {})) for key in order
    }
    kept = [e for e in edges.values() if e.src in nodes and e.dst in nodes]
    return nodes, kept, asl


def _node(key: str, text: str, state: dict[str, Any]) -> _Node:
    kind = "start" if key == START else _kind(key, state)
    lines = _wrap(text, DIAMOND_WRAP if kind == "choice" else WRAP)
    text_w = max(len(line) for line in lines) * CHAR_W
    text_h = len(lines) * LINE_H
    if kind == "choice":
        # the text box (half sizes a, b) fits inside the diamond (A, B) when a/A + b/B <= 1
        a, b = text_w / 2 + 6, text_h / 2
        big_b = b + 22
        big_a = a / (1 - b / big_b)
        w, h = max(2 * big_a, 110.0), 2 * big_b
    elif kind == "pass":
        w, h = text_w + 2 * 8, text_h + 2 * 5
    else:
        w, h = max(text_w + 2 * PAD_X, 120.0), text_h + 2 * PAD_Y
    return _Node(key, lines, kind, round(w, 1), round(h, 1))


# --- layout -----------------------------------------------------------------------------------


class _View:
    def __init__(self, w: float, h: float) -> None:
        self.w = w
        self.h = h
        self.xy: tuple[float, float] = (0.0, 0.0)


class _EdgeView:
    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, pts: list[tuple[float, float]]) -> None:
        self.points = [(float(x), float(y)) for x, y in pts]


def _layout(nodes: dict[str, _Node], edges: list[_Edge]) -> None:
    from grandalf.graphs import Edge, Vertex, graph_core
    from grandalf.layouts import SugiyamaLayout

    vertices: dict[str, Any] = {}
    for key, node in nodes.items():
        vertex = Vertex(key)
        vertex.view = _View(node.w, node.h)
        vertices[key] = vertex
    g_edges = []
    for edge in edges:
        g_edge = Edge(vertices[edge.src], vertices[edge.dst])
        g_edge.view = _EdgeView()
        g_edges.append(g_edge)
    # graph_core keeps the given order (grandalf's Graph goes through a set: not reproducible)
    graph = graph_core(list(vertices.values()), g_edges)
    layout = SugiyamaLayout(graph)
    layout.xspace, layout.yspace = 36, 50
    layout.dw, layout.dh = 16, 16  # dummy vertices (long edges): thin
    layout.init_all(roots=[vertices[START]])
    layout.draw(3)
    for key, vertex in vertices.items():
        x, y = vertex.view.xy
        nodes[key].xy = (float(x), float(y))
    for edge, g_edge in zip(edges, g_edges, strict=True):
        edge.back = g_edge in layout.alt_e
        points = list(g_edge.view.points)
        if len(points) < 2:
            points = [nodes[edge.src].xy, nodes[edge.dst].xy]
        points[0] = _clip(nodes[edge.src], points[1])
        points[-1] = _clip(nodes[edge.dst], points[-2])
        edge.points = points


def _clip(node: _Node, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the node's centre toward a point leaves the node's outline."""
    cx, cy = node.xy
    dx, dy = toward[0] - cx, toward[1] - cy
    if abs(dx) < 1e-9 and abs(dy) < 1e-9:
        return cx, cy
    hw, hh = node.w / 2, node.h / 2
    if node.kind == "choice":
        t = 1 / (abs(dx) / hw + abs(dy) / hh)
    else:
        t = min(hw / abs(dx) if dx else math.inf, hh / abs(dy) if dy else math.inf)
    return cx + t * dx, cy + t * dy


# --- drawing ----------------------------------------------------------------------------------


def _text_lines(lines: list[str], cx: float, cy: float, cls: str = "") -> str:
    first = cy - (len(lines) - 1) * LINE_H / 2
    attr = f' class="{cls}"' if cls else ""
    return "".join(
        f'<text x="{_num(cx)}" y="{_num(first + i * LINE_H)}"{attr}>{escape(line)}</text>'
        for i, line in enumerate(lines)
    )


def _shape(node: _Node) -> str:
    cx, cy = node.xy
    x, y, w, h = cx - node.w / 2, cy - node.h / 2, node.w, node.h
    fill, stroke = STYLES[node.kind]
    style = f'fill="{fill}" stroke="{stroke}"'
    if node.kind == "choice":
        pts = f"{_num(cx)},{_num(y)} {_num(x + w)},{_num(cy)} {_num(cx)},{_num(y + h)} {_num(x)},{_num(cy)}"
        return f'<polygon points="{pts}" {style}/>'
    radius = {"send": 10, "start": h / 2, "end": h / 2, "held_out": h / 2, "pass": 3}.get(node.kind, 4)
    dash = ' stroke-dasharray="4 3"' if node.kind == "timing" else ""
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" '
        f'rx="{_num(radius)}" {style}{dash}/>'
    )


def _edge_svg(edge: _Edge) -> str:
    d = "M" + " L".join(f"{_num(x)},{_num(y)}" for x, y in edge.points)
    dash = ' stroke-dasharray="5 4"' if edge.back else ""
    return f'<path class="edge" d="{d}"{dash} marker-end="url(#arrow)"/>'


@dataclass
class _Label:
    text: str
    x: float
    y: float
    w: float
    h: float = 16.0

    def overlaps(self, other: _Label) -> bool:
        return (
            abs(self.x - other.x) * 2 < self.w + other.w + 4 and abs(self.y - other.y) * 2 < self.h + other.h
        )


def _place_labels(edges: list[_Edge]) -> list[_Label]:
    """Each label on its edge's first segment, at the middle or, if it would cover one already
    placed (a choice's edges leave from one point), further along or nearer the tail."""
    placed: list[_Label] = []
    for edge in edges:
        if not edge.labels:
            continue
        text = _short(" / ".join(edge.labels))
        (x0, y0), (x1, y1) = edge.points[0], edge.points[1]
        label = _Label(text, 0.0, 0.0, len(text) * 6.2 + 8)
        for share in (0.5, 0.78, 0.28, 0.9, 0.15):
            label.x, label.y = x0 + (x1 - x0) * share, y0 + (y1 - y0) * share
            if not any(label.overlaps(other) for other in placed):
                break
        placed.append(label)
    return placed


def _label_svg(label: _Label) -> str:
    return (
        f'<g class="edge-label"><rect x="{_num(label.x - label.w / 2)}" y="{_num(label.y - label.h / 2)}" '
        f'width="{_num(label.w)}" height="{_num(label.h)}" rx="3"/>'
        f'<text x="{_num(label.x)}" y="{_num(label.y)}">{escape(label.text)}</text></g>'
    )


_CSS = (
    "text{font:12px system-ui,-apple-system,'Segoe UI',sans-serif;fill:#1d2733;"
    "text-anchor:middle;dominant-baseline:central}"
    ".title{font-size:15px;font-weight:600;text-anchor:start}"
    ".note{font-size:11.5px;fill:#5b6570;text-anchor:start}"
    ".edge{fill:none;stroke:#6b7580;stroke-width:1.3}"
    ".edge-label rect{fill:#fff;stroke:#d5dbe1}.edge-label text{font-size:11px;fill:#3d4753}"
)


def render_svg(journey: Journey) -> str:
    """The journey as a top-down flowchart (SVG text): deterministic, every name escaped."""
    nodes, edges, asl = _diagram(journey)
    _layout(nodes, edges)
    xs: list[float] = []
    ys: list[float] = []
    for node in nodes.values():
        xs += [node.xy[0] - node.w / 2, node.xy[0] + node.w / 2]
        ys += [node.xy[1] - node.h / 2, node.xy[1] + node.h / 2]
    for edge in edges:
        xs += [p[0] for p in edge.points]
        ys += [p[1] for p in edge.points]
    labels = _place_labels(edges)
    for label in labels:
        xs += [label.x - label.w / 2, label.x + label.w / 2]
        ys += [label.y - label.h / 2, label.y + label.h / 2]
    title = _short(f"{journey.name} ({journey.id})", 90)
    notes = [f"Any step: exit rules → {EXITED}"]
    if any(name.startswith(("Schedule:", "Deferred:")) for name in asl["States"]):
        notes.append("Deferred sends (quiet hours, send window, frequency cap) wait, then send again")
    header_w = max(len(title) * 8.4, max(len(n) for n in notes) * 6.4)
    min_x, min_y = min(xs) - MARGIN, min(ys) - MARGIN - HEADER - 14 * (len(notes) - 1)
    width = max(max(xs) + MARGIN - min_x, header_w + 2 * MARGIN)
    height = max(ys) + MARGIN - min_y
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{_num(min_x)} {_num(min_y)} {_num(width)} '
        f'{_num(height)}" width="{_num(width)}" height="{_num(height)}" role="img" '
        f'aria-label="{escape(title, {chr(34): "&quot;"})}">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7580"/></marker></defs>',
        f'<rect x="{_num(min_x)}" y="{_num(min_y)}" width="{_num(width)}" height="{_num(height)}" fill="#fff"/>',
        f'<text class="title" x="{_num(min_x + MARGIN)}" y="{_num(min_y + MARGIN + 4)}">{escape(title)}</text>',
    ]
    for i, note in enumerate(notes):
        y = min_y + MARGIN + 26 + 14 * i
        out.append(f'<text class="note" x="{_num(min_x + MARGIN)}" y="{_num(y)}">{escape(note)}</text>')
    out.append('<g class="edges">')
    out += [_edge_svg(edge) for edge in edges]
    out.append('</g><g class="nodes">')
    for node in nodes.values():
        out.append(f'<g class="node {node.kind}">{_shape(node)}{_text_lines(node.lines, *node.xy)}</g>')
    out.append('</g><g class="edge-labels">')
    out += [_label_svg(label) for label in labels]
    out.append("</g></svg>")
    return "\n".join(out) + "\n"
