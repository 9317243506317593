"""SES's mailbox simulator, answered locally as SES answers it.

An email the functions hand to SES (``SendRawEmail`` on the client ``leadflow.wiring`` caches) for
an address at ``simulator.amazonses.com`` gets the notifications SES publishes for it through the
configuration set's event destination (the feedback topic) to the ``feedback`` function — the same
SNS event ``LocalSystem.deliver_feedback`` builds, with the SES document of ``LocalSystem.ses_event``:

- ``success@`` (and ``ooto@``): ``Delivery``;
- ``bounce@`` and ``suppressionlist@``: a permanent ``Bounce``;
- ``complaint@``: ``Delivery``, then ``Complaint``.

A label after ``+`` (``bounce+run-7@simulator.amazonses.com``) is kept, as SES keeps it. The
notifications are delivered after the send returns (SES publishes asynchronously): by
``drain`` (``LocalSystem.settle`` calls it) or by the background thread of ``start``. Other
addresses are untouched."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

SIMULATOR_DOMAIN = "simulator.amazonses.com"
MESSAGE_TAG = "leadflow_message_id"
NOTIFICATIONS: Mapping[str, tuple[str, ...]] = {
    "success": ("Delivery",),
    "ooto": ("Delivery",),
    "bounce": ("Bounce",),
    "suppressionlist": ("Bounce",),
    "complaint": ("Delivery", "Complaint"),
}


def simulated(address: str) -> tuple[str, ...]:
    """The notifications SES publishes for an email to ``address`` (none for a real address)."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return ()
    return NOTIFICATIONS.get(local.split("+", 1)[0], ())


class SesSimulator:
    """Install on the functions' SES client; ``publish(document)`` delivers one SES event document
    (``LocalSystem.deliver_feedback``), ``document(sent, kind)`` builds it (``LocalSystem.ses_event``)."""

    def __init__(
        self,
        document: Callable[[Mapping[str, Any], str], dict[str, Any]],
        publish: Callable[[dict[str, Any]], Any],
    ) -> None:
        self._document = document
        self._publish = publish
        self._pending: deque[tuple[dict[str, Any], str]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    def install(self, ses: Any) -> Callable[[], None]:
        """Watch ``SendRawEmail`` on this client; returns the function that stops watching."""
        events = ses.meta.events
        events.register(
            "before-parameter-build.ses.SendRawEmail", self._before, unique_id="leadflow-ses-simulator-before"
        )
        events.register("after-call.ses.SendRawEmail", self._after, unique_id="leadflow-ses-simulator-after")

        def uninstall() -> None:
            events.unregister(
                "before-parameter-build.ses.SendRawEmail", unique_id="leadflow-ses-simulator-before"
            )
            events.unregister("after-call.ses.SendRawEmail", unique_id="leadflow-ses-simulator-after")

        return uninstall

    @staticmethod
    def _before(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["leadflow_simulator"] = {
            "to": list(params.get("Destinations") or []),
            "tag": next(
                (t.get("Value") for t in params.get("Tags") or [] if t.get("Name") == MESSAGE_TAG), None
            ),
        }

    def _after(
        self, http_response: Any, parsed: Mapping[str, Any], context: Mapping[str, Any], **_: Any
    ) -> None:
        request = context.get("leadflow_simulator")
        if not request or int(getattr(http_response, "status_code", 500)) >= 300 or "Error" in parsed:
            return  # SES refused it: no notification
        for address in request["to"]:
            sent = {
                "to": [address],
                "id": str(parsed.get("MessageId", "")),
                "headers": {"X-Leadflow-Message-Id": request["tag"]} if request["tag"] else {},
            }
            for kind in simulated(address):
                self._pending.append((sent, kind))

    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> int:
        """Deliver every notification due; returns how many."""
        moved = 0
        while self._pending:
            sent, kind = self._pending.popleft()
            self._publish(self._document(sent, kind))
            moved += 1
        self.delivered += moved
        return moved

    def start(self, interval: float = 0.05) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.drain()

        self._thread = threading.Thread(target=loop, name="ses-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
