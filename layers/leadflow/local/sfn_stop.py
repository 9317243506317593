"""``StopExecution`` keeps its ``error`` and ``cause`` locally, as Step Functions does.

AWS stores both and returns them from ``DescribeExecution`` of the ABORTED execution; moto 5.2.5
drops them (its response reads only ``executionArn`` and stops with ``error=""``). leadflow marks
executions stopped on purpose through them (``leadflow.journeys.runtime.stops``) and ``leadflow ops redrive``
skips those, so the local runtime must keep them. Kept apart from ``moto_patches`` (one concern
per module); ``check_moto`` is the canary: it fails loudly if moto's response moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.stepfunctions.responses import StepFunctionResponse

MAX_ERROR = 256
MAX_CAUSE = 32768
"""StopExecution's limits on ``error`` and ``cause`` (characters)."""


def check_moto() -> None:
    """The internals this patch relies on are where it expects them."""
    for attribute in ("stop_execution", "_get_param", "stepfunction_backend"):
        if not hasattr(StepFunctionResponse, attribute):
            raise RuntimeError(f"moto internals moved: StepFunctionResponse has no {attribute!r}")


@contextmanager
def keep_stop_reasons() -> Iterator[None]:
    """While active, a stopped execution remembers the ``error`` and ``cause`` it was stopped with."""
    check_moto()
    original = StepFunctionResponse.stop_execution

    def stop_execution(self: Any) -> Any:
        error, cause = self._get_param("error"), self._get_param("cause")
        result = original(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        # the worker marks the execution ABORTED without touching error/cause: these stay
        execution.error = error[:MAX_ERROR] if error is not None else None
        execution.cause = cause[:MAX_CAUSE] if cause is not None else None
        return result

    stop_execution.__wrapped_original__ = original  # type: ignore[attr-defined]  # for the canary
    StepFunctionResponse.stop_execution = stop_execution  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepFunctionResponse.stop_execution = original  # type: ignore[method-assign]
