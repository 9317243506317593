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
always safe) and ``leadflow journeys apply-changes --stage`` finishes the job."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.journeys import load_journeys
from leadflow.kernel.observability import logger, tracer
from leadflow.kernel.settings import get_settings
from leadflow.ops.changes import apply_changes

settings = get_settings()
ddb = wiring.client("dynamodb")
sfn = wiring.client("stepfunctions")
store, events = wiring.journey_store(settings, ddb), wiring.event_store(settings, ddb)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    changes = apply_changes(
        sfn,
        load_journeys(settings.journeys_dir),  # the deployed files (the layer's content)
        settings.state_machine_arn,
        settings.journey_alias,
        store=store,
        events=events,
        time_left_ms=context.get_remaining_time_in_millis,
    )
    report = changes.to_dict()
    logger.info("journey changes applied", extra={"report": report})
    return report
