"""Folded decisions run exactly once: a branch decided and acted on by one task, a holdout and a
subject split folded into the final send. The tasks are invoked with the payloads of the compiled
shipped journeys, twice (a Step Functions retry), with the facts changing in between."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from leadflow.journeys import compile_journey, load_journey
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import ROOT, LocalSystem
from leadflow.platform.tables import keys
from tests.integration.conftest import sign_up

SEND = "leadflow-local-send"


def task_payload(journey: str, state: str, contact_id: str, execution: str, **paths: Any) -> dict[str, Any]:
    """The state's Lambda payload as Step Functions builds it for this contact and execution."""
    states = json.loads(compile_journey(load_journey(ROOT / "journeys" / f"{journey}.yaml")))["States"]
    payload: dict[str, Any] = {}
    known = {
        "$.contact_id": contact_id,
        "$$.Execution.Id": f"arn:aws:states:us-east-1:123456789012:execution:{journey}:{execution}",
        "$$.Execution.StartTime": "2026-01-05T08:00:00Z",
        "$.round.n": 0,
        "$.entry_event_id": None,
        **paths,
    }
    for key, value in states[state]["Parameters"]["Payload"].items():
        payload[key.removesuffix(".$")] = known[value] if key.endswith(".$") else value
    return payload


def offer_payload(
    system: LocalSystem, email: str, visitor_id: str, execution: str, holdout: float, split: float
) -> dict[str, Any]:
    """trial-nurture's final send (its holdout and subject split folded in) for a new contact whose
    holdout and split buckets are the given numbers."""
    contact = sign_up(system, email, visitor_id=visitor_id)
    system.settle()
    buckets = {"$.buckets.holdout_1": holdout, "$.buckets.random_split_2": split}
    return task_payload("trial-nurture", "Holdout: offer holdout", contact, execution, **buckets)


def outbox_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if address in m["to"]]


def message(system: LocalSystem, message_id: str) -> dict[str, Any]:
    from leadflow.platform.dynamo import deserialize

    item = (
        system.client("dynamodb")
        .get_item(
            TableName="leadflow-local-messages",
            Key={"pk": {"S": keys.message(message_id)}, "sk": {"S": keys.MSG}},
        )
        .get("Item")
    )
    return deserialize(item) if item else {}


def test_a_retried_branch_task_keeps_its_decision_and_never_sends_both_emails(system: LocalSystem) -> None:
    """The welcome follow-up: decided 'not opened' and the nudge sent; the contact opens the welcome
    email before the retry; the retry takes the recorded path (nudge, duplicate): no engaged email."""
    contact = sign_up(system, "fold-branch@example.com", visitor_id="v-visitor-0101")
    system.settle()
    address = "fold-branch@example.com"
    welcome = task_payload("welcome", "Send email: welcome", contact, "fold-1")
    sent_before = len(outbox_to(system, address))
    assert system.handlers[SEND](welcome, lambda_context(SEND))["status"] == "sent"
    html = outbox_to(system, address)[sent_before]["html"]
    decide = task_payload("welcome", "Evaluate: Opened or clicked the welcome email?", contact, "fold-1")
    first = system.handlers[SEND](decide, lambda_context(SEND))
    assert (first["path"], first["status"]) == ("else", "sent")
    # the contact opens the fold-1 welcome email now (its open pixel)
    for url in re.findall(r'src="([^"]+/t/o/[^"]+)"', html):
        system.invoke_http("GET", urlsplit(url.replace("&amp;", "&")).path)
    system.settle()
    before = len(outbox_to(system, address))
    again = system.handlers[SEND](decide, lambda_context(SEND))
    assert again == {**first, "status": "duplicate", "reason": "sent"}
    assert len(outbox_to(system, address)) == before
    # reports still see which follow-up went out: the message carries the path's own step id
    assert message(system, first["message_id"])["step_id"] == "followup_nudge"


