"""Helpers shared by the test suites and the proof: a fresh interpreter as Lambda starts one, and
what an operator does against the local stage.

``leadflow ops redrive`` is pointed at a real stage by its CloudFormation outputs; on the local
system the same names come from the system itself (its dead-letter queues, the ``leadflow-local-*``
consumers, every journey's state machine), and the redrive runs with the local clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from leadflow.local.system import LocalSystem, resource_name
from leadflow.ops.redrive import CONSUMERS, RedriveSummary, StageResources, redrive

ROOT = Path(__file__).resolve().parents[1]


def last_line_printed(code: str, *args: str, env: dict[str, str]) -> str:
    """Run ``code`` (with ``args``) in a fresh interpreter at the repository root, in ``env`` (a
    function's environment in Lambda); the last line it printed. It must exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def local_stage_resources(system: LocalSystem, consumers: Iterable[str] = CONSUMERS) -> StageResources:
    """What a redrive of the local stage touches: its dead-letter queues, the given stream consumers'
    functions and every state machine."""
    return StageResources(
        queue_urls=dict(system.dlq_urls),
        function_names={c: resource_name(c) for c in consumers},
        state_machine_arns=list(system.state_machines.values()),
    )


def redrive_local_stage(
    system: LocalSystem, consumers: Iterable[str] = CONSUMERS, **options: Any
) -> list[RedriveSummary]:
    """``leadflow ops redrive`` against the local stage (no wait between rounds); ``options`` are
    ``redrive``'s own (``do_executions=False``, ``dry_run=True``...)."""
    return redrive(
        local_stage_resources(system, consumers),
        sqs=system.client("sqs"),
        streams=system.client("dynamodbstreams"),
        lambda_=system.client("lambda"),
        sfn=system.client("stepfunctions"),
        wait_seconds=0,
        **options,
    )
