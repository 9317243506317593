"""Every function's deployed environment starts the function: the variables in the template,
resolved as CloudFormation would, validate against ``leadflow.kernel.settings.Settings`` exactly as a
cold start does (``get_settings()`` reads the process environment), and fit Lambda's 4 KB."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadflow.local.system import FUNCTIONS
from tests.parity import contract
from tests.parity.template import STAGE, Stack


def test_the_stack_deploys_every_function_of_the_local_runtime(stack: Stack) -> None:
    deployed = sorted(n for n in stack.functions() if n.startswith(f"leadflow-{STAGE}-"))
    assert deployed == sorted(f"leadflow-{STAGE}-{name}" for name in FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_starts_with_its_deployed_environment(stack: Stack, name: str) -> None:
    function = f"leadflow-{STAGE}-{name}"
    assert contract.environment_problems(stack, function) == []
    settings = contract.cold_start(stack.environment(function))
    assert settings.stage == STAGE
    assert settings.bulk_queue_url.startswith("https://sqs.")
    assert settings.public_base_url.startswith("https://")


def test_the_defect_template_fails_the_cold_start_check(template_document: dict[str, Any]) -> None:
    """The check is real: ``feedback`` without the bulk queue URL (as the stack built it before)
    does not start."""
    broken = json.loads(json.dumps(template_document))
    logical = Stack(broken).functions()[f"leadflow-{STAGE}-feedback"]
    del broken["Resources"][logical]["Properties"]["Environment"]["Variables"]["LEADFLOW_BULK_QUEUE_URL"]
    assert contract.environment_problems(Stack(broken), f"leadflow-{STAGE}-feedback") == [
        f"leadflow-{STAGE}-feedback: Settings fails at cold start (bulk_queue_url)"
    ]


def test_an_environment_over_4_kb_fails_the_check(template_document: dict[str, Any]) -> None:
    """Lambda refuses a function whose variables total more than 4 KB: many forms in the stage
    configuration would get there."""
    broken = json.loads(json.dumps(template_document))
    logical = Stack(broken).functions()[f"leadflow-{STAGE}-send"]
    variables = broken["Resources"][logical]["Properties"]["Environment"]["Variables"]
    forms = json.loads(variables["LEADFLOW_FORMS"])
    for n in range(40):
        forms[f"form-{n}"] = forms["newsletter"]
    variables["LEADFLOW_FORMS"] = json.dumps(forms)
    [problem] = contract.environment_problems(Stack(broken), f"leadflow-{STAGE}-send")
    assert problem.startswith(f"leadflow-{STAGE}-send: environment is ")
    assert problem.endswith("bytes, Lambda allows 4096 (4 KB)")
