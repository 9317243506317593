"""A virtual clock for Step Functions Wait states.

Waiting threads park until virtual time reaches their due time; ``advance`` moves time forward
and wakes the parked threads one at a time in due order, letting the caller's ``settle`` callback
run the woken work to its next park point before the next one is woken — so concurrent executions
see a consistent order of time."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(order=True)
class _Waiter:
    due: float
    seq: int
    wake: threading.Event = field(compare=False, default_factory=threading.Event)
    cancelled: Callable[[], bool] | None = field(compare=False, default=None)

    def waiting(self) -> bool:
        """Still parked: neither woken nor cancelled (a stopped execution's waiter is on its way out
        from the moment it is stopped, not from when its thread next looks)."""
        return not self.wake.is_set() and not (self.cancelled is not None and self.cancelled())


class VirtualClock:
    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._parked: list[_Waiter] = []
        self._seq = itertools.count()

    def now(self) -> float:
        with self._lock:
            return self._now

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    @property
    def parked(self) -> int:
        """Threads parked on the clock (a waiter woken by its own ``wake`` event, or cancelled, no
        longer counts: settling then waits for its thread to finish, e.g. a stopped execution to be
        recorded ABORTED)."""
        with self._lock:
            return sum(1 for waiter in self._parked if waiter.waiting())

    def sleep(
        self,
        seconds: float,
        cancelled: Callable[[], bool] | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        """Park the calling thread until virtual time has moved ``seconds`` on, ``wake`` is set (a
        callback task's answer: it stops counting as parked at that very moment) or ``cancelled()``."""
        if seconds <= 0:
            return
        with self._lock:
            waiter = _Waiter(self._now + seconds, next(self._seq), wake or threading.Event(), cancelled)
            heapq.heappush(self._parked, waiter)
        while not waiter.wake.wait(0.05):
            if cancelled is not None and cancelled():
                break
        self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter in self._parked:
                self._parked.remove(waiter)
                heapq.heapify(self._parked)

    def advance(self, seconds: float, settle: Callable[[], None] = lambda: None) -> float:
        """Move time forward, waking due waiters in order; ``settle`` runs after each wake-up."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            target = self._now + seconds
        while True:
            with self._lock:
                if not self._parked or self._parked[0].due > target:
                    self._now = max(self._now, target)
                    break
                waiter = heapq.heappop(self._parked)
                if waiter.wake.is_set():
                    continue  # woken by its own event already: not a moment of time
                self._now = max(self._now, waiter.due)
            waiter.wake.set()
            settle()
        settle()
        return self.now()
