"""trigger: journey entries and exits from the events stream; records email engagement. Wiring only."""

from __future__ import annotations

from leadflow import wiring
from leadflow.events import streams  # streams first: see leadflow.events.streams
from leadflow.kernel.settings import get_settings

service = wiring.trigger_service(get_settings())
handler = streams.stream_function(service.handle)
