"""The one place that creates the Powertools Logger, Tracer and Metrics used by every function,
and the helpers that keep PII out of logs.

The tracer is Powertools' (X-Ray), built lazily (``LazyTracer``): importing the X-Ray SDK and
patching botocore cost more than ``import boto3`` itself, so no function pays for them at import;
the Powertools ``Tracer`` is built, and botocore patched, at the first invocation that X-Ray samples
(``Sampled=1`` in the invocation's ``_X_AMZN_TRACE_ID``), and traces every invocation after it as
before. Invocations before it are not sampled: X-Ray records nothing for them anyway (Lambda's own
segment still is, with active tracing). With Lambda SnapStart the tracer is built before the snapshot
(``build_tracer``, ``leadflow.kernel.snapshot``)."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from leadflow.kernel.snapshot import before_snapshot

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "leadflow"
NAMESPACE = "Leadflow"
TRACE_HEADER = "_X_AMZN_TRACE_ID"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def sampled() -> bool:
    """Whether X-Ray samples the current invocation (Lambda sets the trace header per invocation)."""
    return "Sampled=1" in os.environ.get(TRACE_HEADER, "")


def tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true")


class LazyTracer:
    """``capture_lambda_handler`` of a Powertools ``Tracer`` that is built when first needed."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._tracer is not None

    def tracer(self) -> Tracer:
        """The Powertools Tracer (X-Ray SDK imported and botocore patched on the first call)."""
        with self._lock:
            if self._tracer is None:
                from aws_lambda_powertools import Tracer

                self._tracer = Tracer(service=self.service)
            return self._tracer

    @overload
    def capture_lambda_handler(self, handler: Handler, **options: Any) -> Handler: ...

    @overload
    def capture_lambda_handler(
        self, handler: None = None, **options: Any
    ) -> Callable[[Handler], Handler]: ...

    def capture_lambda_handler(self, handler: Handler | None = None, **options: Any) -> Any:
        """As Powertools': ``@tracer.capture_lambda_handler`` or ``(capture_response=False)``."""
        if handler is None:
            return functools.partial(self.capture_lambda_handler, **options)
        traced: list[Callable[..., Any]] = []

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            if not traced and self._tracer is None and (tracing_disabled() or not sampled()):
                return handler(event, context)
            if not traced:
                traced.append(self.tracer().capture_lambda_handler(handler, **options))
            return traced[0](event, context)

        return run


logger = Logger(service=SERVICE)
tracer = LazyTracer(service=SERVICE)


@before_snapshot
def build_tracer() -> None:
    """With SnapStart the X-Ray SDK is imported and botocore patched before the snapshot, so no
    restored environment pays for it (``LazyTracer``: without SnapStart, at the first sampled call)."""
    if not tracing_disabled():
        tracer.tracer()


metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def pii_hash(value: str) -> str:
    """A short, stable pseudonym for an email or phone number, safe to log."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:12]


def count_by(name: str, dimension: str, value: str) -> None:
    """One count of ``name`` split by one dimension (e.g. skipped sends by reason), emitted at once
    as its own EMF document so the dimension does not spread to the function's other metrics."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name=dimension, value=value)


def lambda_handler(
    body: Handler, *, correlation_id_path: str | None = None, flush_metrics: bool = True
) -> Handler:
    """``body`` as a Lambda handler, instrumented the same way in every function: the invocation's
    context in every log line (``correlation_id_path``: where the event carries a request id), a
    trace of the invocation (``tracer``) and, with ``flush_metrics``, the metrics flushed at its end."""
    handler: Callable[..., Any] = metrics.log_metrics(body) if flush_metrics else body
    handler = tracer.capture_lambda_handler(handler, capture_response=False)
    instrumented = logger.inject_lambda_context(
        handler, correlation_id_path=correlation_id_path, log_event=False
    )
    return cast("Handler", instrumented)
