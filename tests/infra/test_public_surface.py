"""The template's side of the public surface: the server-events route behind IAM, the render-stamp
route public, the stage's browser event types in every function's settings, the sign-up budget
counters writable by track, and a form's CAPTCHA secret in Secrets Manager readable by track only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import cdk_context
from tests.infra.test_stack import _actions, _statements, logical_id_of, resources


def test_server_events_need_iam_and_the_stamp_is_public(template_json: dict[str, Any]) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(template_json, "AWS::ApiGatewayV2::Route").values()
    }
    assert routes["POST /admin/events"]["AuthorizationType"] == "AWS_IAM"
    assert routes["GET /t/stamp"].get("AuthorizationType", "NONE") == "NONE"
    assert routes["POST /events"].get("AuthorizationType", "NONE") == "NONE"


def test_every_function_knows_the_public_event_types(template_json: dict[str, Any]) -> None:
    functions = resources(template_json, "AWS::Lambda::Function")
    leadflow = [f for f in functions.values() if "LEADFLOW_STAGE" in json.dumps(f)]
    assert leadflow
    for function in leadflow:
        env = function["Properties"]["Environment"]["Variables"]
        assert env["LEADFLOW_PUBLIC_EVENT_TYPES"] == "video_played"


def test_track_may_count_sign_up_budgets(template_json: dict[str, Any]) -> None:
    idempotency = logical_id_of(template_json, "AWS::DynamoDB::Table", "TablesIdempotency")
    track = _statements(template_json, "TrackFunctionServiceRole")
    on_idempotency = [st for st in track if idempotency in json.dumps(st["Resource"])]
    assert "dynamodb:UpdateItem" in _actions(on_idempotency)


@pytest.fixture(scope="module")
def captcha_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dev stage with a Turnstile CAPTCHA on the newsletter form (cdk-nag runs on it too)."""
    import app as cdk_app
    from aws_cdk import App

    context = cdk_context()
    newsletter = context["stage_defaults"]["forms"]["newsletter"]
    newsletter["captcha"] = {"provider": "turnstile", "site_key": "0x4AAAAAAA-site-key"}
    outdir: Path = tmp_path_factory.mktemp("cdk.captcha")
    application = App(outdir=str(outdir), context=context)
    stack = cdk_app.build(application)
    application.synth()
    data: dict[str, Any] = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return data


def test_a_form_captcha_gets_a_secret_only_track_reads(captcha_template: dict[str, Any]) -> None:
    secret_id = logical_id_of(captcha_template, "AWS::SecretsManager::Secret", "CaptchaNewsletter")
    track = _statements(captcha_template, "TrackFunctionServiceRole")
    reads = [st for st in track if secret_id in json.dumps(st["Resource"])]
    assert "secretsmanager:GetSecretValue" in _actions(reads)
    for role in ("SendFunctionServiceRole", "AdminFunctionServiceRole", "ScoreFunctionServiceRole"):
        assert secret_id not in json.dumps(_statements(captcha_template, role)), role
    [track_fn] = [
        f
        for k, f in resources(captcha_template, "AWS::Lambda::Function").items()
        if k.startswith("TrackFunction")
    ]
    forms = json.dumps(track_fn["Properties"]["Environment"]["Variables"]["LEADFLOW_FORMS"])
    assert secret_id in forms  # the secret's ARN is the form's captcha.secret_id
    assert "0x4AAAAAAA-site-key" in forms


def test_the_dashboard_graphs_refusals_by_reason(template_json: dict[str, Any]) -> None:
    [dashboard] = resources(template_json, "AWS::CloudWatch::Dashboard").values()
    assert "PublicRefusals" in json.dumps(dashboard["Properties"]["DashboardBody"])
