"""Lead scoring from the event stream: points per event type, applied exactly once per event.

The points and the marker ``SCORE#<event id>`` are written in one transaction: a redelivered stream
record finds the marker and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from botocore.exceptions import ClientError

from leadflow.models import Event, iso, utc_now
from leadflow.observability import logger, metrics
from leadflow.store import ContactStore, IdempotencyMarks, Transaction, cancellation_codes

DEFAULT_POINTS: Mapping[str, int] = MappingProxyType(
    {
        "page_viewed": 1,
        "form_submitted": 10,
        "email_opened": 2,
        "email_clicked": 5,
        "unsubscribed": -10,
    }
)


class ScoringService:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        marks: IdempotencyMarks,
        transact: Callable[[Transaction], None],
        points: Mapping[str, int] = DEFAULT_POINTS,
    ) -> None:
        self._contacts = contacts
        self._marks = marks
        self._transact = transact
        self._points = points

    def points_for(self, event: Event) -> int:
        return self._points.get(event.type, 0)

    def apply(self, event: Event) -> str:
        """Add the event's points to its contact. Returns what happened (for counting)."""
        points = self.points_for(event)
        if points == 0:
            return "no_points"
        if event.contact_id is None:
            return "anonymous"
        txn = Transaction()
        txn.add(self._contacts.add_score_op(event.contact_id, points, iso(utc_now())))
        txn.add(self._marks.put_op("SCORE", event.event_id))
        try:
            self._transact(txn)
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                metrics.add_metric(name="DuplicateScoreRecords", unit="Count", value=1)
                return "duplicate"
            if codes and codes[0] == "ConditionalCheckFailed":
                logger.warning("score for unknown contact skipped", extra={"event_id": event.event_id})
                return "unknown_contact"
            raise
        metrics.add_metric(name="ScorePointsApplied", unit="Count", value=1)
        return "scored"
