"""The stream pump: what DynamoDB Streams event source mappings do in AWS, done locally.

It reads the events table's stream and hands each consumer real Lambda DynamoDB-stream events
with the deployed mapping's semantics: INSERT filter, batches, partial batch failures
(``batchItemFailures`` → retry from the first failed record), bisection of a failing batch, and
after the last attempt the failed record goes to the consumer's on-failure SQS queue. Each consumer
keeps its own position; nothing is dropped silently."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from leadflow.events.streams import lambda_stream_record
from leadflow.local.moto_patches import Handler, lambda_context

log = logging.getLogger("leadflow.local.pump")
SHARDS_REFRESH_SECONDS = 1.0
"""How often the shard list is read again (each read costs a DescribeStream; shards rarely change)."""


def _iso(epoch: Any) -> str | None:
    """``2019-11-14T00:38:06.021Z``, as AWS writes times in on-failure records."""
    if epoch is None:
        return None
    moment = epoch if isinstance(epoch, datetime) else datetime.fromtimestamp(float(epoch), UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Consumer:
    name: str
    handler: Handler
    dlq_url: str
    batch_size: int = 100
    max_attempts: int = 3
    event_names: tuple[str, ...] = ("INSERT",)
    buffer: deque[dict[str, Any]] = field(default_factory=deque)
    attempts: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    dead_lettered: int = 0


C = TypeVar("C")


class _Pump(ABC, Generic[C]):
    """A pump of its consumers (``C``) that runs on a daemon thread (``start``) every ``interval``
    seconds until ``stop``; an error is logged, given to ``on_error`` and the next round runs."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._consumers: list[C] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def consumers(self) -> list[C]:
        return list(self._consumers)

    def add_consumer(self, consumer: C) -> None:
        self._consumers.append(consumer)

    @abstractmethod
    def _pump(self) -> None:
        """One round: deliver what each consumer has waiting."""

    def start(self, interval: float = 0.05, on_error: Callable[[BaseException], None] | None = None) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self._pump()
                except Exception as exc:
                    log.exception(self.name)
                    if on_error:
                        on_error(exc)

        self._thread = threading.Thread(target=run, name=self.name.replace(" ", "-"), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


class StreamPump(_Pump[Consumer]):
    name = "stream pump"

    def __init__(self, *, streams: Any, sqs: Any, stream_arn: str, region: str) -> None:
        super().__init__()
        self._streams = streams
        self._sqs = sqs
        self._stream_arn = stream_arn
        self._region = region
        self._iterators: dict[str, str] = {}
        self._shards: list[str] = []
        self._shards_read_at = 0.0

    def _read(self) -> list[dict[str, Any]]:
        """New stream records of every shard since the last read."""
        records: list[dict[str, Any]] = []
        if time.monotonic() - self._shards_read_at > SHARDS_REFRESH_SECONDS:
            described = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
            self._shards = [shard["ShardId"] for shard in described["Shards"]]
            self._shards_read_at = time.monotonic()
        for shard_id in self._shards:
            # a fresh iterator after the last record read, each time: moto replaces a table's stream
            # shard when it rolls back a cancelled transaction, and an old iterator would read the
            # abandoned shard forever
            last = self._iterators.get(shard_id)
            position: dict[str, str] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
                if last
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard_id, **position
            )["ShardIterator"]
            while True:
                resp = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = resp["NextShardIterator"]
                records.extend(resp["Records"])
                if resp["Records"]:
                    self._iterators[shard_id] = str(resp["Records"][-1]["dynamodb"]["SequenceNumber"])
                if len(resp["Records"]) < 1000:
                    break
        return records

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        return lambda_stream_record(record, self._stream_arn)

    def drain(self) -> int:
        """Deliver everything in the stream now; returns how many records were handed to consumers."""
        with self._lock:
            delivered = 0
            new = [self._lambda_record(r) for r in self._read()]
            for consumer in self._consumers:
                consumer.buffer.extend(r for r in new if r["eventName"] in consumer.event_names)
                delivered += self._deliver(consumer)
            return delivered

    def pending(self) -> int:
        with self._lock:
            return sum(len(c.buffer) for c in self._consumers)

    def _deliver(self, consumer: Consumer) -> int:
        delivered = 0
        size = consumer.batch_size
        while consumer.buffer:
            batch = [consumer.buffer[i] for i in range(min(size, len(consumer.buffer)))]
            failed_from = self._invoke(consumer, batch)
            if failed_from is None:
                for _ in batch:
                    consumer.buffer.popleft()
                delivered += len(batch)
                consumer.delivered += len(batch)
                size = consumer.batch_size
                continue
            for _ in range(failed_from):  # records before the first failure are done
                consumer.buffer.popleft()
            delivered += failed_from
            consumer.delivered += failed_from
            head = consumer.buffer[0]
            seq = head["dynamodb"]["SequenceNumber"]
            consumer.attempts[seq] = consumer.attempts.get(seq, 0) + 1
            if consumer.attempts[seq] >= consumer.max_attempts:
                if size > 1:  # bisect: retry the failing record on its own before giving up
                    size = 1
                    consumer.attempts[seq] = consumer.max_attempts - 1
                    continue
                self._dead_letter(consumer, consumer.buffer.popleft())
                consumer.attempts.pop(seq, None)
                size = consumer.batch_size
        return delivered

    def _invoke(self, consumer: Consumer, batch: list[dict[str, Any]]) -> int | None:
        """Index of the first failed record of the batch, or None when all succeeded."""
        try:
            response = consumer.handler({"Records": batch}, lambda_context(consumer.name))
        except Exception:
            log.exception("consumer %s failed a batch of %d", consumer.name, len(batch))
            return 0
        failures = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        if not failures:
            return None
        for index, record in enumerate(batch):
            if record["dynamodb"]["SequenceNumber"] in failures:
                return index
        return 0  # an identifier that is not in the batch: AWS retries the whole batch

    def _dead_letter(self, consumer: Consumer, record: dict[str, Any]) -> None:
        """Send the on-failure record AWS sends for a stream batch whose retries are exhausted: the
        batch's position in the stream (shard and sequence range), never the records themselves.
        ``leadflow ops redrive`` reads the records back from the stream with it."""
        consumer.dead_lettered += 1
        log.error("consumer %s: record %s sent to its on-failure queue", consumer.name, record["eventID"])
        seq = record["dynamodb"]["SequenceNumber"]
        arrival = _iso(record["dynamodb"].get("ApproximateCreationDateTime"))
        account = self._stream_arn.split(":")[4]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self._region}:{account}:function:{consumer.name}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": consumer.attempts.get(seq, consumer.max_attempts),
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": self._shard_of(seq),
                "startSequenceNumber": seq,
                "endSequenceNumber": seq,
                "approximateArrivalOfFirstRecord": arrival,
                "approximateArrivalOfLastRecord": arrival,
                "batchSize": 1,
                "streamArn": self._stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=consumer.dlq_url, MessageBody=json.dumps(message))

    def _shard_of(self, sequence_number: str) -> str:
        """The shard whose sequence number range holds ``sequence_number``."""
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        for shard in reversed(shards):
            if int(shard["SequenceNumberRange"]["StartingSequenceNumber"]) <= int(sequence_number):
                return str(shard["ShardId"])
        return str(shards[0]["ShardId"])

    def _pump(self) -> None:
        self.drain()


