"""Which function is running: the local runtime marks every handler invocation.

In AWS each function runs in its own sandbox with its own role; locally every handler runs in this
process. ``invocation`` sets a context variable around each call (in the thread that runs the
handler, so the handler's own AWS calls see it) and tells the listeners which function got which
event. The parity tier (``tests/parity``) listens to attribute every AWS call to the function
that made it and to check each invocation path against the template. Not shipped to Lambda
(``leadflow.local`` is left out of the layer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Listener = Callable[[str, Any], None]

current_function: ContextVar[str | None] = ContextVar("leadflow_local_function", default=None)
"""The function (``leadflow-<stage>-<name>``) whose handler is running, or None."""

_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


@contextmanager
def invocation(function: str, event: Any) -> Iterator[None]:
    """Run the body as ``function`` handling ``event``."""
    for listener in list(_listeners):
        listener(function, event)
    token = current_function.set(function)
    try:
        yield
    finally:
        current_function.reset(token)
