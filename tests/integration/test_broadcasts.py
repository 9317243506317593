"""Broadcasts: one email to every consenting member of a segment, exactly once, no one else —
also when page jobs are redelivered, SES throttles once and a worker dies in the middle of a page."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leadflow.kernel import ids
from leadflow.local.system import LocalSystem
from leadflow.platform.bulk import BroadcastPage, Pacer
from tests.integration.test_segments import admin, body, put_profile
from tests.integration.test_segments import system as system  # the same content: its segments

TEMPLATE = "win-back"
SEGMENT = "newsletter-readers"


@pytest.fixture(scope="module")
def audience(system: LocalSystem) -> dict[str, list[str]]:
    """60 members (45 consenting; the others without consent, unsubscribed, suppressed or
    do-not-contact) and 12 consenting non-members; the segment is defined afterwards."""
    groups: dict[str, list[str]] = {
        "consenting": [put_profile(system, tags={"reader"}) for _ in range(45)],
        "no_consent": [put_profile(system, tags={"reader"}, consent_email="unknown") for _ in range(5)],
        "unsubscribed": [put_profile(system, tags={"reader"}, consent_email="revoked") for _ in range(4)],
        "suppressed_bounce": [put_profile(system, tags={"reader"}, suppressed="bounce") for _ in range(3)],
        "do_not_contact": [put_profile(system, tags={"reader"}, do_not_contact=True) for _ in range(3)],
        "outsiders": [put_profile(system, tags={"other"}) for _ in range(12)],
    }
    reply = admin(system, "PUT", f"/admin/segments/{SEGMENT}", {"name": "Readers", "when": {"tag": "reader"}})
    assert reply["statusCode"] == 200, reply
    system.drain_bulk()
    assert body(admin(system, "GET", f"/admin/segments/{SEGMENT}"))["count"] == 60
    return groups


def broadcast_emails(system: LocalSystem, broadcast_id: str, contact_ids: list[str]) -> Counter[str]:
    """Emails of the broadcast in the outbox, per recipient address."""
    message_ids = {
        ids.deterministic_id(f"broadcast:{broadcast_id}:{c}", "broadcast"): f"{c}@example.com"
        for c in contact_ids
    }
    sent: Counter[str] = Counter()
    for email in system.outbox():
        if email["channel"] != "email":
            continue
        message_id = email["headers"].get("X-Leadflow-Message-Id")
        if message_id in message_ids:
            assert set(email["to"]) == {message_ids[message_id]}
            sent[email["to"][0]] += 1
    return sent


def everyone(audience: dict[str, list[str]]) -> list[str]:
    return [c for group in audience.values() for c in group]


def start(system: LocalSystem, **fields: Any) -> dict[str, Any]:
    reply = admin(system, "POST", "/admin/broadcasts", {"segment": SEGMENT, "template": TEMPLATE, **fields})
    assert reply["statusCode"] == 202, reply
    accepted: dict[str, Any] = body(reply)
    return accepted


def expect_complete(system: LocalSystem, broadcast_id: str, audience: dict[str, list[str]]) -> dict[str, Any]:
    view: dict[str, Any] = body(admin(system, "GET", f"/admin/broadcasts/{broadcast_id}"))
    assert view["status"] == "completed"
    assert view["shards_done"] == view["shards"] == 16
    assert view["sent"] == 45
    assert view["skipped"] == {
        "do_not_contact": 3,
        "no_consent": 5,
        "suppressed_bounce": 3,
        "unsubscribed": 4,
    }
    assert view["recipients"] == 60 == view["sent"] + sum(view["skipped"].values()) + view["in_doubt"]
    assert view["in_doubt"] == view["failed"] == 0
    sent = broadcast_emails(system, broadcast_id, everyone(audience))
    assert sent == Counter({f"{c}@example.com": 1 for c in audience["consenting"]})
    return view


def test_broadcast_reaches_each_consenting_member_once(
    system: LocalSystem, audience: dict[str, list[str]]
) -> None:
    accepted = start(system, broadcast_id="spring-news")
    assert accepted == {"broadcast_id": "spring-news", "status": "running"}
    # posting it again is idempotent; other parameters under the same id are a conflict
    assert start(system, broadcast_id="spring-news")["broadcast_id"] == "spring-news"
    reply = admin(
        system,
        "POST",
        "/admin/broadcasts",
        {"broadcast_id": "spring-news", "segment": SEGMENT, "template": "welcome"},
    )
    assert reply["statusCode"] == 409
    system.drain_bulk()
    view = expect_complete(system, "spring-news", audience)
    assert view["duplicate"] == 0

    # an old job delivered again after completion is stale: nothing is sent twice
    system.client("sqs").send_message(
        QueueUrl=system.bulk_queue_url,
        MessageBody=BroadcastPage(
            kind="broadcast_page", broadcast_id="spring-news", shard=3
        ).model_dump_json(),
    )
    system.drain_bulk()
    assert expect_complete(system, "spring-news", audience)["pages"] == view["pages"]
    assert system.modules["bulk"].broadcasts.resume("spring-news") == 0


def test_refuses_unknown_segment_and_template(system: LocalSystem, audience: dict[str, list[str]]) -> None:
    reply = admin(system, "POST", "/admin/broadcasts", {"segment": "no-such-segment", "template": TEMPLATE})
    assert reply["statusCode"] == 404
    reply = admin(system, "POST", "/admin/broadcasts", {"segment": SEGMENT, "template": "no-such-template"})
    assert reply["statusCode"] == 400
    assert body(reply)["fields"][0]["field"] == "template"
    reply = admin(
        system, "POST", "/admin/broadcasts", {"segment": SEGMENT, "template": TEMPLATE, "purpose": "spam"}
    )
    assert reply["statusCode"] == 400
    assert body(reply)["fields"][0]["field"] == "purpose"
    assert admin(system, "GET", "/admin/broadcasts/nope")["statusCode"] == 404


class CrashOnce(Pacer):
    """A worker that dies once, before the second send of a page (after the page's first send went
    out), at the first such moment from its ``at``-th send on: the redone page must find that send
    already made."""

    def __init__(self, at: int) -> None:
        super().__init__(1000.0)
        self.calls = 0
        self.in_page = 0
        self.crashed = False
        self.at = at

    def new_page(self) -> None:
        self.in_page = 0

    def wait(self) -> None:
        self.calls += 1
        self.in_page += 1
        if not self.crashed and self.calls >= self.at and self.in_page >= 2:
            self.crashed = True
            raise RuntimeError("worker crashed")
        super().wait()


class ThrottleOnce:
    """SES answering one send with a throttling error."""

    def __init__(self, ses: Any, at: int) -> None:
        self._ses = ses
        self.calls = 0
        self.at = at

    def send_raw_email(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}, "SendRawEmail"
            )
        return self._ses.send_raw_email(**kwargs)


def test_redelivery_crash_and_throttling_never_send_twice(
    system: LocalSystem, audience: dict[str, list[str]]
) -> None:
    service = system.modules["bulk"].broadcasts
    sender = service._sender
    real_ses, real_pacer, real_page = sender._ses, service._pacer, service.page
    sender._ses = ThrottleOnce(real_ses, at=7)
    crash = service._pacer = CrashOnce(at=20)

    def page(*args: Any, **kwargs: Any) -> Any:
        crash.new_page()
        return real_page(*args, **kwargs)

    service.page = page
    try:
        accepted = start(system)
        broadcast_id = accepted["broadcast_id"]
        # every first-page job delivered three times
        sqs = system.client("sqs")
        for _ in range(2):
            for shard in range(16):
                sqs.send_message(
                    QueueUrl=system.bulk_queue_url,
                    MessageBody=BroadcastPage(
                        kind="broadcast_page", broadcast_id=broadcast_id, shard=shard
                    ).model_dump_json(),
                )
        system.drain_bulk()
    finally:
        sender._ses, service._pacer = real_ses, real_pacer
        del service.page  # the class's method again
    assert crash.crashed
    view = expect_complete(system, broadcast_id, audience)
    assert view["duplicate"] >= 1  # the crashed and the throttled pages were done again
    failed = system.bulk_pump.consumers[0].failed
    assert failed >= 2


def test_lost_jobs_resume_at_the_recorded_cursor(system: LocalSystem, audience: dict[str, list[str]]) -> None:
    accepted = start(system)
    broadcast_id = accepted["broadcast_id"]
    sqs = system.client("sqs")
    # lose half of the first jobs (e.g. dead-lettered), run the rest
    received: dict[str, dict[str, Any]] = {}
    while len(received) < 16:
        for message in sqs.receive_message(QueueUrl=system.bulk_queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            assert json.loads(message["Body"])["kind"] == "broadcast_page"
            received[message["MessageId"]] = message
    for index, message in enumerate(received.values()):
        if index < 8:
            sqs.delete_message(QueueUrl=system.bulk_queue_url, ReceiptHandle=message["ReceiptHandle"])
        else:
            sqs.change_message_visibility(
                QueueUrl=system.bulk_queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    system.drain_bulk()
    view = body(admin(system, "GET", f"/admin/broadcasts/{broadcast_id}"))
    assert view["status"] == "running"
    assert view["shards_done"] == 8
    assert system.modules["bulk"].broadcasts.resume(broadcast_id) == 8
    system.drain_bulk()
    expect_complete(system, broadcast_id, audience)


def test_frequency_cap_skips_capped_recipients(system: LocalSystem, audience: dict[str, list[str]]) -> None:
    # three broadcasts went to the consenting members today; a cap of 3 a day stops a fourth
    accepted = start(system, frequency_cap={"per_day": 3})
    system.drain_bulk()
    view = body(admin(system, "GET", f"/admin/broadcasts/{accepted['broadcast_id']}"))
    assert view["status"] == "completed"
    # the earlier broadcasts did not reserve cap slots (no cap given): the first capped one sends
    assert view["sent"] == 45
    second = start(system, frequency_cap={"per_day": 1})
    system.drain_bulk()
    view = body(admin(system, "GET", f"/admin/broadcasts/{second['broadcast_id']}"))
    assert view["sent"] == 0
    assert view["skipped"]["frequency_cap"] == 45
    assert broadcast_emails(system, second["broadcast_id"], everyone(audience)) == Counter()
