"""``on_change`` in the journey language: what a deploy that changes a journey does to contacts in it."""

from __future__ import annotations

import pytest
import yaml

from leadflow.journeys import JourneyError, compile_journey
from leadflow.journeys.model import parse_journey

BASE = {
    "id": "nurture",
    "name": "Nurture",
    "entry": {"event": "form_submitted"},
    "steps": [{"send_email": {"id": "hello", "template": "welcome"}}, {"wait": {"days": 2}}],
}


def test_contacts_finish_on_their_version_unless_the_journey_says_exit() -> None:
    assert parse_journey(BASE, "nurture.yaml").on_change == "finish_on_old"
    assert parse_journey({**BASE, "on_change": "exit"}, "nurture.yaml").on_change == "exit"
    text = yaml.safe_dump({**BASE, "on_change": "finish_on_old"})
    assert parse_journey(yaml.safe_load(text), "nurture.yaml").on_change == "finish_on_old"


def test_an_unknown_mode_is_refused_naming_the_field() -> None:
    with pytest.raises(JourneyError, match=r"nurture.yaml: on_change: .*'finish_on_old' or 'exit'"):
        parse_journey({**BASE, "on_change": "restart"}, "nurture.yaml")


def test_on_change_is_not_part_of_the_state_machine() -> None:
    """Changing only ``on_change`` publishes no version: the compiled definition is the same."""
    plain = compile_journey(parse_journey(BASE, "nurture.yaml"))
    assert compile_journey(parse_journey({**BASE, "on_change": "exit"}, "nurture.yaml")) == plain
