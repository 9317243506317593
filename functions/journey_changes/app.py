"""journey_changes: run by ``cdk deploy`` itself (a CDK Trigger, after every journey's alias moved
to its new version), it carries out each journey's ``on_change`` for the contacts in flight on
older versions (``leadflow.ops.changes.apply_changes``).

A function of its own for a reason: the deploy is the moment a journey changes, and only a function
the deployment invokes makes one ``cdk deploy`` carry out ``on_change`` (a plain deploy used to
leave it undone until an operator ran ``leadflow journeys apply-changes``). Its role may do exactly
what ``apply_on_change`` does and nothing else.

It logs one line per journey and the whole report as one JSON document, and returns the report. A
journey whose change fails is logged, counted (``JourneyChangesFailed``) and reported under
``failed`` without failing the deployment: its contacts stay on their version (``finish_on_old`` is
always safe) and ``leadflow journeys apply-changes --stage`` finishes the job. Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler, logger
from leadflow.kernel.settings import get_settings

apply_changes = wiring.journey_changes(get_settings())


def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = apply_changes(context.get_remaining_time_in_millis).to_dict()
    logger.info("journey changes applied", extra={"report": report})
    return report


handler = lambda_handler(run, flush_metrics=False)
