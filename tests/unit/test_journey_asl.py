"""Compiled ASL for the runtime parts of the language: step-level subject/preheader and the entry
event reach the send, ``wait_until`` a fixed moment is one Wait, an entry event's date-time is
planned by the step function with the entry event's id, and buckets match the old draw."""

from __future__ import annotations

import json
from typing import Any

import yaml

from leadflow.journeys import compile_journey, parse_journey
from leadflow.journeys.compiler import bucket, buckets

JOURNEY = """
id: webinar
name: Webinar
entry: {any: [{event: webinar_registered}, {stage: mql}]}
steps:
  - random_split:
      name: Subject test
      paths:
        - weight: 1
          steps: [{send_email: {id: a, template: welcome, subject: "{{ entry.properties.title }} starts soon"}}]
        - weight: 1
          steps: [{send_email: {id: b, template: welcome, subject: "Don't miss it", preheader: "Join live"}}]
  - wait_until: {event_property: starts_at, offset_hours: -1}
  - send_email: {id: live, template: welcome}
  - wait_until: {at: "2026-03-12T17:00:00+01:00"}
  - holdout: {percent: 20}
"""


def states() -> dict[str, Any]:
    journey = parse_journey(yaml.safe_load(JOURNEY), "webinar.yaml")
    compiled: dict[str, Any] = json.loads(compile_journey(journey))["States"]
    return compiled


def test_sends_carry_the_step_subject_preheader_and_the_entry_event() -> None:
    found = states()
    # a split of one send per path is one send task: each variant keeps its own subject/preheader
    split = found["Split: Subject test"]["Parameters"]["Payload"]
    a, b = split["step"]["split"]["variants"]
    assert (a["step_id"], a["subject"]) == ("a", "{{ entry.properties.title }} starts soon")
    assert "preheader" not in a
    assert (b["step_id"], b["subject"], b["preheader"]) == ("b", "Don't miss it", "Join live")
    assert "subject" not in found["Send email: live"]["Parameters"]["Payload"]["step"]
    assert split["entry_event_id.$"] == "$.entry_event_id"


def test_wait_until_forms_compile_to_the_fewest_states() -> None:
    found = states()
    fixed = [s for s in found.values() if s.get("Type") == "Wait" and "Timestamp" in s]
    assert [s["Timestamp"] for s in fixed] == ["2026-03-12T16:00:00Z"]
    plan = next(s for name, s in found.items() if name.startswith("Plan: ") and "starts_at" in name)
    assert plan["Parameters"]["Payload"]["entry_event_id.$"] == "$.entry_event_id"
    assert plan["Parameters"]["Payload"]["step"]["event_property"] == "starts_at"


def test_buckets_are_the_draw_of_the_step_function() -> None:
    journey = parse_journey(yaml.safe_load(JOURNEY), "webinar.yaml")
    drawn = buckets(journey, "c-1")
    split_id, holdout_id = sorted(drawn)  # holdout_1, random_split_1
    assert drawn[split_id] == bucket("holdout", "webinar", split_id, "c-1")
    assert drawn[holdout_id] == bucket("split", "webinar", holdout_id, "c-1")
    assert all(0 <= v < 1 for v in drawn.values())
    task = states()["Split: Subject test"]["Parameters"]["Payload"]
    assert task["split_bucket.$"] == f"$.buckets.{holdout_id}"
    assert [v["below"] for v in task["step"]["split"]["variants"]] == [0.5, 1.0]