@dataclass
class QueueConsumer:
    """An SQS event source mapping, done locally: ``handler`` gets real SQS events (batches of
    ``batch_size``); the records it does not report as failed (``batchItemFailures``) are deleted,
    the failed ones become visible again after ``retry_delay`` seconds, and a message received
    ``max_receives`` times is moved to ``dead_letters`` (the redrive policy's dead-letter queue)."""

    name: str
    handler: Handler
    queue_url: str
    queue_arn: str
    batch_size: int = 1
    max_receives: int = 5
    retry_delay: int = 0
    delivered: int = 0
    failed: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class QueuePump(_Pump[QueueConsumer]):
    """Pumps SQS queues into their consumers (the bulk worker)."""

    name = "queue pump"

    def __init__(self, *, sqs: Any, region: str) -> None:
        super().__init__()
        self._sqs = sqs
        self._region = region

    def _record(self, consumer: QueueConsumer, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attributes.get("SenderId", "local"),
                "ApproximateFirstReceiveTimestamp": attributes.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
            },
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": consumer.queue_arn,
            "awsRegion": self._region,
        }

    def drain_once(self) -> int:
        """One receive per consumer; returns how many messages were handed over."""
        with self._lock:
            handed = 0
            for consumer in self._consumers:
                messages = self._sqs.receive_message(
                    QueueUrl=consumer.queue_url,
                    MaxNumberOfMessages=min(10, consumer.batch_size),
                    AttributeNames=["All"],
                    VisibilityTimeout=30,
                ).get("Messages", [])
                if messages:
                    handed += len(messages)
                    self._deliver(consumer, messages)
            return handed

    def drain(self, max_rounds: int = 100_000) -> int:
        """Deliver until the queues are empty (failed jobs are retried at once); returns how many."""
        total = 0
        for _ in range(max_rounds):
            moved = self.drain_once()
            total += moved
            if moved == 0:
                return total
        return total

    def _deliver(self, consumer: QueueConsumer, messages: list[dict[str, Any]]) -> None:
        records = [self._record(consumer, m) for m in messages]
        try:
            response = consumer.handler({"Records": records}, lambda_context(consumer.name))
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception:
            log.exception("consumer %s failed a batch of %d", consumer.name, len(records))
            failed = {r["messageId"] for r in records}
        for message, record in zip(messages, records, strict=True):
            if record["messageId"] not in failed:
                consumer.delivered += 1
                self._sqs.delete_message(QueueUrl=consumer.queue_url, ReceiptHandle=message["ReceiptHandle"])
                continue
            consumer.failed += 1
            receives = int(record["attributes"]["ApproximateReceiveCount"])
            if receives >= consumer.max_receives:
                log.error("consumer %s: job %s dead-lettered", consumer.name, record["messageId"])
                consumer.dead_letters.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=consumer.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                self._sqs.change_message_visibility(
                    QueueUrl=consumer.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=consumer.retry_delay,
                )

    def _pump(self) -> None:
        while self.drain_once() and not self._stop.is_set():
            pass
