"""bulk: the SQS-fed worker of long jobs — broadcast pages, full segment evaluations (start and
pages) and the clean-up of deleted segments. One job per message; a failed job is reported as a
partial batch failure, so SQS redelivers only it (after the visibility timeout). Wiring only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadflow import wiring
from leadflow.broadcasts.service import BroadcastService
from leadflow.kernel.observability import logger, metrics, tracer
from leadflow.kernel.settings import get_settings
from leadflow.platform.bulk import BroadcastPage, BulkQueue, SegmentCleanupPage, SegmentScanPage, parse_job
from leadflow.segments.definitions import load_segments
from leadflow.segments.evaluation import SegmentEvaluations

settings = get_settings()
_ddb = wiring.client("dynamodb")
queue = BulkQueue(wiring.client("sqs"), settings.bulk_queue_url)
definitions = wiring.segment_definitions(settings, _ddb)
_file_ids = {s.id for s in load_segments(settings.segments_dir)}


engine = wiring.lead_engine(settings, _ddb)
evaluations = SegmentEvaluations(
    client=_ddb,
    contacts_table=settings.contacts_table,
    queue=queue,
    definitions=definitions,
    events=wiring.event_store(settings, _ddb),
    reevaluate=engine.reevaluate,
    file_segment_ids=lambda: _file_ids,
)
broadcasts = BroadcastService(
    client=_ddb,
    contacts_table=settings.contacts_table,
    queue=queue,
    templates_dir=settings.templates_dir,
    segment_exists=lambda segment_id: segment_id in _file_ids or definitions.get(segment_id) is not None,
    sender=wiring.send_service(settings, _ddb),
    messages=wiring.message_store(settings, _ddb),
    journeys=wiring.journey_store(settings, _ddb),
    send_rate=settings.broadcast_send_rate,
)
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


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]  # a TypedDict of the same shape
        event=event, record_handler=run_job, processor=processor, context=context
    )
