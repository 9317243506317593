"""The parity tier: the stack synthesized once per session (shared with ``tests/infra``) and read
as the deployed stage (``tests.parity.template.Stack``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import synthesize
from tests.parity.template import Stack


@pytest.fixture(scope="session")
def template_document() -> dict[str, Any]:
    """The synthesized template JSON (the ``dev`` stage, as ``make synth`` writes it)."""
    _, path = synthesize()
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.fixture(scope="session")
def stack(template_document: dict[str, Any]) -> Stack:
    return Stack(template_document)
