"""Small, guarded patches of moto 5.2.5 internals that make its Step Functions interpreter usable
as a local runtime:

- Lambda tasks (``lambda:invoke``) are dispatched to the in-process handlers;
- Wait states (Seconds, SecondsPath, Timestamp) run on the virtual clock, a Timestamp wait to the
  exact (fractional) moment: moto rounds the remaining seconds down, which woke a send deferred to
  08:00 at 07:59:59;
- callback tasks (``.waitForTaskToken``): the wait for ``SendTaskSuccess``/``SendTaskFailure``, its
  ``TimeoutSeconds`` and ``HeartbeatSeconds``, and the execution-state timeout around every task run
  on the virtual clock (moto waits on real time); a task parked on its token counts as parked;
  ``StopExecution`` of an execution parked on its token ends it ABORTED, as in AWS (moto let the
  wait run out and the timeout's failure overwrote the stop: FAILED; the history keeps a
  ``TaskSucceeded`` with output ``{}`` before ``ExecutionAborted``, which AWS does not write);
- Retry back-off sleeps briefly in real time instead of for seconds;
- ``RedriveExecution``, which moto 5.2.5 does not implement (see ``redrive_execution``);
- ``SendTaskFailure`` passes the ``cause`` on (moto's response handler drops it, so a Catch saw an
  empty Cause where AWS gives the one sent);
- the interpreter's Lambda client is made once instead of once per task, and a definition is
  parsed once instead of at every StartExecution and DescribeExecution (a boto3 client costs tens
  of milliseconds, parsing a journey's ASL with ANTLR hundreds: with many executions that was most
  of the local runtime's time). Parsed programs hold no per-execution state; the concurrency
  tests run many executions of one definition at once;
- DynamoDB condition and filter expressions are parsed once per (expression, names, values)
  instead of at every write: moto's parser was most of the cost of a conditional put, and a bulk
  import makes thousands of identical ``attribute_not_exists(pk)`` checks;
- ``TransactWriteItems`` keeps a copy of the items it touches (and the stream's length) to roll back
  with, instead of deep-copying every table it writes to: moto's copy made each transaction cost
  as much as the whole table, so a local import of thousands of contacts slowed to a crawl.

``tests/integration/test_local_canary.py`` fails loudly if an upgrade moves these internals.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import inspect
import json
import re
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import moto
from moto.awslambda_simple import models as lambda_simple
from moto.core.responses import ActionResult, EmptyResult
from moto.dynamodb import comparisons as dynamodb_comparisons
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import table as dynamodb_table
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table as DynamoTable
from moto.stepfunctions.parser.api import ExecutionNotRedrivable
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as callback_service,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp as wait_timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
from moto.stepfunctions.parser.asl.eval.callback import callback as callback_eval
from moto.stepfunctions.parser.asl.static_analyser.variable_references_static_analyser import (
    VariableReferencesStaticAnalyser,
)
from moto.stepfunctions.parser.backend import execution_worker
from moto.stepfunctions.parser.backend.execution import Execution as SfnExecution
from moto.stepfunctions.responses import StepFunctionResponse

from leadflow.local.clock import VirtualClock

MOTO_VERSION = "5.2.5"
RETRY_REAL_SLEEP_CAP = 0.02  # seconds of real time per Retry back-off locally

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def lambda_context(
    function_name: str, region: str = "us-east-1", account: str = "123456789012"
) -> LambdaContext:
    return LambdaContext(
        function_name=function_name,
        invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{function_name}",
        aws_request_id=str(uuid.uuid4()),
    )


def _function_name(name_or_arn: str) -> str:
    return name_or_arn.split(":function:")[-1].split(":")[0] if ":function:" in name_or_arn else name_or_arn


def check_moto() -> None:
    """Fail loudly when moto is not the version these patches were written for."""
    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(f"leadflow's local runtime patches moto {MOTO_VERSION}; found {moto.__version__}")
    for owner, attribute in (
        (lambda_simple.LambdaSimpleBackend, "invoke"),
        (wait_function.WaitFunction, "_wait_interval"),
        (retrier_decl, "time"),
        (wait_timestamp, "datetime"),
        (StepFunctionResponse, "stepfunction_backend"),
        (StepFunctionResponse, "send_task_failure"),
        (SfnExecution, "start"),
        (lambda_eval_utils, "boto_client_for"),
        (execution_worker, "AmazonStateLanguageParser"),
        (VariableReferencesStaticAnalyser, "process_and_get"),
        (dynamodb_models, "copy"),
        (dynamodb_models, "get_filter_expression"),
        (dynamodb_table, "get_filter_expression"),
        (dynamodb_models.DynamoDBBackend, "transact_write_items"),
        (DynamoTable, "get_item"),
        (wait_timestamp.Timestamp, "_get_wait_seconds"),
        (wait_timestamp.Timestamp, "_from_timestamp_string"),
        (callback_service.StateTaskServiceCallback, "_eval_wait_for_task_token"),
        (callback_eval.CallbackEndpoint, "get_outcome"),
        (callback_eval.HeartbeatEndpoint, "clear_and_wait"),
        (callback_eval, "CallbackOutcomeSuccess"),
        (execute_state, "threading"),
    ):
        if not hasattr(owner, attribute):
            raise RuntimeError(f"moto internals moved: {owner!r} has no {attribute!r}")
    for owner, attribute in (
        (callback_eval.CallbackEndpoint, "_notify_event"),
        (callback_eval.HeartbeatEndpoint, "_next_heartbeat_event"),
        (callback_eval.HeartbeatEndpoint, "_heartbeat_seconds"),
        (callback_eval.HeartbeatEndpoint, "_mutex"),
    ):
        if attribute not in getattr(owner, "__annotations__", {}):
            raise RuntimeError(f"moto internals moved: {owner!r} has no {attribute!r}")
    if "exec_worker" not in SfnExecution.__annotations__:
        raise RuntimeError(f"moto internals moved: {SfnExecution!r} has no 'exec_worker'")
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    if "cause" not in inspect.signature(StepFunctionsParserBackend.send_task_failure).parameters:
        raise RuntimeError("moto internals moved: the parser backend's send_task_failure takes no cause")
    if getattr(StepFunctionResponse, "redrive_execution", redrive_execution) is not redrive_execution:
        raise RuntimeError("moto now implements RedriveExecution: drop leadflow's local redrive patch")


def send_task_failure(self: Any) -> Any:
    """moto's ``SendTaskFailure`` with the ``cause`` passed on, as AWS does."""
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return ORIGINAL_SEND_TASK_FAILURE_RESULT()


