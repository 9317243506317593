"""Messages a marketer can trust: SES feedback suppresses, SMS through SNS, STOP opt-outs, double
opt-in, transactional vs marketing emails, do-not-contact — on the local system (moto)."""

from __future__ import annotations

import email
import json
import re
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leadflow.contacts.store import ContactStore
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem
from leadflow.messaging.render import EmailRenderer
from tests.integration.conftest import profile

SEND = "leadflow-local-send"
CONTACTS = "leadflow-local-contacts"
EVENTS = "leadflow-local-events"
MESSAGES = "leadflow-local-messages"


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False) as local:
        yield local


_counter = iter(range(1, 10_000))


def sign_up(
    system: LocalSystem,
    address: str,
    *,
    form: str = "newsletter",
    phone: str | None = None,
    sms_consent: bool = False,
    first_name: str = "Ada",
) -> str:
    body: dict[str, Any] = {"email": address, "first_name": first_name, "consent": True}
    if phone is not None:
        body |= {"phone": phone, "sms_consent": sms_consent}
    reply = system.invoke_http(
        "POST", f"/forms/{form}", headers={"content-type": "application/json"}, body=json.dumps(body)
    )
    assert reply["statusCode"] == 201, reply
    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


def send(
    system: LocalSystem,
    contact: str,
    *,
    action: str = "send_email",
    template: str = "welcome",
    purpose: str = "marketing",
) -> dict[str, Any]:
    """One journey send task, as the compiled state machine calls the send function."""
    n = next(_counter)
    payload = {
        "action": action,
        "journey_id": "messages-test",
        "step_id": f"step-{n}",
        "step": {"template": template, "purpose": purpose, "channel": action.removeprefix("send_")},
        "journey": {"exit": {"unsubscribed": False}},
        "contact_id": contact,
        "execution_id": f"arn:aws:states:us-east-1:123456789012:execution:messages-test:{contact}-{n}",
    }
    result: dict[str, Any] = system.handlers[SEND](payload, lambda_context(SEND))
    return result


def emails_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if m["channel"] == "email" and address in m["to"]]


def sms_to(system: LocalSystem, phone: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if m["channel"] == "sms" and phone in m["to"]]


def message_item(system: LocalSystem, message_id: str) -> dict[str, Any]:
    from leadflow.platform.dynamo import deserialize

    item = system.client("dynamodb").get_item(
        TableName=MESSAGES, Key={"pk": {"S": f"M#{message_id}"}, "sk": {"S": "MSG"}}, ConsistentRead=True
    )["Item"]
    return deserialize(item)


def plain_profile(system: LocalSystem, contact: str) -> dict[str, Any]:
    from leadflow.platform.dynamo import deserialize

    return deserialize(profile(system, contact))


def events_of(system: LocalSystem, contact: str, event_type: str) -> list[dict[str, Any]]:
    from leadflow.platform.dynamo import deserialize

    items = system.client("dynamodb").query(
        TableName=EVENTS,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"C#{contact}"}},
        ConsistentRead=True,
    )["Items"]
    return [deserialize(i) for i in items if i["type"]["S"] == event_type]


def contacts_store(system: LocalSystem) -> ContactStore:
    return ContactStore(system.client("dynamodb"), CONTACTS)


def last_email(system: LocalSystem, address: str) -> dict[str, Any]:
    sent = emails_to(system, address)
    assert sent, f"nothing sent to {address}"
    return sent[-1]


# --- SES feedback ------------------------------------------------------------------------------


