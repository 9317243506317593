"""The one place that creates the Powertools Logger, Tracer and Metrics used by every function,
and the helpers that keep PII out of logs."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "leadflow"
NAMESPACE = "Leadflow"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
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
