"""Server events: business facts (purchases, trials, deals, product usage, anything a journey or a
score rule should trust) that only systems with credentials may report, through
``POST /admin/events`` (IAM-authorized; locally the dev bearer key).

The body is an event exactly as public ``POST /events`` takes it, or a batch
``{"events": [...]}`` of up to ``MAX_BATCH`` events. Every event of a batch is validated on its
own and recorded in its own transaction (``EventRecorder``: contact found or created by email,
visitor linked, ``event_id`` exactly-once); the answer lists one result per event, in order, so a
caller retries only the ones that failed — retrying all of them is harmless when they carry
``event_id``. A bad event never stops the others.

Systems that cannot sign with SigV4 post the same bodies to public ``POST /events/signed``
(``SignedEvents``): ``X-Leadflow-Source: <name>``, ``X-Leadflow-Timestamp: <epoch seconds>`` and
``X-Leadflow-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`` with the source's key from
Secrets Manager (JSON ``{"<name>": "<key>"}``). A timestamp more than 5 minutes off is refused, and
so is a signature seen before (its hash is marked, conditionally, before the events are recorded):
a captured request cannot be replayed. A request that fails after its mark is re-signed (a new
timestamp) and sent again; events with ``event_id`` are still stored once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from leadflow.capture.protection import RefusalReason, count_refusal
from leadflow.capture.tracking import EventRecorder
from leadflow.events.model import EventIn
from leadflow.events.store import IdempotencyMarks
from leadflow.kernel.errors import InvalidInput, validation_fields
from leadflow.kernel.observability import metrics

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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


SIGNATURE_WINDOW_SECONDS = 300


class SignatureRefused(Exception):
    """A signed request that is not one: unknown source, bad or stale signature, or a replay."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SignedEvents:
    """Verifies ``POST /events/signed`` requests (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Callable[[], Mapping[str, str]],
        marks: IdempotencyMarks,
        ddb: DynamoDBClient,
    ) -> None:
        self._keys = keys
        self._marks = marks
        self._ddb = ddb

    @staticmethod
    def signature(key: str, timestamp: str, body: str) -> str:
        return "v1=" + hmac.new(key.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()

    def _refuse(self, reason: RefusalReason, message: str) -> SignatureRefused:
        count_refusal(reason, "POST /events/signed")
        return SignatureRefused(reason, message)

    def verify(
        self, *, source: str | None, timestamp: str | None, signature: str | None, body: str, now: float
    ) -> None:
        """Return when the request is signed by a known source, fresh and not seen before; its
        signature is marked as used."""
        key = self._keys().get(source or "")
        if not source or key is None:
            raise self._refuse("unknown_source", "X-Leadflow-Source names no known event source")
        if not timestamp or not timestamp.isdigit() or abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
            raise self._refuse(
                "stale_signature", "X-Leadflow-Timestamp is missing or more than 5 minutes off"
            )
        if not signature or not hmac.compare_digest(
            signature.encode(), self.signature(key, timestamp, body).encode()
        ):
            raise self._refuse("bad_signature", "X-Leadflow-Signature does not match the body")
        nonce = f"{source}#{hashlib.sha256(signature.encode()).hexdigest()[:32]}"
        if not self._marks.mark("SIGNED", nonce):
            raise self._refuse("replayed_signature", "this signed request was already received")
