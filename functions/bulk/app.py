"""bulk: the SQS-fed worker of long jobs — broadcast pages, full segment evaluations (start and
pages) and the clean-up of deleted segments. One job per message; a failed job is reported as a
partial batch failure, so SQS redelivers only it (after the visibility timeout). Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.kernel.observability import lambda_handler, logger
from leadflow.kernel.settings import get_settings
from leadflow.platform.bulk import BroadcastPage, SegmentCleanupPage, SegmentScanPage, parse_job

broadcasts, evaluations = wiring.bulk_jobs(get_settings())
processor = BatchProcessor(event_type=EventType.SQS)


def run_job(record: SQSRecord) -> str:
    job = parse_job(record.body)
    logger.append_keys(job_kind=job.kind)
    outcome: str
    if isinstance(job, BroadcastPage):
        outcome = broadcasts.page(job, record.message_id)
    elif isinstance(job, SegmentScanPage):
        outcome = evaluations.scan_page(job, record.message_id)
    elif isinstance(job, SegmentCleanupPage):
        outcome = evaluations.cleanup_page(job, record.message_id)
    else:
        outcome = evaluations.start_job(job, record.message_id)
    logger.info("bulk job done", extra={"outcome": outcome})
    return outcome


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]  # a TypedDict of the same shape
        event=event, record_handler=run_job, processor=processor, context=context
    )


handler = lambda_handler(process)
