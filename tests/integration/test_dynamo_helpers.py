"""``leadflow.platform.dynamo`` against moto's DynamoDB: the update builder, paging, batches with
their retry of unprocessed requests, and transactions whose cancellation names the operation
that failed. moto never returns ``UnprocessedKeys``/``UnprocessedItems``, so only that retry path
runs on a botocore ``Stubber`` over a real client (the responses are DynamoDB's documented shape)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from leadflow.contacts.store import ContactStore
from leadflow.platform.dynamo import (
    Backoff,
    ExpiringStore,
    Transaction,
    TransactionCancelled,
    Unprocessed,
    batch_get,
    batch_write,
    commit_once,
    get,
    item_key,
    pages,
    put_if,
    put_op,
    query_all,
    scan_all,
    serialize,
    update,
    update_if,
    update_op,
    update_returning,
)
from leadflow.platform.tables import Prefix, keys
from leadflow.reporting.store import rkeys
from leadflow.segments.store import SegmentMembership

TABLE = "helpers"


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


class Sleeps:
    """Records the waits a ``Backoff`` asks for instead of sleeping (the jitter stays real)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# --- update_op -------------------------------------------------------------------------------------


def test_update_op_sets_adds_deletes_and_removes_with_reserved_names(ddb: Any) -> None:
    key = {"pk": "C#1", "sk": "PROFILE"}
    ddb.put_item(
        TableName=TABLE,
        Item=serialize({**key, "status": "old", "tags": {"a", "b"}, "legacy": "x", "score": 1}),
    )
    op = update_op(
        TABLE,
        key,
        sets={"status": "active", "name": "Ada", "ratio": 0.25, "nickname": None},
        set_clauses=["created_at = if_not_exists(created_at, :at)"],
        values_={"at": "2026-12-03T10:00:00Z"},
        add={"score": 4, "visitor_ids": {"v1"}},
        delete={"tags": {"a"}},
        remove=["legacy"],
        condition="attribute_exists(pk)",
    )
    update(ddb, op)
    item = get(ddb, TABLE, key, consistent=True)
    assert item == {
        **key,
        "status": "active",  # reserved words go through placeholders
        "name": "Ada",
        "ratio": 0.25,
        "created_at": "2026-12-03T10:00:00Z",
        "score": 5,
        "visitor_ids": ["v1"],
        "tags": ["b"],
    }
    assert "nickname" not in op["Update"]["ExpressionAttributeNames"].values()  # None: not written


def test_update_op_condition_failure_leaves_the_item_and_an_empty_update_is_refused(ddb: Any) -> None:
    key = {"pk": "C#2", "sk": "PROFILE"}
    with pytest.raises(ClientError) as caught:
        update(ddb, update_op(TABLE, key, sets={"status": "x"}, condition="attribute_exists(pk)"))
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert get(ddb, TABLE, key, consistent=True) is None
    guarded = update_op(TABLE, key, set_once={"first_seen": "t1"}, condition="attribute_exists(pk)")
    assert not update_if(ddb, guarded)  # the condition failed: False, nothing written
    assert get(ddb, TABLE, key, consistent=True) is None
    ddb.put_item(TableName=TABLE, Item=serialize(key))
    assert update_if(ddb, guarded)
    assert update_if(
        ddb, update_op(TABLE, key, set_once={"first_seen": "t2"}, condition="attribute_exists(pk)")
    )
    assert get(ddb, TABLE, key, consistent=True) == {**key, "first_seen": "t1"}  # set once: the first stays
    with pytest.raises(ValueError, match="at least one"):
        update_op(TABLE, key, sets={"only": None})


def test_update_returning_answers_the_item_after_the_write_or_none(ddb: Any) -> None:
    key = {"pk": "C#3", "sk": "J#welcome"}
    exit_request = update_op(
        TABLE,
        key,
        set_once={"exit_reason": "purchase"},
        sets={"exit_requested_at": "2026-11-03T10:00:00.000Z"},
        condition="#status = :active",
        names={"#status": "status"},
        values_={"active": "active"},
    )
    assert update_returning(ddb, exit_request) is None  # no such enrollment: nothing written
    assert get(ddb, TABLE, key, consistent=True) is None
    ddb.put_item(TableName=TABLE, Item=serialize({**key, "status": "active", "entries": 2}))
    assert update_returning(ddb, exit_request) == {
        **key,
        "status": "active",
        "entries": 2,
        "exit_reason": "purchase",
        "exit_requested_at": "2026-11-03T10:00:00.000Z",
    }


