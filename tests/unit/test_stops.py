"""Stops on purpose carry leadflow's marker; redrive reads the reason back from DescribeExecution."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from leadflow.journeys.runtime.stops import (
    ERASURE,
    EXIT,
    STOPPED_ON_PURPOSE,
    stop_cause,
    stop_on_purpose,
    stopped_on_purpose,
)


class Sfn:
    def __init__(self, missing: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.missing = missing

    def stop_execution(self, **params: Any) -> None:
        if self.missing:
            raise ClientError(
                {"Error": {"Code": "ExecutionDoesNotExist", "Message": "gone"}}, "StopExecution"
            )
        self.calls.append(params)


def test_stop_on_purpose_sends_the_marker_and_the_reason() -> None:
    sfn = Sfn()
    assert stop_on_purpose(sfn, "arn:x", EXIT, "rule purchased") is True
    assert sfn.calls == [
        {"executionArn": "arn:x", "error": STOPPED_ON_PURPOSE, "cause": "exit: rule purchased"}
    ]
    assert stop_on_purpose(Sfn(missing=True), "arn:y", ERASURE) is False


def test_reasons_are_one_word() -> None:
    assert stop_cause(ERASURE) == "erasure"
    with pytest.raises(ValueError, match="one word"):
        stop_cause("contact erased")


def test_only_aborted_executions_with_the_marker_were_stopped_on_purpose() -> None:
    marked = {"status": "ABORTED", "error": STOPPED_ON_PURPOSE, "cause": "erasure: contact erased"}
    assert stopped_on_purpose(marked) == "erasure"
    assert stopped_on_purpose({**marked, "cause": ""}) == "unspecified"
    assert stopped_on_purpose({"status": "ABORTED"}) is None  # an operator's stop: redrive it
    assert stopped_on_purpose({"status": "ABORTED", "error": "ContactErased"}) is None
    assert stopped_on_purpose({**marked, "status": "FAILED"}) is None
