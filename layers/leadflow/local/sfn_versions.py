"""Step Functions state machine versions and aliases locally, as AWS runs them.

The deployed stage publishes a version of every journey on each deploy and starts executions on
the journey's alias (``leadflow.kernel.settings.Settings.state_machine_alias_arn``); an execution keeps
the version it started on. moto 5.2.5 publishes versions and keeps aliases, but:

- ``StartExecution`` on an alias ARN fails (it resolves only unqualified and version ARNs): here
  the alias's routing picks the version (by weight) and the execution remembers the alias;
- an execution started on a version lives in ``version.executions``, where ``DescribeExecution``,
  ``GetExecutionHistory``, ``StopExecution``, ``SendTask*`` and ``ListExecutions`` of the state
  machine do not look: here they find it (execution ARNs name the state machine, as in AWS:
  ``…:execution:<machine>:<name>``), and execution names stay unique per state machine across
  its versions;
- ``DescribeExecution``/``ListExecutions`` answer ``stateMachineArn`` (the unqualified ARN),
  ``stateMachineVersionArn`` and ``stateMachineAliasArn`` as AWS does; ``ListExecutions`` takes a
  state machine (every execution), version or alias ARN (the executions started on it);
- ``ListStateMachineVersions`` does not exist in moto: added, newest first.

``check_moto`` is the canary: it fails loudly when an upgrade moves what this relies on
(``tests/integration/test_journey_versions.py`` runs it).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.stepfunctions import models as sfn_models
from moto.stepfunctions.exceptions import (
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ResourceNotFound,
    StateMachineDoesNotExist,
)
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse
from moto.stepfunctions.utils import PAGINATION_MODEL
from moto.utilities.paginator import paginate

from leadflow.local.moto_patches import Patch, patched

ALIAS_ATTRIBUTE = "leadflow_alias_arn"
"""Where an execution started on an alias keeps the alias's ARN."""


def check_moto() -> None:
    """The internals these patches rely on are where they expect them."""
    backend = sfn_models.StepFunctionBackend
    for owner, attribute in (
        (backend, "_get_state_machine_for_execution"),
        (backend, "describe_state_machine"),
        (backend, "stop_execution"),
        (backend, "list_executions"),
        (StepFunctionsParserBackend, "start_execution"),
        (StepFunctionsParserBackend, "_get_executions"),
        (StepFunctionResponse, "describe_execution"),
        (StepFunctionResponse, "list_executions"),
        (StepFunctionResponse, "stepfunction_backend"),
        (sfn_models.StateMachine, "publish"),
        (sfn_models, "StateMachineVersion"),
        (sfn_models, "StateMachineAlias"),
        (sfn_models.StateMachine, "_handle_name_input_idempotency"),
    ):
        if not hasattr(owner, attribute):
            raise RuntimeError(f"moto internals moved: {owner!r} has no {attribute!r}")
    source = inspect.getsource(sfn_models.StateMachine.__init__)
    if "self.versions" not in source or "self.aliases" not in source:
        raise RuntimeError("moto internals moved: StateMachine keeps no versions/aliases")
    if "routing_configuration" not in inspect.getsource(sfn_models.StateMachineAlias.__init__):
        raise RuntimeError("moto internals moved: StateMachineAlias has no routing_configuration")
    if not _ours(getattr(sfn_models.StateMachineVersion, "_handle_name_input_idempotency", _ours)):
        raise RuntimeError("moto now starts executions on versions: review leadflow's local version patch")
    start = StepFunctionsParserBackend.start_execution
    if "id(state_machine.backend)" not in inspect.getsource(getattr(start, "__wrapped_original__", start)):
        raise RuntimeError("moto internals moved: start_execution no longer shares the machine's backend")
    if not _ours(getattr(StepFunctionResponse, "list_state_machine_versions", _ours)):
        raise RuntimeError("moto now implements ListStateMachineVersions: drop leadflow's local one")


