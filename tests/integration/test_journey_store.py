"""``JourneyStore`` (enrollments, ``wait_for`` bookkeeping) at the edges its callers never see on a
calm day: a batch read DynamoDB answers only in part, and a leave that is recorded twice.

moto never returns ``UnprocessedKeys``, so the partial batch read runs on a botocore ``Stubber``
over a real client, the responses in DynamoDB's documented shape; the rest runs on the local
system's tables."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from leadflow.journeys.runtime.enrollments import JourneyStore
from leadflow.local.system import LocalSystem
from leadflow.platform.dynamo import Backoff, item_key

CONTACTS = "contacts"
EVENTS = "events"


class Sleeps:
    """Records the waits a ``Backoff`` asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_profile_and_enrollment_reads_again_what_dynamodb_left_unprocessed() -> None:
    """Throttled, DynamoDB answers the profile and hands the enrollment back unprocessed: the
    store reads it again (after a backoff) instead of taking the contact for never enrolled."""
    client = boto3.client(
        "dynamodb", region_name="eu-west-1", aws_access_key_id="stub", aws_secret_access_key="stub"
    )
    sleeps = Sleeps()
    store = JourneyStore(
        client,
        contacts_table=CONTACTS,
        events_table=EVENTS,
        backoff=Backoff(base=0.1, sleep=sleeps, jitter=lambda low, high: high),
    )
    profile_key = item_key("C#c-1", "PROFILE")
    enrollment_key = item_key("C#c-1", "J#welcome")
    profile = {**profile_key, "email": {"S": "ada@example.com"}}
    enrollment = {**enrollment_key, "status": {"S": "active"}, "entries": {"N": "2"}}
    with Stubber(client) as stub:
        stub.add_response(
            "batch_get_item",
            {
                "Responses": {CONTACTS: [profile]},
                "UnprocessedKeys": {CONTACTS: {"Keys": [enrollment_key], "ConsistentRead": True}},
            },
            {"RequestItems": {CONTACTS: {"Keys": [profile_key, enrollment_key], "ConsistentRead": True}}},
        )
        stub.add_response(
            "batch_get_item",
            {"Responses": {CONTACTS: [enrollment]}, "UnprocessedKeys": {}},
            {"RequestItems": {CONTACTS: {"Keys": [enrollment_key], "ConsistentRead": True}}},
        )
        found_profile, found_enrollment = store.profile_and_enrollment("c-1", "welcome")
        stub.assert_no_pending_responses()
    assert found_profile is not None
    assert found_profile["email"] == "ada@example.com"
    assert found_enrollment is not None
    assert (found_enrollment["status"], found_enrollment["entries"]) == ("active", 2)
    assert sleeps.waits == [0.1]


def test_a_leave_recorded_twice_keeps_when_the_contact_left(system: LocalSystem) -> None:
    """The finishing step retried (or trigger and the runner both closing an exited contact)
    records the leave again: ``left_at`` stays the time of the first, the re-entry rules read it."""
    store = JourneyStore(
        system.client("dynamodb"),
        contacts_table="leadflow-local-contacts",
        events_table="leadflow-local-events",
    )
    assert store.enter(
        "c-1",
        "welcome",
        entries=1,
        previous_entries=None,
        execution_name="exec-1",
        entry_event_id="e-1",
        at="2026-11-02T09:00:00.000Z",
    )
    assert store.leave("c-1", "welcome", "exec-1", "completed", None, "2026-11-03T08:15:00.000Z")
    assert store.leave("c-1", "welcome", "exec-1", "completed", None, "2026-11-03T08:15:04.250Z")
    enrollment = store.enrollment("c-1", "welcome")
    assert enrollment is not None
    assert enrollment["status"] == "completed"
    assert enrollment["left_at"] == "2026-11-03T08:15:00.000Z"
    assert "waiting" not in enrollment
    # a newer entry owns the enrollment: the old execution's late leave changes nothing
    assert store.enter(
        "c-1",
        "welcome",
        entries=2,
        previous_entries=1,
        execution_name="exec-2",
        entry_event_id="e-2",
        at="2026-11-10T10:00:00.000Z",
    )
    assert not store.leave("c-1", "welcome", "exec-1", "exited", "unsubscribed", "2026-11-10T10:00:01.000Z")
    again = store.enrollment("c-1", "welcome")
    assert again is not None
    assert (again["status"], again["execution_name"], again.get("left_at")) == ("active", "exec-2", None)
