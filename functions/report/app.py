"""report: reporting counters from the events stream (partial batch failures, exactly-once counts).

A consumer of its own — with its own failure queue — so reporting never delays or fails lead
scoring and journey entry. Wiring only."""

from __future__ import annotations

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.kernel.settings import get_settings

service = wiring.report_service(get_settings())
handler = streams.stream_function(service.apply)
