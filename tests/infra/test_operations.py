"""What devops and ops get on day one: alarms, the dashboard, encryption, rotation, access, config."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadflow.journeys import load_journeys
from leadflow.platform.routes import ADMIN_ROUTES
from tests.infra.conftest import ROOT, cdk_context
from tests.infra.test_stack import FUNCTIONS, resources, stage_functions


def alarms(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in resources(template_json, "AWS::CloudWatch::Alarm").values()
    }


def test_every_failure_mode_has_an_alarm_that_notifies_ops(template_json: dict[str, Any]) -> None:
    found = alarms(template_json)
    expected = {f"leadflow-dev-{fn}-{kind}" for fn in FUNCTIONS for kind in ("errors", "throttles")}
    expected |= {
        f"leadflow-dev-{c}-{kind}"
        for c in ("trigger", "score", "report")
        for kind in ("dead-letters", "iterator-age")
    }
    expected |= {f"leadflow-dev-journey-{j.id}-failures" for j in load_journeys(ROOT / "journeys")}
    expected |= {"leadflow-dev-api-5xx", "leadflow-dev-ses-bounce-rate", "leadflow-dev-ses-complaint-rate"}
    expected |= {"leadflow-dev-bulk-jobs-dead-letters", "leadflow-dev-webhooks-dead-letters"}
    expected |= {"leadflow-dev-sends-rejected", "leadflow-dev-send-outcomes-not-recorded"}
    assert set(found) == expected
    [topic_id] = resources(template_json, "AWS::SNS::Topic").keys() & {
        k for k in resources(template_json, "AWS::SNS::Topic") if k.startswith("MonitoringAlarmTopic")
    }
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["OKActions"] == [{"Ref": topic_id}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["AlarmDescription"], name
    [subscription] = [
        s
        for s in resources(template_json, "AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "email"
    ]  # the others are the feedback function's (test_stack)
    assert subscription["Properties"] == {
        "Endpoint": "ops@example.com",
        "Protocol": "email",
        "TopicArn": {"Ref": topic_id},
    }


def test_alarm_thresholds_come_from_the_stage_config(template_json: dict[str, Any]) -> None:
    found = alarms(template_json)
    config = cdk_context()["stage_defaults"]["alarms"]
    assert found["leadflow-dev-ses-bounce-rate"]["Threshold"] == config["ses_bounce_rate"]
    assert found["leadflow-dev-ses-bounce-rate"]["MetricName"] == "Reputation.BounceRate"
    assert found["leadflow-dev-ses-complaint-rate"]["Threshold"] == config["ses_complaint_rate"]
    age = found["leadflow-dev-score-iterator-age"]
    assert (age["MetricName"], age["Statistic"]) == ("IteratorAge", "Maximum")
    assert age["Threshold"] == config["stream_iterator_age_seconds"] * 1000
    dlq = found["leadflow-dev-trigger-dead-letters"]
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["Threshold"] == 1
    assert dlq["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    journey = next(v for k, v in found.items() if "-journey-" in k)
    assert {m["Id"] for m in journey["Metrics"]} == {"failed", "timedout", "expr_1"} or {
        m["Id"] for m in journey["Metrics"] if "MetricStat" in m
    } == {"failed", "timedout"}


def test_the_dashboard_shows_alarms_and_the_application_metrics(template_json: dict[str, Any]) -> None:
    [dashboard] = resources(template_json, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "leadflow-dev"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("EventsRecorded", "JourneysStarted", "EmailsSent", "SendsSkippedByReason", "IteratorAge"):
        assert metric in body, metric
    assert "ApproximateNumberOfMessagesVisible" in body
    for ses_metric in ("Delivery", "Bounce", "Complaint", "Reputation.BounceRate"):
        assert f'\\"{ses_metric}\\"' in body, ses_metric
    assert "ExecutionsFailed" in body
    assert '\\"type\\":\\"alarm\\"' in body


def test_topics_and_queues_are_encrypted_and_tls_only(template_json: dict[str, Any]) -> None:
    [key] = resources(template_json, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    principals = json.dumps(key["Properties"]["KeyPolicy"])
    assert "cloudwatch.amazonaws.com" in principals
    assert "ses.amazonaws.com" in principals
    topics = resources(template_json, "AWS::SNS::Topic")
    assert len(topics) == 4  # alarms, SES feedback, sales hand-off, inbound SMS
    for topic in topics.values():
        assert "KmsMasterKeyId" in topic["Properties"]
    queues = resources(template_json, "AWS::SQS::Queue")
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = [
        *resources(template_json, "AWS::SNS::TopicPolicy").values(),
        *resources(template_json, "AWS::SQS::QueuePolicy").values(),
    ]
    assert len(policies) == len(topics) + len(queues)
    for policy in policies:
        [deny] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_signing_key_rotates_without_a_redeploy(template_json: dict[str, Any]) -> None:
    [secret] = [
        s
        for k, s in resources(template_json, "AWS::SecretsManager::Secret").items()
        if k.startswith("SigningKey")
    ]
    generator = secret["Properties"]["GenerateSecretString"]
    assert generator["GenerateStringKey"] == "current"
    assert json.loads(generator["SecretStringTemplate"]) == {"previous": []}
    [schedule] = resources(template_json, "AWS::SecretsManager::RotationSchedule").values()
    props = schedule["Properties"]
    assert props["RotationRules"]["ScheduleExpression"] == "rate(90 days)"
    assert json.dumps(props["RotationLambdaARN"]).startswith('{"Ref": "RotateLive')  # its SnapStart alias
    for fn in stage_functions(template_json).values():
        env = fn["Properties"]["Environment"]["Variables"]
        assert "Ref" in env["LEADFLOW_SIGNING_KEY_SECRET"]  # the secret's ARN, never its value
        assert not any("KEY" in k and isinstance(v, str) and len(v) >= 32 for k, v in env.items())


def test_admin_access_is_an_iam_policy_scoped_to_the_admin_routes(template_json: dict[str, Any]) -> None:
    [policy] = [
        p
        for k, p in resources(template_json, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("ApiAdminAccess")
    ]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    arns = json.dumps(statement["Resource"])
    for route in ADMIN_ROUTES:
        assert f"/$default/{route.method}/admin/" in arns
    assert "/*/*" not in arns


def test_logs_are_structured_and_kept_for_the_stage_retention(template_json: dict[str, Any]) -> None:
    for fn in stage_functions(template_json).values():
        props = fn["Properties"]
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "leadflow"
    groups = resources(template_json, "AWS::Logs::LogGroup")
    assert groups
    assert all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_every_shipped_stage_config_is_valid(stage: str) -> None:
    from leadflow_infra.config import load_stage_config

    context = cdk_context()
    config = load_stage_config(context["stages"], stage, context["stage_defaults"])
    assert config.retain_data is (stage != "dev")


def test_config_errors_name_the_nested_field() -> None:
    from leadflow_infra.config import StageConfigError, load_stage_config

    context = cdk_context()
    broken = {**context["stages"]["prod"], "alarms": {"ses_bounce_rate": 0.5}, "allowed_origins": ["*"]}
    with pytest.raises(StageConfigError) as caught:
        load_stage_config({"prod": broken}, "prod", context["stage_defaults"])
    message = str(caught.value)
    assert "stage 'prod'" in message
    assert "alarms.ses_bounce_rate: Input should be less than 0.1" in message
    assert "alarms.ses_complaint_rate: Field required" in message
    bad_domain = {
        **context["stages"]["prod"],
        "custom_domain": {"domain_name": "t.example.com", "certificate_arn": "x"},
    }
    with pytest.raises(StageConfigError, match=r"custom_domain\.certificate_arn: String should match"):
        load_stage_config({"prod": bad_domain}, "prod", context["stage_defaults"])
    with pytest.raises(StageConfigError, match="allowed_origins: '\\*' must be an https origin"):
        load_stage_config(
            {"prod": {**context["stages"]["prod"], "allowed_origins": ["*"]}},
            "prod",
            context["stage_defaults"],
        )


def test_prod_with_a_custom_domain_retains_data_and_links_use_the_domain(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the prod stage with a custom tracking domain in a concrete account and region (as
    `cdk deploy` synthesizes it), when synthesized, then cdk-nag passes, tables survive a stack
    deletion and every tracking link is built on the custom domain."""
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
    import app as cdk_app
    from aws_cdk import App
    from aws_cdk.assertions import Template

    context = cdk_context(stage="prod")
    context["stages"]["prod"]["custom_domain"] = {
        "domain_name": "t.example.com",
        "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
    }
    application = App(outdir=str(tmp_path), context=context)
    stack = cdk_app.build(application)
    application.synth()  # cdk-nag runs here too
    template = Template.from_stack(stack).to_json()
    tables = resources(template, "AWS::DynamoDB::Table")
    assert tables
    assert all(t["DeletionPolicy"] == "Retain" for t in tables.values())
    [domain] = resources(template, "AWS::ApiGatewayV2::DomainName").values()
    assert domain["Properties"]["DomainName"] == "t.example.com"
    assert domain["Properties"]["DomainNameConfigurations"][0]["SecurityPolicy"] == "TLS_1_2"
    assert len(resources(template, "AWS::ApiGatewayV2::ApiMapping")) == 1
    for fn in stage_functions(template).values():
        assert (
            fn["Properties"]["Environment"]["Variables"]["LEADFLOW_PUBLIC_BASE_URL"]
            == "https://t.example.com"
        )
    assert "ApiDomainTarget" in template["Outputs"]
    [group] = {
        g["Properties"]["RetentionInDays"] for g in resources(template, "AWS::Logs::LogGroup").values()
    }
    assert group == 365


