"""Record every AWS call the local system makes, attributed to whoever makes it.

A botocore ``before-parameter-build`` hook on every session (the default one and each new one)
sees each API call with its parameters; ``leadflow.local.recording.current_function`` says which
function's handler is running. Calls outside any handler are the local runtime's own plumbing —
the stream and queue pumps stand in for Lambda's event source mappings, the test drives the
system — and are not recorded, except the Step Functions interpreter's (it runs executions in
worker threads): those are the state machines' own calls (``STATES``). That attribution needs
the local system with ``background_pump=False`` (pumps on the main thread). An operator tool is
recorded by running it inside ``recording.invocation(OPS_REDRIVE, None)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.handlers
from aws_lambda_powertools.utilities import parameters

from leadflow.local import recording

STATES = "states"
"""Calls of the journey state machines (their Lambda tasks)."""
OPS_REDRIVE = "ops-redrive"
"""Calls of ``leadflow ops redrive`` (the OpsRedrive managed policy)."""

BEFORE = "before-parameter-build"


@dataclass
class Call:
    principal: str
    service: str
    """botocore's service name (``dynamodb``, ``dynamodbstreams``, ``stepfunctions``, ...)."""
    operation: str
    params: dict[str, Any]
    stream_arn: str | None = None
    """For DynamoDB Streams ``GetRecords``: the stream the iterator belongs to."""


@dataclass
class CallRecorder:
    calls: list[Call] = field(default_factory=list)
    invocations: list[tuple[str, Any]] = field(default_factory=list)
    state_data: dict[str, int] = field(default_factory=dict)
    """Largest state input/output per execution (filled by the scenario)."""
    _iterators: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _principal(self) -> str | None:
        function = recording.current_function.get()
        if function is not None:
            return function
        if threading.current_thread() is not threading.main_thread():
            return STATES
        return None

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        stream = None
        if service == "dynamodbstreams" and model.name == "GetShardIterator":
            context["parity_stream_arn"] = params.get("StreamArn")
        if service == "dynamodbstreams" and model.name == "GetRecords":
            stream = context["parity_stream_arn"] = self._iterators.get(str(params.get("ShardIterator")))
        principal = self._principal()
        if principal is None:
            return
        with self._lock:
            self.calls.append(Call(principal, service, model.name, dict(params), stream))

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name != "dynamodbstreams":
            return
        stream = context.get("parity_stream_arn")
        if not stream:
            return
        if model.name == "GetShardIterator" and parsed.get("ShardIterator"):
            self._iterators[parsed["ShardIterator"]] = str(stream)
        elif model.name == "GetRecords" and parsed.get("NextShardIterator"):
            self._iterators[parsed["NextShardIterator"]] = str(stream)

    def _invoked(self, function: str, event: Any) -> None:
        with self._lock:
            if self.invocations and self.invocations[-1][0] != function:
                # each function has its own sandbox in AWS: one function's cached secrets must not
                # hide another's GetSecretValue (Powertools caches them per process)
                parameters.clear_caches()  # type: ignore[no-untyped-call]
            self.invocations.append((function, event))

    @contextmanager
    def installed(self) -> Iterator[CallRecorder]:
        """Record while the block runs: sessions made in it and the default session."""
        handlers = [(BEFORE, self._before), ("after-call", self._after)]
        botocore.handlers.BUILTIN_HANDLERS.extend(handlers)
        default = boto3._get_default_session()._session
        for event, handler in handlers:
            default.register(event, handler)
        recording.add_listener(self._invoked)
        try:
            yield self
        finally:
            recording.remove_listener(self._invoked)
            for event, handler in handlers:
                default.unregister(event, handler)
                botocore.handlers.BUILTIN_HANDLERS.remove((event, handler))

    def by_principal(self) -> dict[str, list[Call]]:
        grouped: dict[str, list[Call]] = {}
        for call in self.calls:
            grouped.setdefault(call.principal, []).append(call)
        return grouped
