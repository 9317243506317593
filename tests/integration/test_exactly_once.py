"""Nothing lost, nothing doubled: redelivered stream batches, retried send steps, repeated events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leadflow import wiring
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem
from tests.integration.conftest import profile, sign_up, stream_records

SCORE = "leadflow-local-score"
TRIGGER = "leadflow-local-trigger"
SEND = "leadflow-local-send"


def outbox_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if address in m["to"]]


def test_redelivered_stream_batch_changes_no_score_and_starts_no_second_journey(system: LocalSystem) -> None:
    """Given a sign-up processed once, when the whole stream is delivered again, nothing changes."""
    contact = sign_up(system, "score@example.com")
    system.settle()
    first_score = int(profile(system, contact)["score"]["N"])
    assert first_score == 10  # form_submitted (newsletter-signup in leads.yaml)
    executions = [e for e in system.executions() if contact in e["name"]]
    assert len(executions) == 1

    batch = {"Records": stream_records(system)}
    for name in (SCORE, TRIGGER):
        response = system.handlers[name](batch, lambda_context(name))
        assert response == {"batchItemFailures": []}
    system.settle()
    assert int(profile(system, contact)["score"]["N"]) == first_score
    assert len([e for e in system.executions() if contact in e["name"]]) == 1
    assert len(outbox_to(system, "score@example.com")) == 1


def test_failed_records_are_reported_and_applied_once_on_retry(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the contacts table cannot be written, the score batch reports the failing record
    (partial batch response) and passes the rest; once the table is back, the retried record is
    applied exactly once however often it is delivered."""
    system.invoke_http("GET", "/t/p.gif", query="vid=v-anonymous-0001&url=https%3A%2F%2Fexample.com%2F")
    contact = sign_up(system, "retry@example.com", visitor_id="v-visitor-0002")
    records = stream_records(system)
    [page_view] = [
        r for r in records if r["dynamodb"]["NewImage"].get("visitor_id", {}).get("S") == "v-anonymous-0001"
    ]
    [form] = [
        r
        for r in records
        if r["dynamodb"]["NewImage"].get("contact_id", {}).get("S") == contact
        and r["dynamodb"]["NewImage"]["type"]["S"] == "form_submitted"
    ]

    def unreachable(items: list[dict[str, Any]]) -> None:
        raise ClientError(
            {"Error": {"Code": "ResourceNotFoundException", "Message": "gone"}}, "TransactWriteItems"
        )

    monkeypatch.setattr(system.modules["score"].service._store, "transact", unreachable)
    failed = system.handlers[SCORE]({"Records": [page_view, form]}, lambda_context(SCORE))
    assert failed == {"batchItemFailures": [{"itemIdentifier": form["dynamodb"]["SequenceNumber"]}]}
    with pytest.raises(Exception, match="All records failed"):  # the whole batch failed: Lambda retries it
        system.handlers[SCORE]({"Records": [form]}, lambda_context(SCORE))
    monkeypatch.undo()
    for _ in range(3):
        assert system.handlers[SCORE]({"Records": [form]}, lambda_context(SCORE)) == {"batchItemFailures": []}
    assert int(profile(system, contact)["score"]["N"]) == 10


def test_malformed_stream_record_is_rejected_not_retried(system: LocalSystem) -> None:
    bad = {
        "eventID": "x",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"SequenceNumber": "1", "NewImage": {"pk": {"S": "C#x"}, "type": {"N": "5"}}},
    }
    assert system.handlers[SCORE]({"Records": [bad]}, lambda_context(SCORE)) == {"batchItemFailures": []}
    assert system.handlers[TRIGGER]({"Records": [bad]}, lambda_context(TRIGGER)) == {"batchItemFailures": []}


def _send_payload(
    contact: str,
    execution: str,
    step: str = "welcome",
    template: str = "welcome",
    exit_on_unsubscribe: bool = True,
) -> dict[str, Any]:
    """A journey send task's payload, as the compiled state machine builds it."""
    return {
        "action": "send_email",
        "journey_id": "welcome",
        "step_id": step,
        "step": {"template": template, "purpose": "marketing", "channel": "email"},
        "journey": {"exit": {"unsubscribed": exit_on_unsubscribe}},
        "contact_id": contact,
        "execution_id": execution,
    }


