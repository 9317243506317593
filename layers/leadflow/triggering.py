"""Journey entry and engagement bookkeeping from the event stream.

- ``email_opened``/``email_clicked`` set the message's first-open/first-click time, which journey
  branches read.
- An event matching a journey's entry rule starts that journey's state machine for the contact,
  under a deterministic execution name: a redelivered or repeated event cannot start it twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from botocore.exceptions import ClientError

from leadflow.models import Event
from leadflow.observability import logger, metrics
from leadflow.store import MessageStore

ENGAGEMENT_ATTRIBUTE = {"email_opened": "first_opened_at", "email_clicked": "first_clicked_at"}


class EntryRule(Protocol):
    def matches(self, event_type: str, properties: Any) -> bool: ...


class JourneyLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def entry(self) -> EntryRule: ...


def execution_name(journey_id: str, contact_id: str) -> str:
    """Deterministic, PII-free and within Step Functions' 80-character limit."""
    return f"{journey_id}-{contact_id}"[:80]


class TriggerService:
    def __init__(
        self,
        *,
        journeys: Sequence[JourneyLike],
        messages: MessageStore,
        sfn: Any,
        state_machine_arn: Callable[[str], str],
    ) -> None:
        self._journeys = journeys
        self._messages = messages
        self._sfn = sfn
        self._state_machine_arn = state_machine_arn

    def handle(self, event: Event) -> list[str]:
        """React to one event; returns the ids of the journeys it started (for counting and tests)."""
        attribute = ENGAGEMENT_ATTRIBUTE.get(event.type)
        if (
            attribute
            and event.message_id
            and not self._messages.mark_engaged(event.message_id, attribute, event.occurred_at)
        ):
            logger.info("engagement for unknown message", extra={"event_id": event.event_id})
        if event.contact_id is None:
            return []
        started = []
        for journey in self._journeys:
            if journey.entry.matches(event.type, event.properties) and self._start(journey.id, event):
                started.append(journey.id)
        return started

    def _start(self, journey_id: str, event: Event) -> bool:
        assert event.contact_id is not None
        name = execution_name(journey_id, event.contact_id)
        try:
            self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn(journey_id),
                name=name,
                input=json.dumps(
                    {
                        "contact_id": event.contact_id,
                        "journey_id": journey_id,
                        "entry_event_id": event.event_id,
                    }
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                metrics.add_metric(name="JourneyAlreadyEntered", unit="Count", value=1)
                logger.info("contact already in journey", extra={"journey": journey_id, "execution": name})
                return False
            raise
        metrics.add_metric(name="JourneysStarted", unit="Count", value=1)
        logger.info("journey started", extra={"journey": journey_id, "execution": name})
        return True
