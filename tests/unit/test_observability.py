"""Metrics ops can slice: skipped sends by reason, as CloudWatch EMF."""

from __future__ import annotations

import json
import os

import pytest

from leadflow.kernel.observability import NAMESPACE, count_by, pii_hash
from tests.helpers import last_line_printed


def test_count_by_emits_one_emf_document_with_the_dimension(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    count_by("SendsSkippedByReason", "reason", "unsubscribed")
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    emf = json.loads(line)
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert sorted(directive["Dimensions"][0]) == ["reason", "service"]
    assert directive["Metrics"] == [{"Name": "SendsSkippedByReason", "Unit": "Count"}]
    assert (emf["reason"], emf["service"], emf["SendsSkippedByReason"]) == ("unsubscribed", "leadflow", [1.0])


def test_pii_hash_is_stable_and_hides_the_address() -> None:
    assert pii_hash(" Ada@Example.com ") == pii_hash("ada@example.com")
    assert "ada" not in pii_hash("ada@example.com")
    assert len(pii_hash("ada@example.com")) == 12


LAMBDA_CONTEXT = "type('Context', (), {'function_name': 'fn', 'memory_limit_in_mb': 512, 'invoked_function_arn': 'arn:aws:lambda:us-east-1:123456789012:function:fn', 'aws_request_id': 'r-1'})()"
TRACED = f"""
import os, sys
from botocore.client import BaseClient
from leadflow.kernel.observability import tracer

calls = []

@tracer.capture_lambda_handler(capture_response=False)
def handler(event, context):
    calls.append(event)
    return "done"

context = {LAMBDA_CONTEXT}
assert "aws_xray_sdk" not in sys.modules, "imported at import time"
os.environ["_X_AMZN_TRACE_ID"] = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
assert handler(1, context) == "done"
assert "aws_xray_sdk" not in sys.modules and not tracer.built, "built for an unsampled invocation"
os.environ["_X_AMZN_TRACE_ID"] = "Root=1-5759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad9;Sampled=1"
assert handler(2, context) == "done"
assert tracer.built and "aws_xray_sdk.core" in sys.modules
assert hasattr(BaseClient._make_api_call, "__wrapped__"), "botocore not patched for X-Ray"
os.environ["_X_AMZN_TRACE_ID"] = "Root=1-5759e988-bd862e3fe1be46a994272795;Parent=53995c3f42cd8ad7;Sampled=0"
assert handler(3, context) == "done"
assert calls == [1, 2, 3]
print("ok")
"""


def lambda_env() -> dict[str, str]:
    """A function's environment in Lambda with tracing on (as the stack deploys it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "_X_AMZN"))}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "leadflow-test-fn",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "POWERTOOLS_SERVICE_NAME": "leadflow",
        }
    )
    return env


def test_the_xray_tracer_is_built_at_the_first_sampled_invocation_not_at_import() -> None:
    assert last_line_printed(TRACED, env=lambda_env()) == "ok"


def test_no_function_imports_the_xray_sdk_at_cold_start() -> None:
    from leadflow.local.system import FUNCTIONS, settings_env

    env = lambda_env() | {
        k: v for k, v in settings_env("https://api.example.com").items() if not k.startswith("POWERTOOLS_")
    }
    code = (
        "import importlib.util, sys\n"
        "for name in sys.argv[1:]:\n"
        "    spec = importlib.util.spec_from_file_location('fn_' + name, f'functions/{name}/app.py')\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk')))\n"
    )
    assert last_line_printed(code, *FUNCTIONS, env=env) == "[]"