def test_a_retried_send_step_never_sends_twice(system: LocalSystem) -> None:
    contact = sign_up(system, "twice@example.com", visitor_id="v-visitor-0003")
    system.settle()
    before = len(outbox_to(system, "twice@example.com"))
    payload = _send_payload(contact, "arn:aws:states:us-east-1:123456789012:execution:manual:retry-1")
    first = system.handlers[SEND](payload, lambda_context(SEND))
    second = system.handlers[SEND](payload, lambda_context(SEND))
    assert first["status"] == "sent"
    assert second == {"message_id": first["message_id"], "status": "duplicate", "reason": "sent"}
    assert len(outbox_to(system, "twice@example.com")) == before + 1


def test_a_throttled_send_is_retried_and_sent_once(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = sign_up(system, "throttle@example.com", visitor_id="v-visitor-0004")
    system.settle()
    before = len(outbox_to(system, "throttle@example.com"))
    service = system.modules["send"].sender
    real_send = service._ses.send_raw_email
    calls = {"n": 0}

    def throttled_once(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}, "SendRawEmail"
            )
        return real_send(**kwargs)

    monkeypatch.setattr(service._ses, "send_raw_email", throttled_once)
    payload = _send_payload(contact, "arn:aws:states:us-east-1:123456789012:execution:manual:throttle-1")
    with pytest.raises(Exception, match="Maximum sending rate") as info:
        system.handlers[SEND](payload, lambda_context(SEND))
    assert type(info.value).__name__ == "SendThrottled"
    assert system.handlers[SEND](payload, lambda_context(SEND))["status"] == "sent"
    assert system.handlers[SEND](payload, lambda_context(SEND))["status"] == "duplicate"
    assert len(outbox_to(system, "throttle@example.com")) == before + 1


def _failing_writes(system: LocalSystem, monkeypatch: pytest.MonkeyPatch, operation: str, times: int) -> None:
    """The send function's next ``times`` DynamoDB ``operation`` calls fail after the SDK's own
    retries (what a throughput or network fault leaves)."""
    ddb = wiring.client("dynamodb")  # the client the functions use (one per process)
    real = getattr(ddb, operation)
    left = {"n": times}

    def failing(**kwargs: Any) -> Any:
        if left["n"] > 0:
            left["n"] -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}},
                operation,
            )
        return real(**kwargs)

    monkeypatch.setattr(ddb, operation, failing)


def _message(system: LocalSystem, message_id: str) -> dict[str, Any]:
    [item] = [m for m in system._scan("messages") if m.get("message_id") == message_id]
    return item


