"""What each function loads at cold start: the imports and clients taken out of the init phase
stay out (``make bench`` measures the time; these tests catch a regression without timing).

Each function module is imported in a fresh interpreter with the environment Lambda gives it
(tracing and metrics on), and the test reads back ``sys.modules``, the boto3 clients built and the
content models whose validators were built: with the repository's content (the local runtime: the
YAML path) and with content precompiled as the layer's build leaves it (what Lambda runs)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from leadflow import precompiled
from leadflow.local.system import AWS_ENV, FUNCTIONS, settings_env
from tests.helpers import ROOT, last_line_printed

PROBE = """
import importlib.util, json, sys
name = sys.argv[1]
spec = importlib.util.spec_from_file_location("fn_" + name, f"functions/{name}/app.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from leadflow import wiring
import pydantic
content_modules = ("leadflow.journeys.model", "leadflow.leads.model", "leadflow.segments.definitions")
built = sorted(
    f"{module}.{k}" for module in content_modules if module in sys.modules
    for k, v in vars(sys.modules[module]).items()
    if isinstance(v, type) and issubclass(v, pydantic.BaseModel) and v.__module__ == module
    and v.__pydantic_complete__
)
print(json.dumps({"modules": sorted(sys.modules), "clients": wiring.client.cache_info().currsize, "built": built}))
"""


def lambda_env(content_dir: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "_X_AMZN", "LEADFLOW_"))}
    env |= AWS_ENV | settings_env("https://api.example.com", content_dir)
    env = {
        k: v for k, v in env.items() if k not in ("POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_DISABLED")
    }
    return env | {"AWS_LAMBDA_FUNCTION_NAME": "leadflow-test-fn", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}


def probe_every_function(content_dir: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in FUNCTIONS:
        found[name] = json.loads(last_line_printed(PROBE, name, env=lambda_env(content_dir)))
    return found


@pytest.fixture(scope="module")
def cold_starts() -> dict[str, dict[str, Any]]:
    """{function: {"modules": [...], "clients": n, "built": [...]}} after importing its module
    once, with the repository's content (no artifacts: the YAML path)."""
    return probe_every_function(ROOT)


@pytest.fixture(scope="module")
def layer_cold_starts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The same with the content as the layer ships it: precompiled (``leadflow.precompiled``)."""
    content = tmp_path_factory.mktemp("content")
    for folder in ("journeys", "segments", "templates"):
        shutil.copytree(ROOT / folder, content / folder)
    shutil.copy2(ROOT / "leads.yaml", content / "leads.yaml")
    precompiled.write_artifacts(content)
    return probe_every_function(content)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_function_validates_its_content_at_cold_start(
    layer_cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """Journeys, segments and the lead model are restored from the layer's precompiled artifacts:
    none of their models' validators is built (the condition language's are: other request models
    embed it) and YAML is not even imported."""
    assert layer_cold_starts[name]["built"] == []
    assert loaded(layer_cold_starts, name, "yaml") == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_only_the_functions_that_render_load_jinja2(
    layer_cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """``send`` and ``bulk`` (broadcasts) render templates; the journey model imports Jinja2 only to
    check a subject's syntax when it validates a file."""
    renders = name in ("send", "bulk")
    assert (loaded(layer_cold_starts, name, "jinja2") != []) == renders


