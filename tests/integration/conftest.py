"""The local system on moto, pumped by hand (no background thread) so every step is deterministic."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from leadflow.kernel.observability import logger as powertools_logger
from leadflow.local.system import ROOT, LocalSystem
from leadflow.platform.dynamo import deserialize
from leadflow.platform.tables import keys

JSON = {"content-type": "application/json"}
# Monday 2026-01-05 07:00 UTC = 08:00 in Berlin
MONDAY_0700_UTC = datetime(2026, 1, 5, 7, 0, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False) as local:
        yield local


def content(tmp_path: Path, **journeys: str) -> Path:
    """A content folder with the product's templates and only the given journeys (name=yaml)."""
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    for name, text in journeys.items():
        (tmp_path / "journeys" / f"{name}.yaml").write_text(text)
    return tmp_path


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    """``run(clock_start=..., name=yaml...)`` starts a local system with only those journeys."""
    systems: list[LocalSystem] = []

    def start(clock_start: float = MONDAY_0700_UTC, **journeys: str) -> LocalSystem:
        system = LocalSystem(
            background_pump=False, content_dir=content(tmp_path, **journeys), clock_start=clock_start
        )
        systems.append(system)
        return system.__enter__()

    yield start
    for system in systems:
        system.close()


def sign_up(
    system: LocalSystem,
    email: str,
    first_name: str = "Ada",
    visitor_id: str | None = "v-visitor-0001",
    form: str = "newsletter",
) -> str:
    """A consenting sign-up through the public form (the newsletter's unless ``form`` says), with
    the visitor id, if any; the contact's id."""
    fields: dict[str, Any] = {"email": email, "first_name": first_name, "consent": True}
    if visitor_id:
        fields["visitor_id"] = visitor_id
    reply = system.invoke_http("POST", f"/forms/{form}", headers=JSON, body=json.dumps(fields))
    assert reply["statusCode"] == 201, reply
    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


def post_event(system: LocalSystem, email: str, kind: str, **properties: Any) -> str:
    """A server event (trial_started, webinar_attended...): POST /admin/events with the local admin
    credential; the stored event's id."""
    body = json.dumps({"type": kind, "email": email, "properties": properties})
    headers = JSON | {"authorization": f"Bearer {system.admin_key}"}
    reply = system.invoke_http("POST", "/admin/events", headers=headers, body=body)
    assert reply["statusCode"] == 202, reply
    event_id: str = json.loads(reply["body"])["event_id"]
    return event_id


def events_of(system: LocalSystem, contact_id: str) -> list[dict[str, Any]]:
    """Every stored event of the contact, as the events table holds them (read consistently)."""
    items = system.client("dynamodb").query(
        TableName="leadflow-local-events",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.contact(contact_id)}},
        ConsistentRead=True,
    )["Items"]
    return [deserialize(i) for i in items]


def stream_records(system: LocalSystem) -> list[dict[str, Any]]:
    """Every record of the events stream so far, shaped as Lambda receives them."""
    streams = system.client("dynamodbstreams")
    arn = system.client("dynamodb").describe_table(TableName="leadflow-local-events")["Table"][
        "LatestStreamArn"
    ]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )
        records += streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"]
    return [system.pump._lambda_record(r) for r in records]


def profile(system: LocalSystem, contact_id: str) -> dict[str, Any]:
    item: dict[str, Any] = system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"C#{contact_id}"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    return item


def query_string(**params: str) -> str:
    return urlencode(params)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    collect = Collect()
    collect.setFormatter(powertools_logger.registered_formatter)
    target = logging.getLogger(powertools_logger.service)
    level = target.level
    target.addHandler(collect)
    target.setLevel(logging.DEBUG)
    yield collect.lines
    target.removeHandler(collect)
    target.setLevel(level)