def test_a_rejected_email_is_recorded_as_rejected_even_when_a_write_fails_in_between(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES refuses the message for good (MessageRejected): it is recorded as skipped with reason
    ``rejected_by_provider`` and an ``email_skipped`` event (reports count it), never counted as
    sent and never tried again — even when the first writes of that outcome fail."""
    contact = sign_up(system, "rejected@example.com", visitor_id="v-visitor-0006")
    system.settle()
    before = len(outbox_to(system, "rejected@example.com"))
    service = system.modules["send"].sender
    calls = {"n": 0}

    def rejected(**kwargs: Any) -> Any:
        calls["n"] += 1
        raise ClientError({"Error": {"Code": "MessageRejected", "Message": "Email rejected"}}, "SendRawEmail")

    monkeypatch.setattr(service._ses, "send_raw_email", rejected)
    _failing_writes(system, monkeypatch, "transact_write_items", 2)
    monkeypatch.setattr("leadflow.messaging.sending.time.sleep", lambda _s: None)
    payload = _send_payload(contact, "arn:aws:states:us-east-1:123456789012:execution:manual:reject-1")
    first = system.handlers[SEND](payload, lambda_context(SEND))
    assert (first["status"], first["reason"]) == ("skipped", "rejected_by_provider")
    again = system.handlers[SEND](payload, lambda_context(SEND))  # a retry of the step
    assert again["status"] == "duplicate"
    assert calls["n"] == 1
    item = _message(system, first["message_id"])
    assert (item["status"], item["reason"]) == ("skipped", "rejected_by_provider")
    events = [r["dynamodb"]["NewImage"] for r in stream_records(system)]
    skipped = [e for e in events if e.get("message_id", {}).get("S") == first["message_id"]]
    assert [e["type"]["S"] for e in skipped] == ["email_skipped"]
    assert len(outbox_to(system, "rejected@example.com")) == before


def test_a_sent_email_is_recorded_as_sent_even_when_a_write_fails_after_ses_accepted_it(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES accepted the email, then the write of ``sent`` + ``email_sent`` fails once: it is
    written again in the same invocation (a retry of the step could not tell it was sent)."""
    contact = sign_up(system, "recorded@example.com", visitor_id="v-visitor-0007")
    system.settle()
    before = len(outbox_to(system, "recorded@example.com"))
    _failing_writes(system, monkeypatch, "transact_write_items", 1)
    monkeypatch.setattr("leadflow.messaging.sending.time.sleep", lambda _s: None)
    payload = _send_payload(contact, "arn:aws:states:us-east-1:123456789012:execution:manual:record-1")
    first = system.handlers[SEND](payload, lambda_context(SEND))
    assert first["status"] == "sent"
    assert _message(system, first["message_id"])["status"] == "sent"
    events = [r["dynamodb"]["NewImage"] for r in stream_records(system)]
    assert [e["type"]["S"] for e in events if e.get("message_id", {}).get("S") == first["message_id"]] == [
        "email_sent"
    ]
    assert len(outbox_to(system, "recorded@example.com")) == before + 1


def test_unsubscribed_contact_exits_the_journey_or_is_skipped_at_send_time(system: LocalSystem) -> None:
    """Given an unsubscribed contact, a journey that exits on unsubscribe ends (ContactExited) before
    the send; one that does not exit on it still never mails them: the send is skipped."""
    contact = sign_up(system, "gone@example.com", visitor_id="v-visitor-0005")
    system.settle()
    system.client("dynamodb").update_item(
        TableName="leadflow-local-contacts",
        Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET consent_email = :r",
        ExpressionAttributeValues={":r": {"S": "revoked"}},
    )
    execution = "arn:aws:states:us-east-1:123456789012:execution:manual:gone-1"
    with pytest.raises(Exception, match="unsubscribed") as exited:
        system.handlers[SEND](_send_payload(contact, execution), lambda_context(SEND))
    assert type(exited.value).__name__ == "ContactExited"
    payload = _send_payload(contact, execution, exit_on_unsubscribe=False)
    result = system.handlers[SEND](payload, lambda_context(SEND))
    assert result["status"] == "skipped"
    assert result["reason"] == "unsubscribed"
    item = system.client("dynamodb").get_item(
        TableName="leadflow-local-messages",
        Key={"pk": {"S": f"M#{result['message_id']}"}, "sk": {"S": "MSG"}},
    )["Item"]
    assert (item["status"]["S"], item["reason"]["S"]) == ("skipped", "unsubscribed")


def test_invalid_send_payload_is_a_clear_error(system: LocalSystem) -> None:
    contact = sign_up(system, "badtemplate@example.com", visitor_id="v-visitor-0099")
    with pytest.raises(Exception, match="template"):
        system.handlers[SEND](_send_payload(contact, "e1", template="../etc/passwd"), lambda_context(SEND))


def test_repeated_client_event_id_is_stored_once(system: LocalSystem) -> None:
    body = json.dumps(
        {
            "type": "purchase",
            "email": "buyer@example.com",
            "event_id": "order-1001",
            "properties": {"amount": 49.5},
        }
    )
    replies = [
        system.invoke_http(  # a purchase is a server event: the admin route, with credentials
            "POST",
            "/admin/events",
            headers={"content-type": "application/json", "authorization": f"Bearer {system.admin_key}"},
            body=body,
        )
        for _ in range(3)
    ]
    assert [r["statusCode"] for r in replies] == [202, 202, 202]
    assert [json.loads(r["body"])["duplicate"] for r in replies] == [False, True, True]
    purchases = [r for r in stream_records(system) if r["dynamodb"]["NewImage"]["type"]["S"] == "purchase"]
    assert len(purchases) == 1
    assert purchases[0]["dynamodb"]["NewImage"]["properties"]["M"]["amount"]["N"] == "49.5"