def test_permanent_bounce_suppresses_the_address_and_later_sends_skip(system: LocalSystem) -> None:
    contact = sign_up(system, "bounce@example.com")
    first = send(system, contact)
    assert first["status"] == "sent"
    sent = last_email(system, "bounce@example.com")

    bounce = system.ses_event(sent, "Bounce", bounce_type="Permanent")
    assert system.deliver_feedback(bounce) == {"outcomes": {"recorded": 1}}

    assert plain_profile(system, contact)["suppressed"] == "bounce"
    assert contacts_store(system).suppression("bounce@example.com") == "bounce"
    [event] = events_of(system, contact, "email_bounced")
    assert event["properties"]["bounce_type"] == "Permanent"
    assert event["message_id"] == first["message_id"]
    assert "bounced_at" in message_item(system, first["message_id"])

    later = send(system, contact)
    assert (later["status"], later["reason"]) == ("skipped", "suppressed_bounce")
    assert message_item(system, later["message_id"])["reason"] == "suppressed_bounce"
    transactional = send(system, contact, purpose="transactional")
    assert (transactional["status"], transactional["reason"]) == ("skipped", "suppressed_bounce")
    assert len(emails_to(system, "bounce@example.com")) == 1

    # the same notification delivered again (SNS is at-least-once) changes nothing
    before = plain_profile(system, contact)
    assert system.deliver_feedback(bounce) == {"outcomes": {"duplicate": 1}}
    assert system.deliver_feedback(json.dumps(bounce)) == {"outcomes": {"duplicate": 1}}
    assert len(events_of(system, contact, "email_bounced")) == 1
    assert plain_profile(system, contact) == before


def test_complaint_suppresses_even_a_later_sign_up_of_the_address(system: LocalSystem) -> None:
    contact = sign_up(system, "complainer@example.com")
    assert send(system, contact)["status"] == "sent"
    sent = last_email(system, "complainer@example.com")
    assert system.deliver_feedback(system.ses_event(sent, "Complaint")) == {"outcomes": {"recorded": 1}}
    assert plain_profile(system, contact)["suppressed"] == "complaint"
    [event] = events_of(system, contact, "email_complained")
    assert event["properties"]["feedback_type"] == "abuse"
    skipped = send(system, contact)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "suppressed_complaint")

    # the contact is erased (profile and email index), then the address signs up again
    ddb = system.client("dynamodb")
    ddb.delete_item(TableName=CONTACTS, Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}})
    ddb.delete_item(
        TableName=CONTACTS, Key={"pk": {"S": "EMAIL#complainer@example.com"}, "sk": {"S": "EMAIL"}}
    )
    again = sign_up(system, "Complainer@Example.com")
    assert again != contact
    assert "suppressed" not in plain_profile(system, again)
    resent = send(system, again)
    assert (resent["status"], resent["reason"]) == ("skipped", "suppressed_complaint")
    assert len(emails_to(system, "complainer@example.com")) == 1


def test_transient_bounce_is_recorded_not_suppressed(system: LocalSystem) -> None:
    contact = sign_up(system, "mailbox-full@example.com")
    assert send(system, contact)["status"] == "sent"
    sent = last_email(system, "mailbox-full@example.com")
    note = system.ses_event(sent, "Bounce", bounce_type="Transient")
    assert system.deliver_feedback(note) == {"outcomes": {"recorded": 1}}
    assert system.deliver_feedback(note) == {"outcomes": {"duplicate": 1}}
    [event] = events_of(system, contact, "email_bounced")
    assert event["properties"]["bounce_type"] == "Transient"
    assert "suppressed" not in plain_profile(system, contact)
    assert contacts_store(system).suppression("mailbox-full@example.com") is None
    assert send(system, contact)["status"] == "sent"

    # a later permanent bounce of the same message is another event, and it suppresses
    permanent = system.ses_event(sent, "Bounce", bounce_type="Permanent")
    assert system.deliver_feedback(permanent) == {"outcomes": {"recorded": 1}}
    assert len(events_of(system, contact, "email_bounced")) == 2
    assert plain_profile(system, contact)["suppressed"] == "bounce"


def test_delivery_is_recorded_on_the_contact_and_the_message(system: LocalSystem) -> None:
    contact = sign_up(system, "delivered@example.com")
    result = send(system, contact)
    sent = last_email(system, "delivered@example.com")
    assert system.deliver_feedback(system.ses_event(sent, "Delivery")) == {"outcomes": {"recorded": 1}}
    [event] = events_of(system, contact, "email_delivered")
    assert event["properties"]["ses_message_id"] == sent["id"]
    assert "delivered_at" in message_item(system, result["message_id"])
    assert "suppressed" not in plain_profile(system, contact)