ORIGINAL_SEND_TASK_FAILURE_RESULT = EmptyResult


REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")


def redrive_execution(self: Any) -> ActionResult:
    """``RedriveExecution`` for the local runtime (moto 5.2.5 has none).

    AWS resumes a FAILED, TIMED_OUT or ABORTED Standard execution from its unsuccessful state,
    keeping the execution ARN and input. Locally the execution's program is run again from its start
    under the same ARN with the same input (status back to RUNNING, a fresh history). For leadflow's
    journeys that is equivalent: a send step that already sent finds its message id
    (execution id + step id) claimed and returns ``duplicate``, so nothing is sent twice; a Wait
    state waits again on the virtual clock."""
    arn = self._get_param("executionArn")
    execution = self.stepfunction_backend.describe_execution(arn)
    if not isinstance(execution, SfnExecution):
        raise ExecutionNotRedrivable(
            "RedriveExecution needs moto's Step Functions interpreter", "ExecutionNotRedrivable"
        )
    if execution.status not in REDRIVABLE:
        raise ExecutionNotRedrivable(
            f"Execution is {execution.status} and cannot be redriven.", "ExecutionNotRedrivable"
        )
    execution.exec_worker = None
    execution.stop_date = None
    execution.error = None
    execution.cause = None
    execution.output = None
    redrive_date = _dt.datetime.now(_dt.UTC)
    execution.start()
    return ActionResult({"redriveDate": redrive_date})


_parse_expression = dynamodb_comparisons.get_filter_expression


@functools.lru_cache(maxsize=8192)
def _parsed_expression(expression: str | None, names: str, values: str) -> Any:
    return _parse_expression(expression, json.loads(names), json.loads(values))


def cached_filter_expression(expression: str | None, names: Any, values: Any) -> Any:
    """moto's ``get_filter_expression``, memoized: the parsed condition is immutable and depends
    only on its three inputs (a parse error is raised every time, never cached)."""
    return _parsed_expression(
        expression, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True)
    )


