"""rotate: Secrets Manager rotation of the link-signing key ring (one protocol step per call).
Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler
from leadflow.platform.rotation import RotationEvent

rotation = wiring.key_rotation()


def rotate(event: dict[str, Any], context: LambdaContext) -> None:
    rotation.run(RotationEvent.model_validate(event))


handler = lambda_handler(rotate, flush_metrics=False)