def test_bounce_without_our_tag_still_suppresses_by_address(system: LocalSystem) -> None:
    contact = sign_up(system, "untagged@example.com")
    assert send(system, contact)["status"] == "sent"
    sent = dict(last_email(system, "untagged@example.com"), headers={})  # no leadflow_message_id tag
    note = system.ses_event(sent, "Bounce")
    assert "leadflow_message_id" not in note["mail"]["tags"]
    assert system.deliver_feedback(note) == {"outcomes": {"recorded": 1}}
    assert plain_profile(system, contact)["suppressed"] == "bounce"
    # an address nobody has (any more) is suppressed all the same
    stranger = dict(sent, to=["nobody-here@example.com"])
    assert system.deliver_feedback(system.ses_event(stranger, "Complaint")) == {
        "outcomes": {"unknown_recipient": 1}
    }
    assert contacts_store(system).suppression("nobody-here@example.com") == "complaint"


@pytest.mark.parametrize(
    "message",
    [
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"hello": "world"}),
        json.dumps({"eventType": "Bounce", "mail": {"messageId": "x"}}),  # no bounce object
        json.dumps({"eventType": "Bounce", "mail": {}, "bounce": {}}),
        json.dumps(
            {
                "eventType": "Complaint",
                "mail": {"messageId": "x"},
                "complaint": {"complainedRecipients": [{"emailAddress": "not an address\r\nBcc: x"}]},
            }
        ),
        json.dumps({"originationNumber": "call me maybe", "messageBody": "STOP"}),
    ],
)
def test_bad_notifications_are_counted_not_crashing(system: LocalSystem, message: str) -> None:
    assert system.deliver_feedback(message) == {"outcomes": {"rejected": 1}}


def test_a_bad_record_does_not_stop_the_good_one_in_the_same_event(system: LocalSystem) -> None:
    contact = sign_up(system, "batch@example.com")
    assert send(system, contact)["status"] == "sent"
    good = json.dumps(system.ses_event(last_email(system, "batch@example.com"), "Complaint"))
    name = "leadflow-local-feedback"
    event = {
        "Records": [
            {"EventSource": "aws:sns", "Sns": {"MessageId": "1", "Message": "{broken"}},
            {"EventSource": "aws:sns", "Sns": {"MessageId": "2"}},
            "not a record",
            {"EventSource": "aws:sns", "Sns": {"MessageId": "3", "Message": good}},
        ]
    }
    assert system.handlers[name](event, lambda_context(name)) == {"outcomes": {"rejected": 3, "recorded": 1}}
    assert system.handlers[name]({"unexpected": True}, lambda_context(name)) == {"outcomes": {"rejected": 1}}
    assert plain_profile(system, contact)["suppressed"] == "complaint"


def test_unrelated_ses_event_types_are_ignored(system: LocalSystem) -> None:
    contact = sign_up(system, "opened@example.com")
    assert send(system, contact)["status"] == "sent"
    note = system.ses_event(last_email(system, "opened@example.com"), "Open")
    assert system.deliver_feedback(note) == {"outcomes": {"ignored": 1}}


# --- SMS ---------------------------------------------------------------------------------------


