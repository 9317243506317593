"""Synthesize the stack once per test session (asset bundling skipped), as ``make synth`` would."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "infra")]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def cdk_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:bundling-stacks"] = []
    context.update(overrides)
    return context


@functools.cache
def synthesize() -> tuple[Any, Path]:
    """The dev stage synthesized once per process (infra and parity tiers share it): the
    assertions ``Template`` and the path of the template JSON."""
    import app as cdk_app
    from aws_cdk import App
    from aws_cdk.assertions import Template

    outdir = Path(tempfile.mkdtemp(prefix="leadflow-cdk.out-"))
    application = App(outdir=str(outdir), context=cdk_context())
    stack = cdk_app.build(application)
    application.synth()  # raises when cdk-nag reports an unacknowledged finding
    return Template.from_stack(stack), outdir / f"{stack.stack_name}.template.json"


@pytest.fixture(scope="session")
def synthesized() -> Iterator[tuple[Any, Path]]:
    template, path = synthesize()
    yield template, path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def template(synthesized: tuple[Any, Path]) -> Any:
    return synthesized[0]


@pytest.fixture(scope="session")
def template_json(synthesized: tuple[Any, Path]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(synthesized[1].read_text())
    return data
