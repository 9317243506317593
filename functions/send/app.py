"""send: the journey step function — every task of a journey state machine (sends, decisions,
schedules, contact updates, sales hand-offs, webhooks, leaving). Returns the step's result.
Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.journeys.runtime.tasks import TASK
from leadflow.kernel.observability import lambda_handler
from leadflow.kernel.settings import get_settings

settings = get_settings()
sender = wiring.send_service(settings)
runner = wiring.step_runner(settings, sender)


def run_step(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runner.run(TASK.validate_python(event))


handler = lambda_handler(run_step)