def test_put_if_writes_only_where_its_condition_holds(ddb: Any) -> None:
    item = {"pk": "C#4", "sk": "CAP#email", "v": 1, "rate": 0.5}
    first = put_op(TABLE, item, "attribute_not_exists(pk) OR v = :v", values_={"v": 0})
    assert put_if(ddb, first)
    assert not put_if(ddb, first)  # version 0 is gone: nothing written
    newer = put_op(TABLE, {**item, "v": 2}, "#v = :v", names={"#v": "v"}, values_={"v": 1})
    assert put_if(ddb, newer)
    assert get(ddb, TABLE, {"pk": "C#4", "sk": "CAP#email"}, consistent=True) == {**item, "v": 2}
    with pytest.raises(ClientError) as caught:  # any other error is raised
        put_if(ddb, put_op("no-such-table", item))
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --- paging ----------------------------------------------------------------------------------------


def _fill(ddb: Any, count: int, pk: str = "P#1") -> None:
    batch_write(ddb, TABLE, puts=[{"pk": pk, "sk": f"S#{i:04d}", "n": i} for i in range(count)])


def test_query_all_and_scan_all_read_every_page_and_stop_at_a_limit(ddb: Any) -> None:
    _fill(ddb, 130)
    _fill(ddb, 5, pk="P#other")
    params = {"TableName": TABLE, "KeyConditionExpression": "pk = :pk"}
    query = {**params, "ExpressionAttributeValues": serialize({":pk": "P#1"}), "Limit": 17}
    assert [i["n"] for i in query_all(ddb, **query)] == list(range(130))
    assert [i["n"] for i in query_all(ddb, limit=20, **query)] == list(range(20))
    assert len(list(scan_all(ddb, TableName=TABLE, Limit=9))) == 135
    raw_pages = list(pages(ddb, "query", **query))
    assert len(raw_pages) == 8  # 7 full pages of 17 and one of 11
    assert all("LastEvaluatedKey" in page for page in raw_pages[:-1])


def test_pages_resume_from_a_callers_cursor(ddb: Any) -> None:
    _fill(ddb, 40)
    query = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": serialize({":pk": "P#1"}),
        "Limit": 15,
    }
    first = next(pages(ddb, "query", **query))
    cursor = first["LastEvaluatedKey"]
    rest = [i["n"] for i in query_all(ddb, ExclusiveStartKey=cursor, **query)]
    assert rest == list(range(15, 40))
    with pytest.raises(ValueError, match="query or scan"):
        next(pages(ddb, "batch_get_item"))


# --- batches ---------------------------------------------------------------------------------------


def test_batch_get_reads_more_than_a_hundred_keys_once_each_and_projects(ddb: Any) -> None:
    _fill(ddb, 230)
    wanted = [{"pk": "P#1", "sk": f"S#{i:04d}"} for i in range(0, 230, 1)]
    wanted += wanted[:50]  # duplicates are read once (DynamoDB refuses them in one request)
    wanted += [{"pk": "P#1", "sk": "S#9999"}]  # absent: simply missing
    items = batch_get(ddb, TABLE, wanted)
    assert sorted(i["n"] for i in items) == list(range(230))
    projected = batch_get(ddb, TABLE, wanted[:3], fields=["sk"])
    assert sorted(projected, key=lambda i: i["sk"]) == [{"sk": f"S#{i:04d}"} for i in range(3)]


def test_batch_write_puts_and_deletes_more_than_twenty_five(ddb: Any) -> None:
    assert batch_write(ddb, TABLE, puts=[{"pk": "W", "sk": str(i)} for i in range(60)]) == 60
    batch_write(ddb, TABLE, deletes=[{"pk": "W", "sk": str(i)} for i in range(0, 60, 2)])
    left = query_all(
        ddb,
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=serialize({":pk": "W"}),
    )
    assert sorted(int(i["sk"]) for i in left) == list(range(1, 60, 2))


def _stubbed_client() -> Any:
    return boto3.client(
        "dynamodb", region_name="eu-west-1", aws_access_key_id="stub", aws_secret_access_key="stub"
    )