def _ours(function: Any) -> bool:
    """A patch of this module (already installed by another local system of this process)."""
    return bool(getattr(function, "__module__", "") == __name__)


def _machine(backend: Any, arn: str) -> tuple[Any, str]:
    """The state machine of an unqualified, version or alias ARN, and the qualifier ('' for none)."""
    head, _, rest = arn.partition(":stateMachine:")
    name, _, qualifier = rest.partition(":")
    unqualified = f"{head}:stateMachine:{name}"
    machine = next((m for m in backend.state_machines if m.arn == unqualified), None)
    if machine is None:
        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
    return machine, qualifier


def instances(machine: Any) -> list[Any]:
    """The state machine and its versions: every place one of its executions can live."""
    return [machine, *machine.versions.values()]


def all_executions(backend: Any) -> Iterator[Any]:
    """Every execution of every state machine, on any version."""
    for machine in backend.state_machines:
        for instance in instances(machine):
            yield from instance.executions


def executions_of(backend: Any, arn: str) -> list[Any]:
    """ListExecutions' selection: a state machine's every execution, a version's or an alias's own."""
    machine, qualifier = _machine(backend, arn)
    if not qualifier:
        return [e for instance in instances(machine) for e in instance.executions]
    if qualifier.isdigit():
        version = machine.versions.get(int(qualifier))
        if version is None:
            raise ResourceNotFound(f"State Machine Version Does Not Exist: '{arn}'")
        return list(version.executions)
    if qualifier not in machine.aliases:
        raise ResourceNotFound(f"State Machine Alias Does Not Exist: '{arn}'")
    return [
        e
        for instance in instances(machine)
        for e in instance.executions
        if getattr(e, ALIAS_ATTRIBUTE, None) == arn
    ]


def _version_arn(execution: Any) -> str | None:
    instance = getattr(execution, "state_machine", None)
    return instance.arn if isinstance(instance, sfn_models.StateMachineVersion) else None


def _unqualified(execution: Any) -> str:
    instance = execution.state_machine
    return str(instance.source_arn if isinstance(instance, sfn_models.StateMachineVersion) else instance.arn)


