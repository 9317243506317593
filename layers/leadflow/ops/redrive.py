"""Redrive: re-process what failed, without doing anything twice.

- ``StreamRedrive``: a stream consumer's on-failure queue holds one message per batch whose retries
  were exhausted. The message says where the batch is (shard, first and last sequence number), not
  what it was: the records are read back from the stream, handed to the consumer function again in
  the Lambda DynamoDB-stream event shape, and the message is deleted only when the function
  succeeds for every record. The consumers are idempotent per event (score marker, deterministic
  execution name), so records that were applied before the failure are not applied again. Records
  the stream no longer holds (24 h retention) are reported as expired and their message is kept,
  unless ``delete_expired`` is set.
- ``ExecutionRedrive``: FAILED, TIMED_OUT and ABORTED journey executions are redriven with Step
  Functions ``RedriveExecution``: same execution ARN, same input, resumed from the unsuccessful
  state. Send steps derive their message id from execution id + step id, so a step that already
  sent answers ``duplicate`` and no email goes out twice. An ABORTED execution that leadflow
  stopped on purpose (an erasure, an exit rule: ``leadflow.journeys.runtime.stops``, StopExecution error
  ``leadflow.stopped``) is never redriven: it is read with ``DescribeExecution`` and counted as
  ``skipped`` under its reason (``skipped_by_reason``), so an erased contact is never mailed again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from leadflow.events.streams import lambda_stream_record
from leadflow.journeys.runtime.stops import stopped_on_purpose

CONSUMERS = ("trigger", "score", "report")
EXECUTION_FAILURES = ("FAILED", "TIMED_OUT", "ABORTED")
EXPIRED_STREAM_CODES = {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}
MAX_EMPTY_PAGES = 3


@dataclass
class RedriveSummary:
    """What one redrive did. ``redriven``: done (message deleted, execution redriven);
    ``still_failing``: tried and failed again (left for the next run); ``expired``: can no longer be
    redriven (records trimmed from the stream, execution out of the redrive window);
    ``pending``: found by a dry run, nothing done; ``skipped``: left alone on purpose (an execution
    leadflow stopped for a reason, counted per reason in ``skipped_by_reason``)."""

    name: str
    redriven: int = 0
    still_failing: int = 0
    expired: int = 0
    pending: int = 0
    records: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, outcome: str, **detail: Any) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.items.append({"outcome": outcome, **detail})

    def skip(self, reason: str, **detail: Any) -> None:
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1
        self.add("skipped", **detail, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()  # binary attributes, as Lambda receives them
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class StreamRecordsExpired(Exception):
    """The stream no longer holds the batch's records."""