def test_the_redrive_policy_covers_exactly_what_ops_redrive_calls(template_json: dict[str, Any]) -> None:
    [policy] = [
        p
        for k, p in resources(template_json, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("OpsRedrive")
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert (
        actions
        == {
            "cloudformation:DescribeStacks",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "dynamodb:GetShardIterator",
            "dynamodb:GetRecords",
            "lambda:InvokeFunction",
            "states:ListExecutions",
            "states:RedriveExecution",
            "states:DescribeExecution",  # an execution stopped on purpose is skipped (leadflow.journeys.runtime.stops)
        }
    )
    for statement in statements:
        assert statement["Resource"] != "*"
    assert "OpsRedrivePolicyArn" in template_json["Outputs"]


def test_journey_tasks_have_what_they_need_and_no_more(template_json: dict[str, Any]) -> None:
    from tests.infra.test_stack import _actions, _statements

    send = _statements(template_json, "SendFunctionServiceRole")
    assert {"sns:Publish", "secretsmanager:GetSecretValue", "dynamodb:UpdateItem"} <= _actions(send)
    [publish] = [s for s in send if s["Action"] == "sns:Publish" and "Resource" in s]
    assert publish["Resource"] == {
        "Ref": next(k for k in template_json["Resources"] if k.startswith("SalesHandoff"))
    }
    trigger = _statements(template_json, "TriggerFunctionServiceRole")
    describe = json.dumps([s["Resource"] for s in trigger if s["Action"] == "states:DescribeExecution"])
    for journey in load_journeys(ROOT / "journeys"):
        assert f":execution:leadflow-dev-{journey.id}:*" in describe
    assert not any(a.startswith(("ses:", "sns:")) for a in _actions(trigger))
    env = next(
        f["Properties"]["Environment"]["Variables"]
        for f in stage_functions(template_json).values()
        if f["Properties"]["FunctionName"] == "leadflow-dev-send"
    )
    assert "Ref" in env["LEADFLOW_SALES_TOPIC_ARN"]
    assert "Ref" in env["LEADFLOW_WEBHOOK_SECRETS_SECRET"]
    assert "SalesHandoffTopicArn" in template_json["Outputs"]


def test_bulk_jobs_hand_offs_and_dead_letters_are_wired(template_json: dict[str, Any]) -> None:
    """Broadcasts and segment re-evaluations run on an SQS-fed worker (bounded concurrency, partial
    batch failures, a dead-letter queue); segments are re-evaluated daily; hand-offs go to an
    EventBridge bus; failed webhook deliveries land in their own queue."""
    from tests.infra.test_stack import _actions, _statements

    mappings = resources(template_json, "AWS::Lambda::EventSourceMapping").values()
    [bulk] = [m["Properties"] for m in mappings if "ScalingConfig" in m["Properties"]]
    assert bulk["ScalingConfig"] == {"MaximumConcurrency": 4}
    assert bulk["BatchSize"] == 1
    assert bulk["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queues = resources(template_json, "AWS::SQS::Queue")
    [jobs] = [q["Properties"] for k, q in queues.items() if k.startswith("BulkJobsQueue")]
    assert jobs["RedrivePolicy"]["maxReceiveCount"] == 5
    assert jobs["VisibilityTimeout"] == 6 * 300
    [rule] = resources(template_json, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "cron(15 3 * * ? *)"
    # no segment_id: every segment
    assert json.loads(rule["Properties"]["Targets"][0]["Input"]) == {"kind": "segment_scan_start"}
    [bus] = resources(template_json, "AWS::Events::EventBus").values()
    assert bus["Properties"]["Name"] == "leadflow-dev-leads"
    send = _actions(_statements(template_json, "SendFunctionServiceRole"))
    assert {"events:PutEvents", "sqs:SendMessage"} <= send
    bulk_role = _actions(_statements(template_json, "BulkFunctionServiceRole"))
    assert {"ses:SendRawEmail", "sqs:SendMessage", "dynamodb:Scan"} <= bulk_role
    assert not any(a.startswith("states:") for a in bulk_role)