@contextmanager
def versions_and_aliases() -> Iterator[None]:
    """While active, executions run on versions and start on aliases as in AWS."""
    check_moto()
    backend = sfn_models.StepFunctionBackend
    original_start = StepFunctionsParserBackend.start_execution
    original_locate = backend._get_state_machine_for_execution
    original_describe = StepFunctionResponse.describe_execution

    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        machine, qualifier = _machine(self, state_machine_arn)
        target, alias_arn = state_machine_arn, None
        if qualifier and not qualifier.isdigit():
            alias = machine.aliases.get(qualifier)
            if alias is None:
                raise ResourceNotFound(f"State Machine Alias Does Not Exist: '{state_machine_arn}'")
            routes = alias.routing_configuration
            [route] = random.choices(routes, weights=[float(r["weight"]) for r in routes])
            target, alias_arn = str(route["stateMachineVersionArn"]), alias.arn
        chosen = self.describe_state_machine(target)
        if not hasattr(chosen, "backend"):  # moto snapshots the machine with its backend shared
            chosen.backend = machine.backend
        # names are unique per state machine, across its versions (AWS)
        for instance in instances(machine):
            for execution in instance.executions:
                if execution.name == name:
                    if execution.execution_input == execution_input and execution.status == "RUNNING":
                        return execution
                    raise ExecutionAlreadyExists(f"Execution Already Exists: '{execution.execution_arn}'")
        execution = original_start(self, target, name, execution_input, trace_header)
        if alias_arn is not None and not hasattr(execution, ALIAS_ATTRIBUTE):
            setattr(execution, ALIAS_ATTRIBUTE, alias_arn)
        return execution

    start_execution.__wrapped_original__ = original_start  # type: ignore[attr-defined]  # for the canary

    def locate(self: Any, execution_arn: str) -> Any:
        name = execution_arn.split(":")[6] if execution_arn.count(":") >= 7 else ""
        for machine in self.state_machines:
            if machine.name != name:
                continue
            for instance in instances(machine):
                if any(e.execution_arn == execution_arn for e in instance.executions):
                    return instance
        return original_locate(self, execution_arn)

    def stop_execution(self: Any, execution_arn: str) -> Any:
        self._validate_execution_arn(execution_arn)
        instance = locate(self, execution_arn)
        execution = next((e for e in instance.executions if e.execution_arn == execution_arn), None)
        if execution is None:
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{execution_arn}'")
        execution.stop(stop_date=utcnow(), error="", cause="")
        return execution

    def get_executions(self: Any, execution_status: Any = None) -> list[Any]:
        return [e for e in all_executions(self) if execution_status is None or execution_status == e.status]

    @paginate(pagination_model=PAGINATION_MODEL)
    def list_executions(self: Any, state_machine_arn: str, status_filter: str | None = None) -> list[Any]:
        found = [
            e
            for e in executions_of(self, state_machine_arn)
            if not status_filter or e.status == status_filter
        ]
        return sorted(found, key=lambda e: e.start_date, reverse=True)

    def associations(execution: Any) -> dict[str, str]:
        out = {"stateMachineArn": _unqualified(execution)}
        version = _version_arn(execution)
        if version:
            out["stateMachineVersionArn"] = version
        alias = getattr(execution, ALIAS_ATTRIBUTE, None)
        if alias:
            out["stateMachineAliasArn"] = alias
        return out

    def describe_execution_response(self: Any) -> ActionResult:
        result = original_describe(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        document = result.result
        assert isinstance(document, dict)
        document.update(associations(execution))
        return result

    def list_executions_response(self: Any) -> ActionResult:
        results, next_token = self.stepfunction_backend.list_executions(
            self._get_param("stateMachineArn"),
            status_filter=self._get_param("statusFilter"),
            max_results=self._get_int_param("maxResults"),
            next_token=self._get_param("nextToken"),
        )
        executions = []
        for execution in results:
            item = {
                "executionArn": execution.execution_arn,
                "name": execution.name,
                "startDate": execution.start_date,
                "status": execution.status,
                **associations(execution),
            }
            if execution.status in ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"):
                item["stopDate"] = execution.stop_date
            executions.append(item)
        return ActionResult({"executions": executions, "nextToken": next_token})

    def list_state_machine_versions(self: Any) -> ActionResult:
        machine, qualifier = _machine(self.stepfunction_backend, self._get_param("stateMachineArn"))
        if qualifier:
            raise StateMachineDoesNotExist(
                f"State Machine Does Not Exist: '{self._get_param('stateMachineArn')}'"
            )
        versions = sorted(machine.versions.values(), key=lambda v: v.version, reverse=True)
        return ActionResult(
            {
                "stateMachineVersions": [
                    {"stateMachineVersionArn": v.arn, "creationDate": v.creation_date} for v in versions
                ]
            }
        )

    def no_second_check(self: Any, name: str, execution_input: str) -> None:
        """A version's name check: ``start_execution`` made it across the state machine's versions."""
        return None

    patches: list[Patch] = [
        (StepFunctionsParserBackend, "start_execution", start_execution),
        (sfn_models.StateMachineVersion, "_handle_name_input_idempotency", no_second_check),
        (StepFunctionsParserBackend, "_get_executions", get_executions),
        (backend, "_get_state_machine_for_execution", locate),
        (backend, "stop_execution", stop_execution),
        (backend, "list_executions", list_executions),
        (StepFunctionResponse, "describe_execution", describe_execution_response),
        (StepFunctionResponse, "list_executions", list_executions_response),
        (StepFunctionResponse, "list_state_machine_versions", list_state_machine_versions),
    ]
    with patched(patches):
        yield