@pytest.fixture
def published(system: LocalSystem) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every SMS publish the send function makes (observed on its boto3 client)."""
    calls: list[dict[str, Any]] = []
    client = system.modules["send"].sender._sns

    def observe(params: dict[str, Any], **_: Any) -> None:
        if "PhoneNumber" in params:
            calls.append(dict(params))

    client.meta.events.register("provide-client-params.sns.Publish", observe)
    yield calls
    client.meta.events.unregister("provide-client-params.sns.Publish", observe)


def test_marketing_sms_is_measured_attributed_and_carries_the_opt_out_hint(
    system: LocalSystem, published: list[dict[str, Any]]
) -> None:
    contact = sign_up(system, "sms@example.com", phone="+1 (415) 555-0101", sms_consent=True)
    assert plain_profile(system, contact)["phone"] == "+14155550101"
    assert plain_profile(system, contact)["consent_sms"] == "granted"
    result = send(system, contact, action="send_sms", template="sms-reminder")
    assert result["status"] == "sent"
    [sms] = sms_to(system, "+14155550101")
    assert sms["text"].startswith("Hi Ada, your Northwind Analytics webinar starts tomorrow")
    assert sms["text"].endswith("\nReply STOP to opt out")
    [call] = published
    assert call["PhoneNumber"] == "+14155550101"
    assert call["MessageAttributes"] == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Promotional"},
        "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "Northwind"},
    }  # LEADFLOW_SMS_ORIGINATION_NUMBER is empty locally: no origination number attribute
    item = message_item(system, result["message_id"])
    assert (item["status"], item["channel"], item["sms_encoding"], item["sms_segments"]) == (
        "sent",
        "sms",
        "GSM-7",
        1,
    )
    assert item["sns_message_id"]
    [event] = events_of(system, contact, "sms_sent")
    assert event["properties"]["segments"] == 1
    # a retried step never sends twice
    payload_again = send(system, contact, action="send_sms", template="sms-reminder")
    assert payload_again["status"] == "sent"  # another step: a second, deliberate message
    assert len(sms_to(system, "+14155550101")) == 2


def test_non_latin_sms_is_ucs2_and_counted_in_segments(
    system: LocalSystem, published: list[dict[str, Any]]
) -> None:
    name = "日本語" * 20  # 60 characters of UCS-2: with the template's text, several segments
    contact = sign_up(
        system, "sms-jp@example.com", phone="0044 20 7946 0958", sms_consent=True, first_name=name
    )
    result = send(system, contact, action="send_sms", template="sms-reminder")
    assert result["status"] == "sent"
    item = message_item(system, result["message_id"])
    assert item["sms_encoding"] == "UCS-2"
    [sms] = sms_to(system, "+442079460958")
    assert item["sms_segments"] == -(-len(sms["text"]) // 67)
    assert item["sms_segments"] >= 3
    assert name in sms["text"]


def test_sms_consent_and_phone_are_checked_at_send_time(
    system: LocalSystem, published: list[dict[str, Any]]
) -> None:
    no_consent = sign_up(system, "sms-noconsent@example.com", phone="+14155550102")
    result = send(system, no_consent, action="send_sms", template="sms-reminder")
    assert (result["status"], result["reason"]) == ("skipped", "no_sms_consent")
    assert message_item(system, result["message_id"])["reason"] == "no_sms_consent"

    # transactional: no SMS consent needed, no opt-out hint, Transactional type
    receipt = send(system, no_consent, action="send_sms", template="sms-reminder", purpose="transactional")
    assert receipt["status"] == "sent"
    [sms] = sms_to(system, "+14155550102")
    assert "STOP" not in sms["text"]
    assert published[-1]["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"

    no_phone = sign_up(system, "sms-nophone@example.com")
    result = send(system, no_phone, action="send_sms", template="sms-reminder", purpose="transactional")
    assert (result["status"], result["reason"]) == ("skipped", "invalid_phone")

    # a phone that is not E.164 (written by an import, say) is never handed to SNS
    system.client("dynamodb").update_item(
        TableName=CONTACTS,
        Key={"pk": {"S": f"C#{no_phone}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET phone = :p, consent_sms = :g",
        ExpressionAttributeValues={":p": {"S": "0171 1234567"}, ":g": {"S": "granted"}},
    )
    result = send(system, no_phone, action="send_sms", template="sms-reminder")
    assert (result["status"], result["reason"]) == ("skipped", "invalid_phone")
    assert len(published) == 1


def test_form_refuses_a_phone_that_is_not_a_phone_number(system: LocalSystem) -> None:
    reply = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers={"content-type": "application/json"},
        body=json.dumps({"email": "badphone@example.com", "consent": True, "phone": "+1 call me"}),
    )
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["fields"][0]["field"] == "phone"


def test_sms_over_ten_segments_is_a_template_error(
    system: LocalSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "long-sms").mkdir()
    (tmp_path / "long-sms" / "sms.txt").write_text("Hello {{ contact.first_name }}! " + "word " * 320)
    monkeypatch.setattr(system.modules["send"].sender, "_renderer", EmailRenderer(tmp_path))
    contact = sign_up(system, "sms-long@example.com", phone="+14155550103", sms_consent=True)
    with pytest.raises(Exception, match="segments") as info:
        send(system, contact, action="send_sms", template="long-sms")
    assert type(info.value).__name__ == "TemplateRenderError"
    assert sms_to(system, "+14155550103") == []


def test_throttled_sms_is_retryable_and_sent_once(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = sign_up(system, "sms-throttle@example.com", phone="+14155550104", sms_consent=True)
    sns = system.modules["send"].sender._sns
    real_publish = sns.publish
    calls = {"n": 0}

    def throttled_once(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Publish")
        return real_publish(**kwargs)

    monkeypatch.setattr(sns, "publish", throttled_once)
    payload = {
        "action": "send_sms",
        "journey_id": "messages-test",
        "step_id": "throttled",
        "step": {"template": "sms-reminder", "purpose": "marketing", "channel": "sms"},
        "journey": {"exit": {"unsubscribed": False}},
        "contact_id": contact,
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:messages-test:sms-throttle",
    }
    with pytest.raises(Exception, match="Rate exceeded") as info:
        system.handlers[SEND](payload, lambda_context(SEND))
    assert type(info.value).__name__ == "SendThrottled"
    assert system.handlers[SEND](payload, lambda_context(SEND))["status"] == "sent"
    assert system.handlers[SEND](payload, lambda_context(SEND))["status"] == "duplicate"
    assert len(sms_to(system, "+14155550104")) == 1


def test_stop_reply_revokes_sms_consent_once(system: LocalSystem) -> None:
    contact = sign_up(system, "stop@example.com", phone="+14155550105", sms_consent=True)
    assert send(system, contact, action="send_sms", template="sms-reminder")["status"] == "sent"

    assert system.sms_reply("+14155550105", "Thanks, see you there") == {"outcomes": {"ignored": 1}}
    assert plain_profile(system, contact)["consent_sms"] == "granted"

    at = "2026-11-20T10:00:00.000Z"
    assert system.sms_reply("+14155550105", "  stop ", inbound_id="in-1", timestamp=at) == {
        "outcomes": {"recorded": 1}
    }
    person = plain_profile(system, contact)
    assert (person["consent_sms"], person["consent_sms_source"]) == ("revoked", "sms_stop")
    [event] = events_of(system, contact, "sms_opted_out")
    assert event["properties"] == {"keyword": "STOP", "channel": "sms"}
    # redelivered: nothing changes
    assert system.sms_reply("+14155550105", "  stop ", inbound_id="in-1", timestamp=at) == {
        "outcomes": {"duplicate": 1}
    }
    assert len(events_of(system, contact, "sms_opted_out")) == 1

    for purpose in ("marketing", "transactional"):
        result = send(system, contact, action="send_sms", template="sms-reminder", purpose=purpose)
        assert (result["status"], result["reason"]) == ("skipped", "sms_opted_out")
    assert len(sms_to(system, "+14155550105")) == 1
    # email is another channel: still allowed
    assert send(system, contact)["status"] == "sent"


@pytest.mark.parametrize("keyword", ["STOPALL", "unsubscribe", "Cancel", "END", "quit"])
def test_every_stop_keyword_opts_out(system: LocalSystem, keyword: str) -> None:
    phone = f"+1415555{next(_counter):04d}"
    contact = sign_up(system, f"kw-{keyword.lower()}@example.com", phone=phone, sms_consent=True)
    assert system.sms_reply(phone, keyword) == {"outcomes": {"recorded": 1}}
    assert plain_profile(system, contact)["consent_sms"] == "revoked"


def test_stop_from_an_unknown_number_changes_nothing(system: LocalSystem) -> None:
    assert system.sms_reply("+14155559999", "STOP") == {"outcomes": {"unknown_recipient": 1}}


# --- double opt-in -----------------------------------------------------------------------------


def test_double_opt_in_contact_gets_only_the_confirmation_until_confirmed(system: LocalSystem) -> None:
    contact = sign_up(system, "doi@example.com", form="whitepaper", first_name="Grace")
    person = plain_profile(system, contact)
    assert (person["consent_email"], person["consent_source"]) == ("pending", "form:whitepaper")
    [submitted] = events_of(system, contact, "form_submitted")
    assert submitted["properties"]["double_opt_in"] is True

    for purpose in ("marketing", "transactional"):
        result = send(system, contact, purpose=purpose)
        assert (result["status"], result["reason"]) == ("skipped", "consent_pending")
    confirmation = send(system, contact, template="confirm-subscription", purpose="confirmation")
    assert confirmation["status"] == "sent"
    [mail] = emails_to(system, "doi@example.com")
    assert mail["subject"] == "Please confirm your subscription to Northwind Analytics"
    assert "List-Unsubscribe" not in mail["headers"]
    assert "/t/o/" not in mail["html"]
    assert "/t/c/" not in mail["html"] + mail["text"]
    [link] = re.findall(r"http://127\.0\.0\.1:8080(/confirm/[A-Za-z0-9_.-]+)", mail["text"])
    assert link in mail["html"]

    bad = system.invoke_http("GET", link[:-3] + "xyz")
    assert bad["statusCode"] == 400
    assert bad["headers"]["Content-Type"].startswith("text/html")
    assert plain_profile(system, contact)["consent_email"] == "pending"

    page = system.invoke_http("GET", link)
    assert page["statusCode"] == 200
    assert "subscription is confirmed" in page["body"]
    person = plain_profile(system, contact)
    assert (person["consent_email"], person["consent_source"]) == ("granted", "double_opt_in")
    [confirmed] = events_of(system, contact, "consent_confirmed")
    assert confirmed["message_id"] == confirmation["message_id"]

    again = system.invoke_http("GET", link)
    assert again["statusCode"] == 200
    assert "already confirmed" in again["body"]
    assert len(events_of(system, contact, "consent_confirmed")) == 1
    assert plain_profile(system, contact)["consent_updated_at"] == person["consent_updated_at"]

    assert send(system, contact)["status"] == "sent"
    late = send(system, contact, template="confirm-subscription", purpose="confirmation")
    assert (late["status"], late["reason"]) == ("skipped", "already_confirmed")

    # a confirmed contact who fills in a double opt-in form again keeps the granted consent
    sign_up(system, "doi@example.com", form="whitepaper")
    assert plain_profile(system, contact)["consent_email"] == "granted"


def test_confirmation_link_after_unsubscribe_does_not_resubscribe(system: LocalSystem) -> None:
    contact = sign_up(system, "doi-gone@example.com", form="whitepaper")
    assert send(system, contact, template="confirm-subscription", purpose="confirmation")["status"] == "sent"
    [link] = re.findall(r"(/confirm/[A-Za-z0-9_.-]+)", last_email(system, "doi-gone@example.com")["text"])
    system.client("dynamodb").update_item(
        TableName=CONTACTS,
        Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET consent_email = :r",
        ExpressionAttributeValues={":r": {"S": "revoked"}},
    )
    assert system.invoke_http("GET", link)["statusCode"] == 200
    assert plain_profile(system, contact)["consent_email"] == "revoked"
    assert events_of(system, contact, "consent_confirmed") == []


# --- transactional vs marketing ----------------------------------------------------------------


def test_transactional_email_is_not_tracked_but_marketing_is(system: LocalSystem) -> None:
    contact = sign_up(system, "tracked@example.com")
    assert send(system, contact)["status"] == "sent"
    marketing = last_email(system, "tracked@example.com")
    assert "/t/o/" in marketing["html"]
    assert "/t/c/" in marketing["html"]
    assert "/t/c/" in marketing["text"]
    assert "https://example.com/playbooks/attribution" not in marketing["text"]
    assert marketing["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in marketing["headers"]["List-Unsubscribe"]

    assert send(system, contact, purpose="transactional")["status"] == "sent"
    transactional = last_email(system, "tracked@example.com")
    assert "/t/o/" not in transactional["html"]
    assert "/t/c/" not in transactional["html"] + transactional["text"]
    assert "https://example.com/playbooks/attribution" in transactional["text"]
    assert "List-Unsubscribe" not in transactional["headers"]
    for mail in (marketing, transactional):
        assert mail["headers"]["X-SES-CONFIGURATION-SET"] == "leadflow-local-email"

    # no consent needed for a transactional email; marketing still needs it
    system.client("dynamodb").update_item(
        TableName=CONTACTS,
        Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET consent_email = :r",
        ExpressionAttributeValues={":r": {"S": "revoked"}},
    )
    assert send(system, contact, purpose="transactional")["status"] == "sent"
    skipped = send(system, contact)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "unsubscribed")


def test_email_carries_the_message_tag_that_links_feedback(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    client = system.modules["send"].sender._ses

    def observe(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    client.meta.events.register("provide-client-params.ses.SendRawEmail", observe)
    try:
        contact = sign_up(system, "tagged@example.com")
        result = send(system, contact)
    finally:
        client.meta.events.unregister("provide-client-params.ses.SendRawEmail", observe)
    [call] = calls
    assert call["Tags"] == [{"Name": "leadflow_message_id", "Value": result["message_id"]}]
    assert call["ConfigurationSetName"] == "leadflow-local-email"


# --- do-not-contact ----------------------------------------------------------------------------


def _dnc(system: LocalSystem, contact: str, body: Any, auth: bool = True) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {system.admin_key}"
    return system.invoke_http(
        "POST", f"/admin/contacts/{contact}/do-not-contact", headers=headers, body=json.dumps(body)
    )


def test_do_not_contact_skips_every_send(system: LocalSystem) -> None:
    contact = sign_up(system, "dnc@example.com", phone="+14155550106", sms_consent=True)
    assert _dnc(system, contact, {"reason": "asked by phone"}, auth=False)["statusCode"] == 403
    assert _dnc(system, contact, {})["statusCode"] == 400
    assert _dnc(system, contact, {"reason": "x\r\ny"})["statusCode"] == 400
    assert _dnc(system, "c-nobody", {"reason": "asked by phone"})["statusCode"] == 404

    reply = _dnc(system, contact, {"reason": "asked by phone"})
    assert reply["statusCode"] == 200, reply
    assert json.loads(reply["body"]) == {"contact_id": contact, "do_not_contact": True, "changed": True}
    again = _dnc(system, contact, {"reason": "asked by phone"})
    assert json.loads(again["body"])["changed"] is False
    person = plain_profile(system, contact)
    assert (person["do_not_contact"], person["do_not_contact_reason"]) == (True, "asked by phone")
    [event] = events_of(system, contact, "do_not_contact_set")
    assert event["properties"]["reason"] == "asked by phone"
    assert event["properties"]["actor"].endswith(":user/local-admin")

    for action, template in (("send_email", "welcome"), ("send_sms", "sms-reminder")):
        for purpose in ("marketing", "transactional"):
            result = send(system, contact, action=action, template=template, purpose=purpose)
            assert (result["status"], result["reason"]) == ("skipped", "do_not_contact")
    assert emails_to(system, "dnc@example.com") == []
    assert sms_to(system, "+14155550106") == []

    # the admin view shows it
    view = system.invoke_http(
        "GET", f"/admin/contacts/{contact}", headers={"authorization": f"Bearer {system.admin_key}"}
    )
    assert json.loads(view["body"])["profile"]["do_not_contact"] is True


# --- hostile contact fields --------------------------------------------------------------------


HOSTILE = {
    "crlf": "Ada\r\nBcc: victim@example.com\r\nSubject: pwned",
    "script": '<script>alert("x")</script><img src=x onerror=alert(1)>',
    "long": "A" * 10_000,
    "japanese": "日本語のテスト",
    "arabic": "مرحبا بالعالم",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_profile_fields_render_safely_end_to_end(system: LocalSystem, kind: str) -> None:
    """A profile written by anything (an import, an integration) with hostile values: the raw
    MIME SES received parses back to exactly one recipient and no injected header or markup."""
    address = f"hostile-{kind}@example.com"
    contact = sign_up(system, address)
    system.client("dynamodb").update_item(
        TableName=CONTACTS,
        Key={"pk": {"S": f"C#{contact}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET first_name = :n, last_name = :n",
        ExpressionAttributeValues={":n": {"S": HOSTILE[kind]}},
    )
    assert send(system, contact)["status"] == "sent"
    [sent] = emails_to(system, address)
    from moto.ses.models import ses_backends

    [raw] = [
        m.raw_data for m in ses_backends["123456789012"]["us-east-1"].sent_messages if m.id == sent["id"]
    ]
    msg = email.message_from_string(raw, policy=default_policy)
    assert msg.get_all("To") == [address]
    assert msg.get_all("Bcc") is None
    assert len(msg.get_all("Subject") or []) == 1
    subject = str(msg["Subject"])
    assert "pwned" not in subject or "\n" not in subject
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html
    if kind == "script":
        assert "&lt;script&gt;" in html
    if kind in ("japanese", "arabic"):
        assert HOSTILE[kind] in subject
        assert HOSTILE[kind] in html
        assert HOSTILE[kind] in text
    if kind == "long":
        assert len(subject) <= 998
        assert all(len(line) <= 998 for line in raw.splitlines())
