"""Segments through the admin API: define, count, export (JSON and CSV pages), full re-evaluation
through the bulk queue, delete with clean-up, file segments are read-only, bad conditions name
the field."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.local.system import ROOT, LocalSystem
from leadflow.platform.dynamo import deserialize, serialize, values
from leadflow.segments import SegmentMembership

CONTACTS = "leadflow-local-contacts"
EVENTS = "leadflow-local-events"
FILE_SEGMENT = """\
id: test-file-segment
name: From a file
when: {tag: filed}
"""


def content_dir(base: Path) -> Path:
    """The repository's content plus one file segment (full evaluations run the real lead engine)."""
    for name in ("journeys", "templates"):
        (base / name).symlink_to(ROOT / name)
    if (ROOT / "leads.yaml").exists():
        (base / "leads.yaml").symlink_to(ROOT / "leads.yaml")
    (base / "segments").mkdir()
    if (ROOT / "segments").is_dir():
        for path in (ROOT / "segments").glob("*.yaml"):
            shutil.copy(path, base / "segments" / path.name)
    (base / "segments" / "test-file-segment.yaml").write_text(FILE_SEGMENT)
    return base


def put_profile(system: LocalSystem, **fields: Any) -> str:
    contact_id = fields.pop("contact_id", None) or ids.new_contact_id()
    item = {
        "pk": f"C#{contact_id}",
        "sk": "PROFILE",
        "contact_id": contact_id,
        "email": f"{contact_id}@example.com",
        "first_name": "Test",
        "consent_email": "granted",
        "created_at": iso(utc_now()),
        "updated_at": iso(utc_now()),
        **fields,
    }
    system.client("dynamodb").put_item(TableName=CONTACTS, Item=serialize(item))
    return contact_id


def admin(system: LocalSystem, method: str, path: str, body: Any = None, query: str = "") -> dict[str, Any]:
    return system.invoke_http(
        method,
        path,
        query=query,
        headers={"authorization": f"Bearer {system.admin_key}", "content-type": "application/json"},
        body=json.dumps(body) if body is not None else None,
    )


def body(reply: dict[str, Any]) -> Any:
    return json.loads(reply["body"])