@pytest.mark.parametrize("name", ["trigger", "send"])
def test_the_runtime_does_not_load_the_journey_compiler(
    layer_cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """The execution input's ``buckets`` live with the journey model; the compiler runs at synth
    (and in ``journey_changes``, which reads the deployed definitions)."""
    assert loaded(layer_cold_starts, name, "leadflow.journeys.compiler") == []


def loaded(cold_starts: dict[str, dict[str, Any]], name: str, prefix: str) -> list[str]:
    return [m for m in cold_starts[name]["modules"] if m == prefix or m.startswith(prefix + ".")]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_function_imports_pydantic_settings(cold_starts: dict[str, dict[str, Any]], name: str) -> None:
    """Settings are a plain pydantic model read from the environment (``Settings.from_environ``)."""
    assert loaded(cold_starts, name, "pydantic_settings") == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_function_builds_powertools_parser_models(
    cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """Powertools' parser models (every AWS event shape as pydantic models) are not used: the
    stream and queue functions import the batch utilities before pydantic (``leadflow.events.streams``),
    and ``send`` validates its request with its own model."""
    assert loaded(cold_starts, name, "aws_lambda_powertools.utilities.parser") == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_function_imports_the_typed_client_stubs(
    cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """The ``mypy_boto3_*`` stubs type the clients for mypy only (``leadflow.platform.aws`` imports
    them under ``TYPE_CHECKING``): they are dev dependencies, absent from the Lambda layer."""
    stubs = [
        m
        for m in cold_starts[name]["modules"]
        if m.startswith(("mypy_boto3_", "botocore_stubs", "boto3_stubs"))
    ]
    assert stubs == []
    assert loaded(cold_starts, name, "leadflow.platform.aws") != []  # the clients come from there


@pytest.mark.parametrize("name", ["score", "report", "feedback", "rotate", "track"])
def test_functions_without_journeys_do_not_load_the_journey_language(
    cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """The lead engine uses the condition language only; the journey model and compiler stay out."""
    assert loaded(cold_starts, name, "leadflow.journeys.compiler") == []
    assert loaded(cold_starts, name, "leadflow.journeys.model") == []


@pytest.mark.parametrize("name", ["admin", "bulk"])
def test_admin_and_bulk_do_not_load_the_journey_model(
    cold_starts: dict[str, dict[str, Any]], name: str
) -> None:
    """Broadcasts need only the time helpers; admin reads the manual journeys at the first
    enrollment request."""
    assert loaded(cold_starts, name, "leadflow.journeys.model") == []


def test_feedback_does_not_load_the_send_path(cold_starts: dict[str, dict[str, Any]]) -> None:
    """It shares one tag name with sends (``leadflow.messaging.tags``), not their templates."""
    assert loaded(cold_starts, "feedback", "leadflow.messaging.sending") == []
    assert loaded(cold_starts, "feedback", "jinja2") == []


def test_report_does_not_build_the_read_side_report_models(cold_starts: dict[str, dict[str, Any]]) -> None:
    assert loaded(cold_starts, "report", "leadflow.reporting.reports") == []


def test_admin_does_not_load_the_send_path(cold_starts: dict[str, dict[str, Any]]) -> None:
    """Broadcasts are created, viewed and cancelled there; their pages are sent by ``bulk``."""
    assert loaded(cold_starts, "admin", "leadflow.messaging.sending") == []
    assert loaded(cold_starts, "admin", "jinja2") == []
    assert loaded(cold_starts, "bulk", "leadflow.messaging.sending") != []  # the worker that sends


def test_send_builds_at_cold_start_only_the_clients_every_step_may_use(
    cold_starts: dict[str, dict[str, Any]],
) -> None:
    """DynamoDB and SES; SNS (SMS, hand-offs), EventBridge, SQS (webhook dead letters) and Step
    Functions (early wait answers) are built at their first use."""
    assert cold_starts["send"]["clients"] == 2


def test_admin_builds_at_cold_start_only_its_dynamodb_client(cold_starts: dict[str, dict[str, Any]]) -> None:
    """Step Functions (erasures) and SQS (segment evaluations, broadcasts) wait for their first use."""
    assert cold_starts["admin"]["clients"] == 1


def test_the_lead_model_is_read_once_per_version_of_the_file(tmp_path: Path) -> None:
    from leadflow import wiring

    class Content:
        leads_file = tmp_path / "leads.yaml"

    settings: Any = Content()
    default = wiring.lead_model(settings)
    assert wiring.lead_model(settings) is default  # no file: the default model, once
    settings.leads_file.write_text("routing:\n  default_owner: sales@example.com\n", encoding="utf-8")
    edited = wiring.lead_model(settings)
    assert edited.routing.default_owner == "sales@example.com"
    assert wiring.lead_model(settings) is edited


def test_a_lazy_client_is_the_process_client_of_its_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow import wiring

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    wiring.client.cache_clear()
    try:
        lazy = wiring.lazy_client("sqs")
        assert wiring.client.cache_info().currsize == 0
        assert lazy.meta.service_model.service_name == "sqs"
        assert wiring.client.cache_info().currsize == 1
        assert lazy.send_message.__self__ is wiring.client("sqs")
    finally:
        wiring.client.cache_clear()