def test_batch_get_retries_unprocessed_keys_with_growing_jittered_backoff() -> None:
    client = _stubbed_client()
    keys = [{"pk": "C#1", "sk": "PROFILE"}, {"pk": "C#2", "sk": "PROFILE"}, {"pk": "C#3", "sk": "PROFILE"}]
    all_keys = [item_key(k["pk"], k["sk"]) for k in keys]
    sleeps = Sleeps()
    backoff = Backoff(base=0.1, cap=0.3, sleep=sleeps, jitter=lambda low, high: high)
    with Stubber(client) as stub:
        stub.add_response(
            "batch_get_item",
            {
                "Responses": {TABLE: [{**all_keys[0], "n": {"N": "1"}}]},
                "UnprocessedKeys": {TABLE: {"Keys": all_keys[1:], "ConsistentRead": True}},
            },
            {"RequestItems": {TABLE: {"Keys": all_keys, "ConsistentRead": True}}},
        )
        stub.add_response(
            "batch_get_item",
            {
                "Responses": {TABLE: [{**all_keys[1], "n": {"N": "2"}}]},
                "UnprocessedKeys": {TABLE: {"Keys": all_keys[2:], "ConsistentRead": True}},
            },
            {"RequestItems": {TABLE: {"Keys": all_keys[1:], "ConsistentRead": True}}},
        )
        stub.add_response(
            "batch_get_item",
            {"Responses": {TABLE: [{**all_keys[2], "n": {"N": "3"}}]}, "UnprocessedKeys": {}},
            {"RequestItems": {TABLE: {"Keys": all_keys[2:], "ConsistentRead": True}}},
        )
        items = batch_get(client, TABLE, keys, backoff=backoff)
        stub.assert_no_pending_responses()
    assert sorted(i["n"] for i in items) == [1, 2, 3]
    assert sleeps.waits == [0.1, 0.2]  # no wait before the first call, then base * 2**(n-1)


def test_batch_get_gives_up_loudly_instead_of_dropping_keys() -> None:
    client = _stubbed_client()
    keys = [{"pk": "C#1", "sk": "PROFILE"}, {"pk": "C#2", "sk": "PROFILE"}]
    all_keys = [item_key(k["pk"], k["sk"]) for k in keys]
    sleeps = Sleeps()
    backoff = Backoff(base=1.0, cap=1.5, max_attempts=3, sleep=sleeps)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response(
                "batch_get_item",
                {"Responses": {TABLE: []}, "UnprocessedKeys": {TABLE: {"Keys": all_keys}}},
            )
        with pytest.raises(Unprocessed, match="2 request\\(s\\) still unprocessed after 3 attempts"):
            batch_get(client, TABLE, keys, backoff=backoff)
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= 1.0
    assert 0 <= sleeps.waits[1] <= 1.5  # capped


def test_batch_write_retries_unprocessed_items() -> None:
    client = _stubbed_client()
    items = [{"pk": "W", "sk": str(i)} for i in range(3)]
    requests = [{"PutRequest": {"Item": serialize(i)}} for i in items]
    sleeps = Sleeps()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_write_item",
            {"UnprocessedItems": {TABLE: requests[2:]}},
            {"RequestItems": {TABLE: requests}},
        )
        stub.add_response(
            "batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {TABLE: requests[2:]}}
        )
        assert batch_write(client, TABLE, puts=items, backoff=Backoff(sleep=sleeps)) == 3
        stub.assert_no_pending_responses()
    assert len(sleeps.waits) == 1


# --- transactions ----------------------------------------------------------------------------------


def test_a_cancelled_transaction_names_the_operation_that_failed(ddb: Any) -> None:
    ddb.put_item(
        TableName=TABLE, Item=serialize({"pk": "E#ada@example.com", "sk": "EMAIL", "contact_id": "c1"})
    )
    txn = Transaction()
    txn.add(put_op(TABLE, {"pk": "C#c2", "sk": "PROFILE"}, "attribute_not_exists(pk)"), "profile")
    position = txn.add(
        put_op(
            TABLE, {"pk": "E#ada@example.com", "sk": "EMAIL", "contact_id": "c2"}, "attribute_not_exists(pk)"
        ),
        "email_claim",
    )
    txn.extend([put_op(TABLE, {"pk": "C#c2", "sk": f"EV#{i}"}) for i in range(2)], "events")
    txn.add(put_op(TABLE, {"pk": "M#x", "sk": "MARK"}))
    assert position == 1
    assert txn.names == ["profile", "email_claim", "events[0]", "events[1]", "op4"]
    with pytest.raises(TransactionCancelled) as caught:
        txn.commit(ddb)
    cancelled = caught.value
    assert isinstance(cancelled, ClientError)  # callers that catch ClientError still do
    assert cancelled.failed == ["email_claim"]
    assert cancelled.failed_condition("email_claim")
    assert not cancelled.failed_condition("profile")
    assert cancelled.failed_condition()
    assert not cancelled.conflicted()
    assert cancelled.reasons["profile"] == "None"
    assert get(ddb, TABLE, {"pk": "C#c2", "sk": "PROFILE"}, consistent=True) is None  # nothing half-stored
    owner = get(ddb, TABLE, {"pk": "E#ada@example.com", "sk": "EMAIL"}, consistent=True)
    assert owner is not None
    assert owner["contact_id"] == "c1"


