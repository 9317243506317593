"""rotate: Secrets Manager rotation of the link-signing key ring (one protocol step per call)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import logger, tracer
from leadflow.platform.rotation import RotationEvent, SigningKeyRotation

rotation = SigningKeyRotation(wiring.client("secretsmanager"))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    rotation.run(RotationEvent.model_validate(event))
