"""Server events: business facts (purchases, trials, deals, product usage, anything a journey or a
score rule should trust) that only systems with credentials may report, through
``POST /admin/events`` (IAM-authorized; locally the dev bearer key).

The body is an event exactly as public ``POST /events`` takes it, or a batch
``{"events": [...]}`` of up to ``MAX_BATCH`` events. Every event of a batch is validated on its
own and recorded in its own transaction (``EventRecorder``: contact found or created by email,
visitor linked, ``event_id`` exactly-once); the answer lists one result per event, in order, so a
caller retries only the ones that failed — retrying all of them is harmless when they carry
``event_id``. A bad event never stops the others."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from leadflow.errors import InvalidInput
from leadflow.models import EventIn
from leadflow.observability import metrics
from leadflow.responses import validation_fields
from leadflow.tracking import EventRecorder

MAX_BATCH = 500
MAX_BODY_BYTES = 1024 * 1024
"""A batch of 500 events with properties needs more than the API's usual 64 KB."""
SOURCE = "server"


class EventResult(BaseModel):
    """One event's outcome: ``accepted`` (with its id; ``duplicate`` for a repeated ``event_id``)
    or ``rejected`` (with the fields at fault)."""

    index: int
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    duplicate: bool | None = None
    fields: list[dict[str, str]] = Field(default_factory=list)


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResult]


class ServerEvents:
    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def record(self, payload: EventIn) -> EventResult:
        accepted = self._recorder.record(payload, source=SOURCE)
        metrics.add_metric(name="ServerEventsRecorded", unit="Count", value=1)
        return EventResult(
            index=0, status="accepted", event_id=accepted.event_id, duplicate=accepted.duplicate
        )

    def record_body(self, body: Any) -> tuple[bool, BatchResult | EventResult]:
        """``(is_batch, result)`` for a parsed JSON body. A single event that does not validate
        raises ``ValidationError`` (a 400 naming the field); a malformed batch raises
        ``InvalidInput``."""
        if isinstance(body, dict) and set(body) == {"events"}:
            return True, self.record_batch(body["events"])
        return False, self.record(EventIn.model_validate(body))

    def record_batch(self, events: Any) -> BatchResult:
        if not isinstance(events, list) or not events:
            raise InvalidInput("events", "must be a non-empty list of events")
        if len(events) > MAX_BATCH:
            raise InvalidInput("events", f"at most {MAX_BATCH} events per request")
        results: list[EventResult] = []
        for index, raw in enumerate(events):
            try:
                payload = EventIn.model_validate(raw)
            except ValidationError as exc:
                fields = [
                    {"field": f"events.{index}.{f['field']}".rstrip("."), "message": f["message"]}
                    for f in validation_fields(list(exc.errors()))
                ]
                results.append(EventResult(index=index, status="rejected", fields=fields))
                metrics.add_metric(name="RejectedRequests", unit="Count", value=1)
                continue
            result = self.record(payload)
            results.append(result.model_copy(update={"index": index}))
        accepted = sum(1 for r in results if r.status == "accepted")
        return BatchResult(accepted=accepted, rejected=len(results) - accepted, results=results)