def test_a_transaction_commits_and_refuses_a_name_used_twice(ddb: Any) -> None:
    txn = Transaction()
    txn.add(put_op(TABLE, {"pk": "A", "sk": "1"}), "first")
    txn.add(update_op(TABLE, {"pk": "A", "sk": "2"}, sets={"status": "new"}), "second")
    with pytest.raises(ValueError, match="named twice"):
        txn.add(put_op(TABLE, {"pk": "A", "sk": "3"}), "first")
    assert len(txn) == 2
    txn.commit(ddb)
    assert get(ddb, TABLE, {"pk": "A", "sk": "2"}) == {"pk": "A", "sk": "2", "status": "new"}


def test_other_transaction_errors_pass_through_unchanged(ddb: Any) -> None:
    txn = Transaction()
    txn.add(put_op("no-such-table", {"pk": "A", "sk": "1"}), "missing")
    with pytest.raises(ClientError) as caught:
        txn.commit(ddb)
    assert not isinstance(caught.value, TransactionCancelled)


@pytest.mark.parametrize(
    "commit_guarded",
    [
        lambda ddb, txn, guard: commit_once(lambda t: t.commit(ddb), txn, guard),
        lambda ddb, txn, guard: txn.commit_unless(ddb, guard),
    ],
    ids=["commit_once", "commit_unless"],
)
def test_a_guarded_commit_writes_once_and_tells_a_redelivery_apart_from_other_failures(
    ddb: Any, commit_guarded: Callable[[Any, Transaction, str], bool]
) -> None:
    """``commit_once`` (through the caller's committer) and ``Transaction.commit_unless`` (a job or
    an enrollment created once): False when the guard's condition fails, nothing written; a
    cancellation by another operation raises, naming it."""

    def delivery(profile_condition: str | None = None) -> Transaction:
        txn = Transaction()
        txn.add(put_op(TABLE, {"pk": "MARK#ev1", "sk": "MARK"}, "attribute_not_exists(pk)"), "marker")
        txn.add(
            update_op(TABLE, {"pk": "C#1", "sk": "PROFILE"}, add={"score": 5}, condition=profile_condition)
        )
        return txn

    assert commit_guarded(ddb, delivery(), "marker")
    assert not commit_guarded(ddb, delivery(), "marker")  # the same event again: nothing written
    profile = get(ddb, TABLE, {"pk": "C#1", "sk": "PROFILE"}, consistent=True)
    assert profile is not None
    assert profile["score"] == 5
    ddb.delete_item(TableName=TABLE, Key=item_key("MARK#ev1", "MARK"))
    with pytest.raises(TransactionCancelled) as caught:  # not the guard: the caller must know
        commit_guarded(ddb, delivery("attribute_not_exists(pk)"), "marker")
    assert caught.value.failed == ["op1"]


def test_an_expiring_store_stamps_its_ttl_from_its_clock(ddb: Any) -> None:
    class Marks(ExpiringStore):
        TTL_DAYS = 3

    assert Marks(ddb, TABLE, now=lambda: 1000.0).expires_at() == 1000 + 3 * 86400
    assert Marks(ddb, TABLE, ttl_days=1, now=lambda: 1000.0).expires_at() == 1000 + 86400


def test_key_prefixes_build_every_tables_keys() -> None:
    assert Prefix("C")("c01") == "C#c01"
    assert keys.contact("c01") == "C#c01"
    assert keys.email("a@example.com") == "EMAIL#a@example.com"
    assert rkeys.message_state("m1") == "S#M#m1"
    assert rkeys.membership("j1") == rkeys.journey("j1") == "J#j1"
    assert ContactStore.phone_key("+49301234567") == "PHONE#+49301234567"
    assert SegmentMembership.member_pk("vip", 3) == "SEGMENT#vip#03"
