"""score: the lead engine on the events stream — behaviour and fit scores, lifecycle stages and
segment membership, exactly once per event (partial batch failures). Wiring only."""

from __future__ import annotations

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.kernel.settings import get_settings

settings = get_settings()
service = wiring.lead_engine(settings)
handler = streams.stream_function(service.handle)
