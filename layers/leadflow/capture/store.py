"""Capture's own items: the sign-up budgets, hourly counters in the idempotency table.

Invariants:
- A budget is spent only inside the sign-up's own transaction: ``SignupBudgets.ops`` builds
  conditional atomic increments (``n < limit``) the sign-up commits with its contact, consent and
  event, so a post over budget writes nothing and a post refused for another reason spends nothing.
- Budget keys are per source network as stored everywhere else (IP truncated to /24, /48) and per
  recipient domain, both hashed (an aggregate counter outlives an erased contact: it must not
  name its network or domain); the counter items expire (TTL) an hour after their window."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from leadflow.kernel.settings import SignupBudget
from leadflow.platform.dynamo import update_op


def _hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def recipient_domain_key(email: str) -> str:
    """The recipient's domain as a budget key: hashed (a personal domain names its owner)."""
    return _hashed(email.rsplit("@", 1)[-1].lower())


class SignupBudgets:
    """Hourly counters ``BUDGET#<form>#src#<hash>`` / ``BUDGET#<form>#dom#<hash>`` with sort key
    ``H#<yyyymmddhh>`` in the idempotency table (TTL ``expires_at``): conditional atomic increments
    written in the sign-up's transaction."""

    def __init__(self, table: str) -> None:
        self._table = table

    @staticmethod
    def window(now: datetime) -> tuple[str, int]:
        """The hour's sort key and the seconds left in it."""
        start = now.replace(minute=0, second=0, microsecond=0)
        left = int((start + timedelta(hours=1) - now).total_seconds()) or 1
        return f"H#{start:%Y%m%d%H}", left

    def _op(self, pk: str, limit: int, now: datetime) -> dict[str, Any]:
        sk, left = self.window(now)
        return update_op(
            self._table,
            {"pk": pk, "sk": sk},
            add={"n": 1},
            sets={"expires_at": int(now.timestamp()) + left + 3600},
            condition="attribute_not_exists(n) OR n < :limit",
            values_={"limit": limit},
        )

    def ops(
        self, form_id: str, budget: SignupBudget, *, network: str | None, email: str, now: datetime
    ) -> list[dict[str, Any]]:
        """The increments one sign-up spends: its source network's (when known) and its domain's."""
        ops = []
        if network:
            ops.append(self._op(f"BUDGET#{form_id}#src#{_hashed(network)}", budget.per_source_per_hour, now))
        ops.append(
            self._op(
                f"BUDGET#{form_id}#dom#{recipient_domain_key(email)}",
                budget.per_recipient_domain_per_hour,
                now,
            )
        )
        return ops
