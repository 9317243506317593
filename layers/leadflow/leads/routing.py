"""Routing: who in sales owns a lead handed over (``routing`` in ``leads.yaml``).

The first assignment rule whose ``when`` holds on the contact (the journey condition language, with
the current decayed score) picks the owner: ``fixed`` the first of its owners, ``round_robin`` the
next in turn. The turn is an atomic counter item per rule in the contacts table
(``ROUTING#<rule id>``/``RR``, ``ADD n 1``): concurrent hand-offs each get their own number, so
owners are dealt evenly without a read-modify-write race. No rule holds: ``default_owner``
(which may be None: the lead goes out unassigned).

One hand-off picks its owner once: ``Assignments`` keeps the pick per journey execution (an
idempotency item), so a retried step — or the reminder of the same execution — reuses it and every
copy of the hand-off names the same owner. A retry may advance a round-robin counter once more
without using the number; that only shifts whose turn is next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from leadflow.journeys.conditions import Facts, evaluate
from leadflow.leads.model import AssignmentRule, LeadModel, Routing
from leadflow.leads.scoring import current_score
from leadflow.platform.dynamo import deserialize, put_if, put_op, serialize, values

DEFAULT_RULE = "default"
"""The ``rule`` of an assignment made by ``routing.default_owner``."""
COUNTER_SK = "RR"


class Assignment(BaseModel):
    """The owner of a handed-over lead and the rule that chose it (``default`` for the default
    owner); ``owner`` None: no rule held and there is no default owner."""

    model_config = ConfigDict(frozen=True)

    owner: str | None
    rule: str | None


def routing_facts(profile: Mapping[str, Any], now: datetime, model: LeadModel) -> Facts:
    """Facts of a contact for routing conditions: the profile with its current (decayed) score."""
    return Facts(profile=profile, now=now, score=current_score(profile, now, model))


def matching_rule(routing: Routing, facts: Facts) -> AssignmentRule | None:
    """The first assignment rule whose ``when`` holds (a rule without ``when`` always holds)."""
    for rule in routing.assignment:
        if rule.when is None or evaluate(rule.when, facts):
            return rule
    return None


def counter_key(rule_id: str) -> dict[str, Any]:
    return serialize({"pk": f"ROUTING#{rule_id}", "sk": COUNTER_SK})


class OwnerPicker:
    """Picks an owner by the lead model's routing rules (one counter increment per round-robin pick)."""

    def __init__(
        self,
        *,
        client: Any,
        contacts_table: str,
        model: Callable[[], LeadModel],
    ) -> None:
        self._client = client
        self._table = contacts_table
        self._model = model

    def pick(self, profile: Mapping[str, Any], now: datetime) -> Assignment:
        model = self._model()
        rule = matching_rule(model.routing, routing_facts(profile, now, model))
        if rule is None:
            owner = model.routing.default_owner
            return Assignment(owner=owner, rule=DEFAULT_RULE if owner else None)
        if rule.strategy == "fixed" or len(rule.owners) == 1:
            return Assignment(owner=rule.owners[0], rule=rule.id)
        turn = self.next_turn(rule.id)
        return Assignment(owner=rule.owners[(turn - 1) % len(rule.owners)], rule=rule.id)

    def next_turn(self, rule_id: str) -> int:
        """1, 2, 3... per rule, atomically (each caller gets its own number)."""
        resp = self._client.update_item(
            TableName=self._table,
            Key=counter_key(rule_id),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues=values(one=1),
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["n"]["N"])


class Assignments:
    """The owner picked for one hand-off (keyed by the journey execution), kept in the idempotency
    table so retries and reminders reuse it. ``made_by`` is the step that picked it."""

    def __init__(
        self,
        *,
        client: Any,
        idempotency_table: str,
        picker: OwnerPicker,
        ttl_days: int = 400,
        now: Callable[[], float],
    ) -> None:
        self._client = client
        self._table = idempotency_table
        self._picker = picker
        self._ttl_s = ttl_days * 86400
        self._epoch = now

    def _key(self, handoff_key: str) -> dict[str, Any]:
        return serialize({"pk": f"ASSIGN#{handoff_key}", "sk": "ASSIGNMENT"})

    def get(self, handoff_key: str) -> tuple[Assignment, str] | None:
        resp = self._client.get_item(TableName=self._table, Key=self._key(handoff_key), ConsistentRead=True)
        if "Item" not in resp:
            return None
        item = deserialize(resp["Item"])
        return Assignment(owner=item.get("owner"), rule=item.get("rule")), str(item.get("made_by", ""))

    def assign(
        self, handoff_key: str, profile: Mapping[str, Any], now: datetime, made_by: str
    ) -> tuple[Assignment, bool]:
        """The hand-off's assignment and whether ``made_by`` is the step that made it (and so
        records it); an earlier pick for the key is returned unchanged."""
        found = self.get(handoff_key)
        if found is not None:
            return found[0], found[1] == made_by
        picked = self._picker.pick(profile, now)
        item = {
            "pk": f"ASSIGN#{handoff_key}",
            "sk": "ASSIGNMENT",
            "owner": picked.owner,
            "rule": picked.rule,
            "made_by": made_by,
            "expires_at": int(self._epoch()) + self._ttl_s,
        }
        if put_if(self._client, put_op(self._table, item, "attribute_not_exists(pk)")):
            return picked, True
        found = self.get(handoff_key)  # a concurrent attempt won: use its pick
        assert found is not None
        return found[0], found[1] == made_by