def test_a_retried_subject_split_sends_one_variant_with_its_own_step_id(system: LocalSystem) -> None:
    """trial-nurture's offer: the holdout and the subject A/B test folded into the final send."""
    payload = offer_payload(
        system, "fold-split@example.com", "v-visitor-0102", "fold-2", holdout=0.5, split=0.75
    )
    # the test is about the fold, not the send window of the virtual clock's moment
    payload["journey"]["settings"].pop("send_window")
    payload["journey"]["settings"].pop("quiet_hours")
    before = len(outbox_to(system, "fold-split@example.com"))
    first = system.handlers[SEND](payload, lambda_context(SEND))
    second = system.handlers[SEND](payload, lambda_context(SEND))
    assert first["status"] == "sent"
    assert first["decisions"] == {"holdout_1": {"path": "treated"}, "random_split_2": {"path": "path2"}}
    assert second["status"] == "duplicate"
    assert second["message_id"] == first["message_id"]
    sent = outbox_to(system, "fold-split@example.com")[before:]
    assert len(sent) == 1
    assert sent[0]["subject"].endswith("keep your Northwind reports")  # the personal subject
    assert message(system, first["message_id"])["step_id"] == "offer_personal"


def test_a_held_out_contact_gets_nothing_and_leaves_held_out(system: LocalSystem) -> None:
    payload = offer_payload(
        system, "fold-held@example.com", "v-visitor-0103", "fold-3", holdout=0.05, split=0.2
    )
    before = len(outbox_to(system, "fold-held@example.com"))
    result = system.handlers[SEND](payload, lambda_context(SEND))
    assert (result["status"], result["path"], result["message_id"]) == ("held_out", "held_out", None)
    assert result["decisions"] == {"holdout_1": {"path": "held_out"}}
    assert len(outbox_to(system, "fold-held@example.com")) == before


def test_the_frequency_cap_is_one_item_counted_once_per_message(system: LocalSystem) -> None:
    """One conditional put per reservation on ONE item per contact and channel: a retried
    reservation counts once, a full period refuses, a new day starts from zero (yesterday's count
    dropped), and a reservation that lost a race reads again and counts on top of the winner."""
    from leadflow.journeys.runtime.enrollments import CapExceeded, JourneyStore

    client = system.client("dynamodb")
    clock = {"now": 1_767_600_000.0}
    store = JourneyStore(
        client,
        contacts_table="leadflow-local-contacts",
        events_table="leadflow-local-events",
        now=lambda: clock["now"],
    )
    day1 = {"D#2026-01-05": 2, "W#2026-W02": 3}
    assert store.reserve("c-cap", "email", "m1", day1)
    assert store.reserve("c-cap", "email", "m1", day1)  # the retry: counted once
    assert store.cap_counts("c-cap", "email", ["D#2026-01-05", "W#2026-W02"]) == {
        "D#2026-01-05": 1,
        "W#2026-W02": 1,
    }
    assert store.reserve("c-cap", "email", "m2", day1)
    with pytest.raises(CapExceeded):
        store.reserve("c-cap", "email", "m3", day1)
    clock["now"] += 86400
    day2 = {"D#2026-01-06": 2, "W#2026-W02": 5}
    # another reservation wins between this one's read and its write: it reads again
    real_put = client.put_item
    raced = {"done": False}

    def racing_put(**kwargs: Any) -> Any:
        if not raced["done"]:
            raced["done"] = True
            store.reserve("c-cap", "email", "m-other", day2)
        return real_put(**kwargs)

    client.put_item = racing_put
    try:
        assert store.reserve("c-cap", "email", "m4", day2)
    finally:
        client.put_item = real_put
    counts = store.cap_counts("c-cap", "email", ["D#2026-01-05", "D#2026-01-06", "W#2026-W02"])
    assert counts == {"D#2026-01-05": 0, "D#2026-01-06": 2, "W#2026-W02": 4}
    with pytest.raises(CapExceeded):
        store.reserve("c-cap", "email", "m5", day2)  # the day is full (2)
    items = client.query(
        TableName="leadflow-local-contacts",
        KeyConditionExpression="pk = :pk AND begins_with(sk, :cap)",
        ExpressionAttributeValues={":pk": {"S": keys.contact("c-cap")}, ":cap": {"S": "CAP"}},
    )["Items"]
    assert [i["sk"]["S"] for i in items] == ["CAP#email"]
