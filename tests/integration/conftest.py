"""The local system on moto, pumped by hand (no background thread) so every step is deterministic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from leadflow.kernel.observability import logger as powertools_logger
from leadflow.local.system import LocalSystem


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(background_pump=False) as local:
        yield local


def sign_up(
    system: LocalSystem, email: str, first_name: str = "Ada", visitor_id: str = "v-visitor-0001"
) -> str:
    reply = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers={"content-type": "application/json"},
        body=f'{{"email": "{email}", "first_name": "{first_name}", "consent": true, "visitor_id": "{visitor_id}"}}',
    )
    assert reply["statusCode"] == 201, reply
    import json

    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


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