@dataclass(frozen=True, kw_only=True)
class StreamRedrive:
    """Redrive one stream consumer's on-failure queue into its function. ``event_names``: the
    kinds of stream record the consumer's mapping passes (its filter)."""

    sqs: Any
    streams: Any
    lambda_: Any
    consumer: str
    function_name: str
    queue_url: str
    event_names: Sequence[str] = ("INSERT",)
    wait_seconds: int = 1
    visibility_timeout: int = 900
    delete_expired: bool = False

    def run(self, *, dry_run: bool = False) -> RedriveSummary:
        summary = RedriveSummary(name=f"stream:{self.consumer}")
        messages = self._receive_all()
        kept: list[str] = []
        try:
            for message in sorted(messages, key=_stream_position):
                if not self._redrive(message, summary, dry_run=dry_run):
                    kept.append(message["ReceiptHandle"])
        finally:
            for receipt in kept:  # visible again at once: the next run (or the console) sees them
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                )
        return summary

    def _receive_all(self) -> list[dict[str, Any]]:
        """Every message of the queue, each held invisible for the rest of the run."""
        messages: dict[str, dict[str, Any]] = {}
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=self.visibility_timeout,
                WaitTimeSeconds=self.wait_seconds,
            )
            batch = response.get("Messages", [])
            if not batch:
                return list(messages.values())
            for message in batch:
                messages.setdefault(message["MessageId"], message)

    def _redrive(self, message: dict[str, Any], summary: RedriveSummary, *, dry_run: bool) -> bool:
        """Handle one on-failure message; True when it is done with (deleted)."""
        try:
            info: dict[str, Any] = json.loads(message["Body"])["DDBStreamBatchInfo"]
        except (ValueError, KeyError, TypeError):
            summary.add(
                "still_failing", message_id=message["MessageId"], reason="not a stream on-failure record"
            )
            return False
        position = {
            "message_id": message["MessageId"],
            "shard_id": info.get("shardId"),
            "start": info.get("startSequenceNumber"),
            "end": info.get("endSequenceNumber"),
            "batch_size": info.get("batchSize"),
        }
        try:
            records = self.fetch(info)
        except StreamRecordsExpired as exc:
            summary.add("expired", **position, reason=str(exc))
            return self._drop_expired(message, dry_run=dry_run)
        missing = max(0, int(info.get("batchSize") or 0) - len(records))
        if dry_run:
            summary.add("pending", **position, found=len(records), missing=missing)
            return False
        if records:
            failure = self._invoke(records)
            if failure is not None:
                summary.add("still_failing", **position, reason=failure)
                return False
            summary.records += len(records)
        if missing:
            summary.add(
                "expired",
                **position,
                found=len(records),
                missing=missing,
                reason="records trimmed from stream",
            )
            return self._drop_expired(message, dry_run=dry_run)
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        summary.add("redriven", **position, found=len(records))
        return True

    def _drop_expired(self, message: dict[str, Any], *, dry_run: bool) -> bool:
        if self.delete_expired and not dry_run:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            return True
        return False

    def fetch(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """The batch's records still in the stream (Lambda event shape, the consumer's event names)."""
        stream_arn = str(info["streamArn"])
        start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
        try:
            iterator: str | None = self.streams.get_shard_iterator(
                StreamArn=stream_arn,
                ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=str(info["startSequenceNumber"]),
            )["ShardIterator"]
        except ClientError as exc:
            if _error_code(exc) in EXPIRED_STREAM_CODES:
                raise StreamRecordsExpired(f"{_error_code(exc)}: {exc}") from exc
            raise
        found: list[dict[str, Any]] = []
        empty = 0
        while iterator and empty < MAX_EMPTY_PAGES:
            try:
                response = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            except ClientError as exc:
                if _error_code(exc) in EXPIRED_STREAM_CODES:
                    raise StreamRecordsExpired(f"{_error_code(exc)}: {exc}") from exc
                raise
            iterator = response.get("NextShardIterator")
            page: list[dict[str, Any]] = response.get("Records", [])
            if not page:
                empty += 1
                continue
            empty = 0
            found.extend(r for r in page if start <= int(r["dynamodb"]["SequenceNumber"]) <= end)
            if int(page[-1]["dynamodb"]["SequenceNumber"]) >= end:
                break
        if not found:
            raise StreamRecordsExpired("no record of the batch is left in the stream")
        return [lambda_stream_record(r, stream_arn) for r in found if r["eventName"] in self.event_names]

    def _invoke(self, records: list[dict[str, Any]]) -> str | None:
        """Call the consumer with the records; None on success, else why it failed."""
        response = self.lambda_.invoke(
            FunctionName=self.function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps({"Records": records}, default=_json_default).encode(),
        )
        raw = response["Payload"].read()
        payload: Any = json.loads(raw) if raw else None
        if response.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
            return f"function error ({response['FunctionError']}): {message}"
        failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
        if failures:
            return "batch item failures: " + ", ".join(str(f.get("itemIdentifier")) for f in failures)
        return None


def _stream_position(message: dict[str, Any]) -> tuple[str, int]:
    try:
        info = json.loads(message["Body"])["DDBStreamBatchInfo"]
        return str(info["shardId"]), int(info["startSequenceNumber"])
    except (ValueError, KeyError, TypeError):
        return "", 0


class ExecutionRedrive:
    """Redrive the unsuccessful executions of the journey state machines."""

    def __init__(
        self,
        *,
        sfn: Any,
        state_machine_arns: Iterable[str],
        since: datetime | None = None,
        statuses: Sequence[str] = EXECUTION_FAILURES,
    ) -> None:
        self._sfn = sfn
        self.state_machine_arns = list(state_machine_arns)
        self._since = since.replace(tzinfo=since.tzinfo or UTC) if since else None
        self._statuses = tuple(statuses)

    def failed(self) -> list[dict[str, Any]]:
        """The executions to redrive (ended since ``since``), oldest first."""
        found: list[dict[str, Any]] = []
        paginator = self._sfn.get_paginator("list_executions")
        for arn in self.state_machine_arns:
            for status in self._statuses:
                for page in paginator.paginate(stateMachineArn=arn, statusFilter=status):
                    for execution in page["executions"]:
                        ended = execution.get("stopDate") or execution["startDate"]
                        if self._since is None or ended >= self._since:
                            found.append(execution)
        return sorted(found, key=lambda e: e.get("stopDate") or e["startDate"])

    def run(self, *, dry_run: bool = False) -> RedriveSummary:
        summary = RedriveSummary(name="executions")
        for execution in self.failed():
            detail = {"execution_arn": execution["executionArn"], "status": execution["status"]}
            if execution["status"] == "ABORTED":
                # ListExecutions does not say why: a stop on purpose carries leadflow's marker
                described = self._sfn.describe_execution(executionArn=execution["executionArn"])
                reason = stopped_on_purpose(described)
                if reason is not None:
                    summary.skip(reason, **detail)
                    continue
            if dry_run:
                summary.add("pending", **detail)
                continue
            try:
                self._sfn.redrive_execution(executionArn=execution["executionArn"])
            except ClientError as exc:
                outcome = "expired" if _error_code(exc) == "ExecutionNotRedrivable" else "still_failing"
                summary.add(outcome, **detail, reason=f"{_error_code(exc)}: {exc}")
                continue
            summary.add("redriven", **detail)
        return summary


@dataclass
class StageResources:
    """Names of what a redrive touches in one stage."""

    queue_urls: dict[str, str]
    function_names: dict[str, str]
    state_machine_arns: list[str]


def stage_resources(cfn: Any, stage: str) -> StageResources:
    """From the outputs of the stage's CloudFormation stack ``leadflow-<stage>``."""
    [stack] = cfn.describe_stacks(StackName=f"leadflow-{stage}")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [
        f"{c.capitalize()}FailuresQueue" for c in CONSUMERS if f"{c.capitalize()}FailuresQueue" not in outputs
    ]
    if missing:
        raise LookupError(f"stack leadflow-{stage} has no output {', '.join(missing)}")
    return StageResources(
        queue_urls={c: outputs[f"{c.capitalize()}FailuresQueue"] for c in CONSUMERS},
        function_names={c: f"leadflow-{stage}-{c}" for c in CONSUMERS},
        state_machine_arns=sorted(
            v for k, v in outputs.items() if k.startswith("Journey") and k.endswith("Arn")
        ),
    )


def redrive(
    resources: StageResources,
    *,
    sqs: Any,
    streams: Any,
    lambda_: Any,
    sfn: Any,
    do_streams: bool = True,
    do_executions: bool = True,
    since: datetime | None = None,
    dry_run: bool = False,
    delete_expired: bool = False,
    wait_seconds: int = 1,
) -> list[RedriveSummary]:
    """Stream failures first (they may start journeys), then executions."""
    summaries: list[RedriveSummary] = []
    if do_streams:
        for consumer in CONSUMERS:
            if consumer not in resources.function_names:
                continue  # a stage (or a test) without this consumer
            summaries.append(
                StreamRedrive(
                    sqs=sqs,
                    streams=streams,
                    lambda_=lambda_,
                    consumer=consumer,
                    function_name=resources.function_names[consumer],
                    queue_url=resources.queue_urls[consumer],
                    delete_expired=delete_expired,
                    wait_seconds=wait_seconds,
                ).run(dry_run=dry_run)
            )
    if do_executions:
        summaries.append(
            ExecutionRedrive(sfn=sfn, state_machine_arns=resources.state_machine_arns, since=since).run(
                dry_run=dry_run
            )
        )
    return summaries


def totals(summaries: Iterable[RedriveSummary]) -> dict[str, int]:
    keys = ("redriven", "still_failing", "expired", "pending", "records", "skipped")
    listed = list(summaries)
    return {k: sum(int(getattr(s, k)) for s in listed) for k in keys}


def skipped_by_reason(summaries: Iterable[RedriveSummary]) -> dict[str, int]:
    """Executions left stopped on purpose, per reason (``erasure``, ``exit``, ...)."""
    by_reason: dict[str, int] = {}
    for summary in summaries:
        for reason, count in summary.skipped_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    return dict(sorted(by_reason.items()))
