"""The one place that creates the Powertools Logger, Tracer and Metrics used by every function,
and the helpers that keep PII out of logs."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "leadflow"
NAMESPACE = "Leadflow"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def pii_hash(value: str) -> str:
    """A short, stable pseudonym for an email or phone number, safe to log."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:12]
