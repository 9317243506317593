"""The orchestration cost model (``leadflow.journeys.cost``) on synthetic histories and calls, and
what the compiler's output costs per contact."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadflow.journeys import compile_journey, load_journey, parse_journey
from leadflow.journeys.cost import Prices, Usage, call_units, gb_seconds, history_usage, item_size, read_units

ROOT = Path(__file__).resolve().parents[2]


def entered(name: str, kind: str = "TaskStateEntered") -> dict[str, Any]:
    return {"type": kind, "stateEnteredEventDetails": {"name": name}}


def scheduled(resource: str = "invoke") -> dict[str, Any]:
    return {
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {"resourceType": "lambda", "resource": resource},
    }


WELCOME_HISTORY = [
    {"type": "ExecutionStarted"},
    entered("Send email: welcome"),
    scheduled(),
    {"type": "TaskSucceeded"},
    {"type": "TaskStateExited"},
    entered("Wait 2 days", "WaitStateEntered"),
    {"type": "WaitStateExited"},
    entered("Evaluate: Opened or clicked the welcome email?"),
    scheduled(),
    {"type": "TaskFailed"},  # a transient failure, retried: two invocations
    scheduled(),
    {"type": "TaskSucceeded"},
    entered("Opened or clicked the welcome email?", "ChoiceStateEntered"),
    entered("Send email: nudge follow-up"),
    scheduled(),
    entered("Journey complete"),
    scheduled(),
    {"type": "ExecutionSucceeded"},
]


def test_history_counts_every_state_entered_and_every_lambda_invocation() -> None:
    usage = history_usage(WELCOME_HISTORY)
    assert (usage.transitions, usage.lambda_calls) == (6, 5)
    # a callback task is one transition and one invocation however long it waits
    waiting = history_usage([entered("Wait for first report"), scheduled("invoke.waitForTaskToken")])
    assert (waiting.transitions, waiting.lambda_calls) == (1, 1)


def test_prices_add_up_per_email() -> None:
    usage = Usage(transitions=4, lambda_calls=3, gb_seconds=0.15, write_units=10, read_units=6, emails=1)
    expected = 4 * 0.000025 + 3 * 0.0000002 + 0.15 * 0.0000166667 + 10 * 0.00000125 + 6 * 0.00000025
    assert usage.orchestration_cost() == pytest.approx(expected)
    assert usage.email_cost() == pytest.approx(0.0001)
    assert usage.vs_ses() == pytest.approx(expected / 0.0001)
    assert usage.per_email() == 4
    assert (usage + usage).transitions == 8
    assert Usage().vs_ses() == float("inf")
    assert Usage(transitions=4, emails=1).vs_ses(Prices(transition=0.0)) == 0


def test_gb_seconds_round_the_billed_duration_up_to_the_millisecond() -> None:
    assert gb_seconds(99.2, 512) == pytest.approx(0.05)
    assert gb_seconds(1000, 1024) == pytest.approx(1.0)


def test_dynamodb_units_follow_item_sizes_transactions_and_consistency() -> None:
    small = {"pk": {"S": "C#1"}, "sk": {"S": "J#welcome"}, "n": {"N": "12"}}
    assert item_size(small) == len("pk") + 3 + len("sk") + 9 + len("n") + 2
    big = {"pk": {"S": "C#1"}, "body": {"S": "x" * 3000}}
    assert call_units("PutItem", {"TableName": "t", "Item": big}, {}) == (3.0, 0.0)
    # a put into a table with one global index writes the index too
    assert call_units("PutItem", {"TableName": "events", "Item": small}, {}, {"events": 1}) == (2.0, 0.0)
    txn = {"TransactItems": [{"Put": {"TableName": "events", "Item": small}}, {"Update": {"TableName": "c"}}]}
    assert call_units("TransactWriteItems", txn, {}, {"events": 1}) == (2 * 2 + 2, 0.0)
    assert call_units("UpdateItem", {}, {"Attributes": big}) == (3.0, 0.0)
    assert call_units("GetItem", {"ConsistentRead": True}, {"Item": small}) == (0.0, 1.0)
    assert call_units("GetItem", {}, {}) == (0.0, 0.5)
    query = {"Items": [big, big]}
    assert call_units("Query", {}, query) == (0.0, read_units(2 * item_size(big), consistent=False))
    batch = {"RequestItems": {"c": {"Keys": [{}, {}], "ConsistentRead": True}}}
    assert call_units("BatchGetItem", batch, {"Responses": {"c": [small]}}) == (0.0, 1.5)


def transitions_per_contact(text: str, path: list[str]) -> int:
    """States a contact passes through when it takes ``path`` (state names in order), checked
    against the compiled definition: each must follow the previous one."""
    states = json.loads(compile_journey(parse_journey(yaml.safe_load(text), "t.yaml")))["States"]
    for before, after in itertools.pairwise(path):
        state = states[before]
        targets = {state.get("Next"), state.get("Default")} | {c["Next"] for c in state.get("Choices", [])}
        targets |= {c["Next"] for c in state.get("Catch", [])}
        assert after in targets, (before, after)
    assert states[path[-1]].get("End") is True
    return len(path)


def test_the_welcome_series_costs_three_transitions_for_two_emails() -> None:
    text = (ROOT / "journeys" / "welcome.yaml").read_text()
    path = [
        "Send email: welcome",
        "Wait 2 days",
        # decides, sends the follow-up of its path and leaves the journey: one task, no Choice
        "Evaluate: Opened or clicked the welcome email?",
    ]
    assert transitions_per_contact(text, path) == 3
    assert load_journey(ROOT / "journeys" / "welcome.yaml").id == "welcome"


def test_a_wait_for_is_one_transition_whichever_way_it_ends() -> None:
    text = """
id: t
name: T
entry: {event: trial_started}
steps:
  - wait_for:
      id: used
      event: product_used
      timeout: {days: 3}
      check_every: {hours: 1}
      on_event: [{update_contact: {add_tags: [used]}}]
      on_timeout: [{random_split: {name: Tips, paths: [{weight: 1, steps: [{send_email: {id: a, template: welcome}}]}, {weight: 1, steps: [{send_email: {id: b, template: welcome}}]}]}}]
"""
    # the last steps leave the journey themselves
    assert transitions_per_contact(text, ["Wait for product_used", "Update contact: tag used"]) == 2
    # a split of one send per path is the send task itself
    assert transitions_per_contact(text, ["Wait for product_used", "Split: Tips"]) == 2
