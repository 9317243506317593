"""``make bench``: cost and speed of the hot path, as ratios measured in one run on the local runtime.

(a) AWS API calls per tracked pixel/click (target: exactly 1 write, 0 reads)
(b) median in-process time of ``track`` per pixel hit / median bare moto ``put_item`` of the same
    event item (target <= 1.3)
(c) import time of each function module / ``import boto3`` alone (cold-start proxy, target <= 1.5), and
    with SnapStart the after-restore hooks / ``import boto3`` (what a restored cold start runs of ours)
(d) AWS calls to build a journey report with 100 and with 10,000 contacts (target: equal)
(e) stream records per second through ``score`` + ``trigger``, and the cost of a record of a contact
    with 10 past events / with 10,000 (target >= 0.9: cost must not grow with history)
(f) journeys: state transitions per email (target <= 4), orchestration cost / SES cost per email
    (target <= 1.0) and ``wait_for`` reaction (virtual seconds, target 0), over the shipped
    journeys with a scripted behaviour mix (``bench/journeys.py``, priced by ``leadflow.journeys.cost``)
The last line is one JSON object with the figures."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from botocore.client import BaseClient

from bench.imports import import_ratios, restore_ratios
from bench.journeys import journey_figures
from bench.reporting import report_calls
from bench.streams import stream_figures
from leadflow import wiring
from leadflow.events.model import Event
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.local.moto_patches import lambda_context
from leadflow.local.system import LocalSystem, settings_env
from leadflow.messaging.compose import SignedLinks
from leadflow.platform.dynamo import serialize

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems", "GetSecretValue", "GetParameter"}
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "400"))


@contextmanager
def counting_calls() -> Iterator[Counter[str]]:
    """Every AWS API call made in the block, by operation name."""
    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counted(self: BaseClient, operation_name: str, api_params: Any) -> Any:
        calls[operation_name] += 1
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = counted
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original


def median_seconds(fn: Callable[[], object], samples: int) -> float:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    with LocalSystem(background_pump=False) as system:
        track = system.handlers["leadflow-local-track"]
        signer = system.modules["track"].service._signer
        links = SignedLinks(signer, system.public_base_url, "m-bench", "c-bench")
        open_path = urlsplit(links.open_pixel_url).path
        click_path = urlsplit(links.click("https://example.com/pricing")).path
        system.invoke_http("GET", open_path)  # warm: cold-start work (secret fetch) is not the hot path

        hits = 50
        with counting_calls() as calls:
            for i in range(hits):
                system.invoke_http("GET", open_path if i % 2 else click_path)
        writes = sum(n for op, n in calls.items() if op in WRITES) / hits
        reads = sum(n for op, n in calls.items() if op in READS) / hits
        others = {op: n for op, n in calls.items() if op not in WRITES | READS}

        ddb = wiring.client("dynamodb")  # the functions' client (one per process)
        table = os.environ["LEADFLOW_EVENTS_TABLE"]
        events = system.modules["track"].service._events

        def bare_put() -> None:
            """The same item the handler writes for an open, written directly: the handler's floor."""
            item = events.item(
                Event(
                    event_id=ids.new_event_id(),
                    type="email_opened",
                    occurred_at=iso(utc_now()),
                    contact_id="c-bench",
                    message_id="m-bench",
                    source="email",
                    properties={"user_agent": "bench", "ip": "127.0.0.0"},  # what an open records
                )
            )
            ddb.put_item(
                TableName=table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )

        event = _http_event(open_path)
        context = lambda_context("leadflow-local-track")

        def pixel_hit() -> None:
            track(event, context)

        # interleave to share the machine's state fairly
        put_times, track_times = [], []
        for _ in range(4):
            put_times.append(median_seconds(bare_put, SAMPLES // 4))
            track_times.append(median_seconds(pixel_hit, SAMPLES // 4))
        put_median, track_median = statistics.median(put_times), statistics.median(track_times)
        ratio = track_median / put_median
        env = settings_env(system.public_base_url)
        report_ddb = system.client("dynamodb")
        report_small, report_large = report_calls(report_ddb, 100), report_calls(report_ddb, 10_000)
        streams = stream_figures(system, [_sign_up(system, n) for n in range(50)])

    journey_lines, journey_json = journey_figures()
    imports = import_ratios(env | {"AWS_DEFAULT_REGION": "us-east-1"})
    functions = [fn for fn in imports if fn != "boto3_s"]
    worst_fn = max(functions, key=lambda fn: imports[fn])
    restores = restore_ratios(env | {"AWS_DEFAULT_REGION": "us-east-1"}, imports["boto3_s"])
    worst_restore = max(functions, key=lambda fn: restores[fn])

    print("leadflow bench (local runtime, moto in-process; ratios measured in this run)")
    print(
        f"(a) AWS calls per pixel/click hit: writes {writes:.2f} (target 1), reads {reads:.2f} (target 0)"
        + (f", other {others}" if others else "")
    )
    print(
        f"(b) track per pixel hit {track_median * 1000:.3f} ms / bare put_item {put_median * 1000:.3f} ms"
        f" = {ratio:.2f} (target <= 1.3)"
    )
    print(f"(d) AWS calls to build a journey report: {report_small} with 100 contacts, "
          f"{report_large} with 10,000 (target: equal)")  # fmt: skip
    print(f"(e) stream records through score + trigger: {streams['stream_records_per_s']:.0f} records/s; "
          f"cost with 10 past events / with 10,000: {streams['history_cost_ratio']:.2f} (target >= 0.9)")  # fmt: skip
    print(f"(c) import time / import boto3 ({imports['boto3_s'] * 1000:.0f} ms), target <= 1.5 each;"
          " with SnapStart, after-restore hooks / import boto3:")  # fmt: skip
    for fn in functions:
        print(f"      {fn:<16} import {imports[fn]:.2f}   restore {restores[fn]:.4f}")
    for line in journey_lines:
        print(line)
    print(json.dumps({
        "writes_per_track_event": round(writes, 3),
        "reads_per_track_event": round(reads, 3),
        "track_vs_put_item_ratio": round(ratio, 3),
        "import_vs_boto3_ratio": round(imports[worst_fn], 3),
        "import_worst_function": worst_fn,
        "restore_vs_boto3_ratio": round(restores[worst_restore], 4),
        "restore_worst_function": worst_restore,
        "track_median_ms": round(track_median * 1000, 4),
        "put_item_median_ms": round(put_median * 1000, 4),
        "report_calls_small": report_small,
        "report_calls_large": report_large,
        "stream_records_per_s": streams["stream_records_per_s"],
        "history_cost_ratio": streams["history_cost_ratio"],
        **journey_json,
    }))  # fmt: skip
    return 0


def _sign_up(system: LocalSystem, n: int) -> str:
    reply = system.invoke_http(
        "POST",
        "/forms/newsletter",
        headers={"content-type": "application/json"},
        body=json.dumps({"email": f"bench-{n}@example.com", "first_name": "Bench", "consent": True}),
    )
    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


def _http_event(path: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "GET /t/o/{token}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"user-agent": "bench"},
        "pathParameters": {"token": path.rsplit("/", 1)[1]},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": "GET /t/o/{token}",
            "stage": "$default",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }


if __name__ == "__main__":
    raise SystemExit(main())
