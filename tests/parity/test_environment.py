"""Every function's deployed environment starts the function: the variables in the template,
resolved as CloudFormation would, validate against ``leadflow.settings.Settings`` exactly as a
cold start does (``get_settings()`` reads the process environment), and fit Lambda's 4 KB."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow.local.system import FUNCTIONS
from leadflow.settings import Settings, get_settings
from tests.parity.template import STAGE, Stack

ENVIRONMENT_LIMIT = 4096
"""Lambda: the total size of a function's environment variables (keys and values) is at most 4 KB."""


def cold_start(environment: dict[str, str]) -> Settings:
    """``get_settings()`` in a process whose environment is exactly the function's (plus what the
    Lambda runtime sets, none of it ``LEADFLOW_*``)."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("LEADFLOW_"):
                patch.delenv(key)
        for key, value in environment.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            return get_settings()
        finally:
            get_settings.cache_clear()


def environment_size(environment: dict[str, str]) -> int:
    """What Lambda counts against the 4 KB: the environment as JSON-ish key/value bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in environment.items())


def leadflow_functions(stack: Stack) -> list[str]:
    return sorted(n for n in stack.functions() if n.startswith(f"leadflow-{STAGE}-"))


def test_the_stack_deploys_every_function_of_the_local_runtime(stack: Stack) -> None:
    assert leadflow_functions(stack) == sorted(f"leadflow-{STAGE}-{name}" for name in FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_starts_with_its_deployed_environment(stack: Stack, name: str) -> None:
    environment = stack.environment(f"leadflow-{STAGE}-{name}")
    settings = cold_start(environment)
    assert settings.stage == STAGE
    assert settings.bulk_queue_url.startswith("https://sqs.")
    assert settings.public_base_url.startswith("https://")
    assert set(settings.forms)  # the stage's forms
    assert environment_size(environment) <= ENVIRONMENT_LIMIT, (
        f"{name}: environment is {environment_size(environment)} bytes, Lambda allows {ENVIRONMENT_LIMIT}"
    )


def test_a_removed_variable_fails_the_cold_start_check(template_document: dict[str, Any]) -> None:
    """The check is real: the template of the defect (``feedback`` without the bulk queue URL,
    as the stack built it before) does not start."""
    broken = json.loads(json.dumps(template_document))
    stack = Stack(broken)
    logical = stack.functions()[f"leadflow-{STAGE}-feedback"]
    del broken["Resources"][logical]["Properties"]["Environment"]["Variables"]["LEADFLOW_BULK_QUEUE_URL"]
    with pytest.raises(ValidationError, match="bulk_queue_url"):
        cold_start(Stack(broken).environment(f"leadflow-{STAGE}-feedback"))


def test_an_environment_over_4_kb_is_reported(stack: Stack) -> None:
    environment = stack.environment(f"leadflow-{STAGE}-send")
    environment["LEADFLOW_FORMS"] = json.dumps({"x": "y" * ENVIRONMENT_LIMIT})
    assert environment_size(environment) > ENVIRONMENT_LIMIT