class _TableCopyShim:
    """``copy`` for moto's transact_write_items: tables are not copied (``_rollback`` restores the
    touched items instead); anything else is copied as before."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, DynamoTable):
            return value
        return copy.deepcopy(value, memo)


def _transaction_snapshot(backend: Any, transact_items: list[dict[str, Any]]) -> list[Callable[[], None]]:
    """Undo actions for the items a transaction touches and for the streams it appends to."""
    undo: list[Callable[[], None]] = []
    streams: dict[str, Any] = {}
    for entry in transact_items[:100]:
        if len(entry) != 1:
            continue
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName", ""))
        if table is None:
            continue
        key = op.get("Key") or op.get("Item") or {}
        try:
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except KeyError:
            continue
        current = table.get_item(hash_key, range_key)
        saved = copy.deepcopy(current) if current is not None else None

        def restore(table: Any = table, h: Any = hash_key, r: Any = range_key, item: Any = saved) -> None:
            if r is None:
                if item is None:
                    table.items.pop(h, None)
                else:
                    table.items[h] = item
            elif item is None:
                table.items[h].pop(r, None)
            else:
                table.items[h][r] = item

        undo.append(restore)
        if table.stream_shard is not None and table.name not in streams:
            streams[table.name] = (table.stream_shard, len(table.stream_shard.items))
    for shard, length in streams.values():

        def truncate(shard: Any = shard, length: int = length) -> None:
            del shard.items[length:]

        undo.append(truncate)
    return undo


Patch = tuple[Any, str, Any]
"""(owner: a module or class, attribute name, replacement)."""


@contextmanager
def patched(patches: Sequence[Patch]) -> Iterator[None]:
    """Each owner's attribute replaced while active; on exit put back exactly as the owner held it
    (its own value, descriptors such as ``staticmethod`` included; one it only inherited or did
    not have: removed again)."""
    missing = object()
    saved = [(owner, name, vars(owner).get(name, missing)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            if original is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


@contextmanager
def patched_moto(clock: VirtualClock, handlers: Mapping[str, Handler]) -> Iterator[None]:
    """Install the patches for the duration of the block."""
    check_moto()

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        name = _function_name(function_name)
        handler = handlers.get(name)
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorMessage": f"no local handler for {name}", "errorType": "ResourceNotFound"}
            ).encode()
        payload = json.loads(body) if body else {}
        try:
            result = handler(payload, lambda_context(name))
        except Exception as exc:  # an unhandled Lambda error: Retry/Catch match on the error name
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode()
        return json.dumps(result).encode()

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        clock.sleep(wait_seconds, cancelled=lambda: not env.is_running())

    class VirtualDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> VirtualDatetime:  # naive means UTC, as in moto
            moment = cls.fromtimestamp(clock.now(), tz or _dt.UTC)
            return moment if tz else moment.replace(tzinfo=None)

    def timestamp_wait_seconds(self: Any, env: Any) -> float:
        """Seconds from virtual now to the Timestamp, fractions kept (moto rounds down to whole
        seconds, which wakes a wait for 08:00:00 at 07:59:59.x on a clock with fractions)."""
        self.string.eval(env=env)
        text: str = env.stack.pop()
        moment = self._from_timestamp_string(timestamp=text)
        if moment is None:
            raise FailureEventException(self._create_failure_event(env, text))
        fraction = re.search(r"\.(\d+)Z$", text)
        exact: float = moment.replace(tzinfo=_dt.UTC).timestamp() + (
            float(f"0.{fraction[1]}") if fraction else 0.0
        )
        return exact - clock.now()

    def wait_for_task_token(
        self: Any, env: Any, timeout_seconds: int, callback_endpoint: Any, heartbeat_endpoint: Any
    ) -> Any:
        """Park on the virtual clock until the token is answered (or the task ends otherwise);
        ``TimeoutSeconds`` runs out on the virtual clock. With ``HeartbeatSeconds`` moto's own
        loop runs, its heartbeat wait patched below."""
        if heartbeat_endpoint is not None:
            return original_wait_for_token(self, env, timeout_seconds, callback_endpoint, heartbeat_endpoint)
        answered = getattr(callback_endpoint, "_notify_event")  # noqa: B009 - private
        clock.sleep(timeout_seconds, cancelled=lambda: not env.is_running(), wake=answered)
        outcome = callback_endpoint.get_outcome()
        if outcome is None and not env.is_running():
            # StopExecution while parked (AWS: ABORTED, the task simply ends): an outcome that
            # raises nothing, so no failure overwrites the stop; every later state is pruned
            return callback_eval.CallbackOutcomeSuccess(
                callback_id=callback_endpoint.callback_id, output="{}"
            )
        if outcome is None:
            return callback_eval.CallbackOutcomeTimedOut(callback_id=callback_endpoint.callback_id)
        return outcome

    def heartbeat_clear_and_wait(self: Any) -> bool:
        beat = getattr(self, "_next_heartbeat_event")  # noqa: B009 - private
        with getattr(self, "_mutex"):  # noqa: B009 - private
            if beat.is_set():
                beat.clear()
                return True
        clock.sleep(float(getattr(self, "_heartbeat_seconds")), cancelled=beat.is_set)  # noqa: B009
        return bool(beat.is_set())

    class VirtualDeadlineEvent(threading.Event):
        """``threading.Event`` whose ``wait(timeout)`` times out on the virtual clock, strictly after
        the timeout (a callback task's own timeout, due at the same moment, wins the race and
        reports ``States.Timeout`` itself). Not a parked waiter: the task inside is running."""

        def wait(self, timeout: float | None = None) -> bool:
            if timeout is None:
                return super().wait()
            due = clock.now() + timeout
            while not super().wait(0.05):
                if clock.now() > due:
                    return False
            return True

    threading_shim = types.SimpleNamespace(Event=VirtualDeadlineEvent, Thread=threading.Thread)
    original_wait_for_token = callback_service.StateTaskServiceCallback._eval_wait_for_task_token

    datetime_shim = types.SimpleNamespace(
        datetime=VirtualDatetime, timezone=_dt.timezone, timedelta=_dt.timedelta
    )
    time_shim = types.SimpleNamespace(
        sleep=lambda seconds: time.sleep(min(float(seconds), RETRY_REAL_SLEEP_CAP))
    )

    clients: dict[tuple[str, str], Any] = {}
    clients_lock = threading.Lock()
    make_client = getattr(lambda_eval_utils, "boto_client_for")  # noqa: B009 - not re-exported

    def cached_client(region: str, service: str, state_credentials: Any = None) -> Any:
        with clients_lock:
            key = (region, service)
            if key not in clients:
                clients[key] = make_client(region, service, state_credentials)
            return clients[key]

    parser = getattr(execution_worker, "AmazonStateLanguageParser")  # noqa: B009 - not re-exported
    analyse = VariableReferencesStaticAnalyser.process_and_get
    parsed: dict[str, Any] = {}
    analysed: dict[str, Any] = {}
    parse_lock = threading.Lock()

    class CachingParser:
        @staticmethod
        def parse(definition: str) -> Any:
            with parse_lock:
                if definition not in parsed:
                    parsed[definition] = parser.parse(definition)
                return parsed[definition]

    def cached_references(definition: str) -> Any:
        with parse_lock:
            if definition not in analysed:
                analysed[definition] = analyse(definition)
            return analysed[definition]

    original_transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        undo = _transaction_snapshot(self, transact_items)
        try:
            original_transact(self, transact_items)
        except Exception:
            for action in reversed(undo):
                action()
            raise

    patches: list[Patch] = [
        (dynamodb_models, "get_filter_expression", cached_filter_expression),
        (dynamodb_table, "get_filter_expression", cached_filter_expression),
        (dynamodb_models, "copy", _TableCopyShim),
        (dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items),
        (lambda_eval_utils, "boto_client_for", cached_client),
        (execution_worker, "AmazonStateLanguageParser", CachingParser),
        (VariableReferencesStaticAnalyser, "process_and_get", staticmethod(cached_references)),
        (lambda_simple.LambdaSimpleBackend, "invoke", invoke),
        (wait_function.WaitFunction, "_wait_interval", wait_interval),
        (retrier_decl, "time", time_shim),
        (wait_timestamp, "datetime", datetime_shim),
        (wait_timestamp.Timestamp, "_get_wait_seconds", timestamp_wait_seconds),
        (callback_service.StateTaskServiceCallback, "_eval_wait_for_task_token", wait_for_task_token),
        (callback_eval.HeartbeatEndpoint, "clear_and_wait", heartbeat_clear_and_wait),
        (execute_state, "threading", threading_shim),
        (StepFunctionResponse, "redrive_execution", redrive_execution),
        (StepFunctionResponse, "send_task_failure", send_task_failure),
    ]
    with patched(patches):
        yield
