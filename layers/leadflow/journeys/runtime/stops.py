"""Stopping journey executions on purpose, and telling such a stop from a failure.

leadflow stops a contact's running journey executions when it must never act for them again in
that journey: an erasure request (``erasure``), an exit rule (``exit``). Such an execution ends
ABORTED, the same status as an execution an operator aborted while fixing an incident, and
``leadflow ops redrive`` resumes ABORTED executions. So every stop on purpose carries a marker in
``StopExecution``: ``error`` is ``STOPPED_ON_PURPOSE`` (``leadflow.stopped``) and ``cause`` is
``"<reason>: <detail>"``, the reason one word (``erasure``, ``exit``, ...). Step Functions keeps
both and returns them from ``DescribeExecution``; redrive reads them and skips the execution,
counting it under its reason. Invariant: code that stops an execution so it stays stopped calls
``stop_on_purpose`` (never ``stop_execution`` directly); an execution aborted without the marker
is treated as an incident and redriven.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

STOPPED_ON_PURPOSE = "leadflow.stopped"
"""``error`` of every StopExecution leadflow makes on purpose."""

ERASURE = "erasure"
EXIT = "exit"
CHANGED = "changed"
"""A deploy changed the journey and its ``on_change: exit`` ends the executions of older versions."""
MOVED = "moved"
"""A deploy changed the journey and its ``on_change: move_to_new`` continues the contact on the live
version (a new execution): the old one must never be resumed."""

MAX_CAUSE = 32768
"""StopExecution's ``cause`` limit (characters)."""


def stop_cause(reason: str, detail: str = "") -> str:
    """The ``cause`` text of a stop on purpose: ``"<reason>: <detail>"`` (no personal data)."""
    if not reason or not reason.isidentifier():
        raise ValueError(f"stop reason must be one word, got {reason!r}")
    return f"{reason}: {detail}"[:MAX_CAUSE] if detail else reason


def stop_on_purpose(sfn: Any, execution_arn: str, reason: str, detail: str = "") -> bool:
    """Stop the execution with leadflow's marker; False when it does not exist (already gone)."""
    try:
        sfn.stop_execution(
            executionArn=execution_arn, error=STOPPED_ON_PURPOSE, cause=stop_cause(reason, detail)
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise
    return True


def stopped_on_purpose(description: dict[str, Any]) -> str | None:
    """The reason of a stop on purpose, from a ``DescribeExecution`` answer; None for any other
    execution (running, failed, or aborted without leadflow's marker)."""
    if description.get("status") != "ABORTED" or description.get("error") != STOPPED_ON_PURPOSE:
        return None
    cause = str(description.get("cause") or "")
    return cause.split(":", 1)[0].strip() or "unspecified"