def profile_of(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    item = system.client("dynamodb").get_item(
        TableName=CONTACTS, Key=serialize({"pk": f"C#{contact_id}", "sk": "PROFILE"}), ConsistentRead=True
    )["Item"]
    return deserialize(item)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(
        background_pump=False, content_dir=content_dir(tmp_path_factory.mktemp("content"))
    ) as local:
        yield local


@pytest.fixture(scope="module")
def vips(system: LocalSystem) -> dict[str, list[str]]:
    """45 contacts, 31 tagged vip (one of them a merged tombstone), created before the segment."""
    members = [put_profile(system, tags={"vip", f"n{i}"}, last_name=f"=cmd{i}", score=7) for i in range(30)]
    put_profile(system, tags={"vip"}, merged_into=members[0])
    others = [put_profile(system, tags={"other"}) for _ in range(14)]
    return {"members": members, "others": others}


def export_json(system: LocalSystem, segment_id: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        reply = admin(system, "GET", f"/admin/segments/{segment_id}/members", query=query)
        assert reply["statusCode"] == 200, reply
        page = body(reply)
        assert len(page["members"]) <= limit
        found += page["members"]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            return found, pages


def test_define_evaluates_existing_contacts_counts_and_exports(
    system: LocalSystem, vips: dict[str, list[str]]
) -> None:
    reply = admin(
        system, "PUT", "/admin/segments/vip-customers", {"name": "VIP customers", "when": {"tag": "vip"}}
    )
    assert reply["statusCode"] == 200, reply
    view = body(reply)
    assert view["source"] == "api"
    assert view["last_run"]["finished"] is False

    system.drain_bulk()

    view = body(admin(system, "GET", "/admin/segments/vip-customers"))
    assert view["count"] == 30  # the tombstone is not evaluated
    run = view["last_run"]
    assert run["finished"] is True
    assert run["finished_at"]
    assert run["lanes_done"] == run["lanes"]
    assert run["contacts"] == 44
    assert run["entered"] == 30
    assert run["left"] == 0
    listed = {s["segment_id"]: s for s in body(admin(system, "GET", "/admin/segments"))["segments"]}
    assert listed["vip-customers"]["count"] == 30
    assert listed["test-file-segment"]["source"] == "file"
    for contact_id in vips["members"]:
        assert "vip-customers" in profile_of(system, contact_id)["segments"]

    members, pages = export_json(system, "vip-customers", limit=7)
    assert sorted(m["contact_id"] for m in members) == sorted(vips["members"])
    assert pages >= 5
    assert all(m["email"] == f"{m['contact_id']}@example.com" for m in members)
    assert all(m["score"] == 7 and m["first_name"] == "Test" for m in members)

    rows: list[dict[str, str]] = []
    cursor = None
    while True:
        query = "format=csv&limit=8" + (f"&cursor={cursor}" if cursor else "")
        reply = admin(system, "GET", "/admin/segments/vip-customers/members", query=query)
        assert reply["statusCode"] == 200
        headers = {k.lower(): v for k, v in reply["headers"].items()}
        assert headers["content-type"].startswith("text/csv")
        rows += list(csv.DictReader(io.StringIO(reply["body"])))
        cursor = headers.get("x-next-cursor")
        if not cursor:
            break
    assert sorted(r["contact_id"] for r in rows) == sorted(vips["members"])
    assert all(r["last_name"].startswith("'=") for r in rows)  # no formula injection


def test_evaluate_on_demand_picks_up_changes_without_events(
    system: LocalSystem, vips: dict[str, list[str]]
) -> None:
    late = put_profile(system, tags={"vip"})
    reply = admin(system, "POST", "/admin/segments/vip-customers/evaluate")
    assert reply["statusCode"] == 202
    run_id = body(reply)["run_id"]
    # a redelivered page job (same cursor, new message) is harmless; a stale one is dropped
    system.drain_bulk()
    view = body(admin(system, "GET", "/admin/segments/vip-customers"))
    assert view["last_run"]["run_id"] == run_id
    assert view["last_run"]["finished"] is True
    assert view["count"] == 31
    vips["members"].append(late)

    from leadflow.platform.bulk import SegmentScanPage

    sqs = system.client("sqs")
    sqs.send_message(
        QueueUrl=system.bulk_queue_url,
        MessageBody=SegmentScanPage(kind="segment_scan_page", run_id=run_id, lane=0).model_dump_json(),
    )
    system.drain_bulk()
    assert (
        body(admin(system, "GET", "/admin/segments/vip-customers"))["last_run"]["pages"]
        == view["last_run"]["pages"]
    )


def test_bad_definitions_are_refused(system: LocalSystem) -> None:
    reply = admin(system, "PUT", "/admin/segments/broken", {"name": "Broken", "when": {"score": {"over": 5}}})
    assert reply["statusCode"] == 400
    fields = [f["field"] for f in body(reply)["fields"]]
    assert any(f.startswith("when") for f in fields), fields
    reply = admin(system, "PUT", "/admin/segments/broken", {"name": "Broken", "when": {"tagged": "x"}})
    assert reply["statusCode"] == 400
    assert any(f["field"].startswith("when") for f in body(reply)["fields"])
    reply = admin(system, "PUT", "/admin/segments/Bad_Id", {"name": "Bad", "when": {"tag": "x"}})
    assert reply["statusCode"] == 400
    assert body(reply)["fields"][0]["field"] == "segment_id"
    assert admin(system, "GET", "/admin/segments/broken")["statusCode"] == 404
    assert admin(system, "POST", "/admin/segments/nope/evaluate")["statusCode"] == 404
    assert admin(system, "GET", "/admin/segments/nope/members")["statusCode"] == 404
    reply = admin(system, "GET", "/admin/segments/vip-customers/members", query="cursor=garbage")
    assert reply["statusCode"] == 400


def test_file_segment_cannot_be_redefined_or_deleted(system: LocalSystem) -> None:
    reply = admin(system, "PUT", "/admin/segments/test-file-segment", {"name": "Mine", "when": {"tag": "x"}})
    assert reply["statusCode"] == 409
    assert admin(system, "DELETE", "/admin/segments/test-file-segment")["statusCode"] == 409
    assert admin(system, "DELETE", "/admin/segments/never-defined")["statusCode"] == 404
    assert body(admin(system, "GET", "/admin/segments/test-file-segment"))["source"] == "file"


def test_delete_removes_every_member(system: LocalSystem, vips: dict[str, list[str]]) -> None:
    reply = admin(system, "DELETE", "/admin/segments/vip-customers")
    assert reply["statusCode"] == 202
    system.drain_bulk()
    assert admin(system, "GET", "/admin/segments/vip-customers")["statusCode"] == 404
    assert "vip-customers" not in {
        s["segment_id"] for s in body(admin(system, "GET", "/admin/segments"))["segments"]
    }
    membership = SegmentMembership(system.client("dynamodb"), CONTACTS)
    assert membership.count("vip-customers") == 0
    for shard in range(16):
        assert membership.members("vip-customers", shard)[0] == []
    for contact_id in vips["members"]:
        assert "vip-customers" not in (profile_of(system, contact_id).get("segments") or [])
    ddb = system.client("dynamodb")
    left = [
        deserialize(i)
        for i in ddb.scan(
            TableName=EVENTS,
            FilterExpression="#t = :t",
            ExpressionAttributeNames={"#t": "type"},
            ExpressionAttributeValues=values(t="segment_left"),
        )["Items"]
    ]
    deleted = [e for e in left if e["properties"].get("reason") == "segment_deleted"]
    assert sorted(e["contact_id"] for e in deleted) == sorted(vips["members"])
