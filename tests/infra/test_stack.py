"""The synthesized CloudFormation template: what devops deploys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from leadflow.journeys import compile_journey, load_journeys
from leadflow.platform.routes import ADMIN_ROUTES, ALL_ROUTES, PUBLIC_ROUTES
from leadflow.platform.tables import ALL_TABLES
from tests.infra.conftest import ROOT, cdk_context

FUNCTIONS = (
    "track",
    "admin",
    "trigger",
    "score",
    "send",
    "rotate",
    "feedback",
    "report",
    "bulk",
    "journey_changes",
)
"""The stage's Lambda functions (written out here: the template must have exactly these)."""


def resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == kind}


def stage_functions(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stage's own functions (``leadflow-<stage>-*``): the template's other function is CDK's
    BucketDeployment handler, which uploads the template archive at deploy time."""
    return {
        k: v
        for k, v in resources(template_json, "AWS::Lambda::Function").items()
        if "FunctionName" in v["Properties"]
    }


def logical_id_of(template_json: dict[str, Any], kind: str, name_part: str) -> str:
    [found] = [k for k in resources(template_json, kind) if k.startswith(name_part)]
    return found


def key_schema(partition_key: str, sort_key: str) -> list[dict[str, str]]:
    return [
        {"AttributeName": partition_key, "KeyType": "HASH"},
        {"AttributeName": sort_key, "KeyType": "RANGE"},
    ]


def test_tables_follow_the_specs(template: Any) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", len(ALL_TABLES))
    for spec in ALL_TABLES:
        props: dict[str, Any] = {
            "TableName": f"leadflow-dev-{spec.name}",
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "KeySchema": key_schema("pk", "sk"),
        }
        if spec.stream:
            props["StreamSpecification"] = {"StreamViewType": spec.stream}
        if spec.ttl_attribute:
            props["TimeToLiveSpecification"] = {"AttributeName": spec.ttl_attribute, "Enabled": True}
        if spec.indexes:
            props["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": key_schema(index.partition_key, index.sort_key),
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in spec.indexes
            ]
        template.has_resource_properties("AWS::DynamoDB::Table", props)


def test_functions_are_arm64_python_with_the_layer_and_tracing(template_json: dict[str, Any]) -> None:
    functions = stage_functions(template_json)
    others = resources(template_json, "AWS::Lambda::Function").keys() - functions.keys()
    # CDK's own: the template archive's bucket deployment and the deploy Trigger's provider
    cdk_own = ("CustomCDKBucketDeployment", "AWSCDKTriggerCustomResourceProvider")
    assert [k for k in others if not k.startswith(cdk_own)] == []
    assert len(others) == 2
    names = {f["Properties"]["FunctionName"] for f in functions.values()}
    assert names == {f"leadflow-dev-{n}" for n in FUNCTIONS}
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == "app.handler"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert len(props["Layers"]) == 1
        env = props["Environment"]["Variables"]
        assert env["LEADFLOW_CONTENT_DIR"] == "/opt/content"
        assert "LEADFLOW_PUBLIC_BASE_URL" in env
        assert not any("secret" in str(v).lower() and "arn" not in str(v).lower() for v in env.values())


def test_stream_consumers_have_the_delivery_guarantees(template: Any, template_json: dict[str, Any]) -> None:
    streams = [
        m["Properties"]
        for m in resources(template_json, "AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" in m["Properties"]
    ]
    assert len(streams) == 3  # trigger, score, report (the fourth mapping is the bulk jobs queue)
    for mapping in streams:
        assert mapping == mapping | {
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "StartingPosition": "TRIM_HORIZON",
            "MaximumRetryAttempts": 10,
            "FilterCriteria": {
                "Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]}, separators=(",", ":"))}]
            },
        }, mapping
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"], mapping
    template.all_resources_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}
    )


def test_state_machines_deploy_the_compiler_output_verbatim(template_json: dict[str, Any]) -> None:
    machines = resources(template_json, "AWS::StepFunctions::StateMachine")
    journeys = load_journeys(ROOT / "journeys")
    assert len(machines) == len(journeys)
    send_live = logical_id_of(template_json, "AWS::Lambda::Alias", "SendLive")  # SnapStart: the alias
    by_name = {m["Properties"]["StateMachineName"]: m["Properties"] for m in machines.values()}
    for journey in journeys:
        props = by_name[f"leadflow-dev-{journey.id}"]
        assert props["DefinitionString"] == compile_journey(journey, templates_dir=ROOT / "templates")
        assert props["DefinitionSubstitutions"]["SendFunctionArn"] == {"Ref": send_live}
        assert props["StateMachineType"] == "STANDARD"
        assert props["TracingConfiguration"] == {"Enabled": True}
        assert props["LoggingConfiguration"]["Level"] == "ALL"
        assert props["LoggingConfiguration"]["IncludeExecutionData"] is False


def test_every_journey_publishes_a_retained_version_and_a_live_alias(template_json: dict[str, Any]) -> None:
    """A deploy publishes each journey's definition as a version named by its hash (a changed
    journey is a new logical id: CloudFormation creates a version and keeps the old one) and moves
    the alias ``live`` to it; trigger starts executions on that alias only."""
    from leadflow_infra.constructs import definition_hash

    machines = resources(template_json, "AWS::StepFunctions::StateMachine")
    versions = resources(template_json, "AWS::StepFunctions::StateMachineVersion")
    aliases = resources(template_json, "AWS::StepFunctions::StateMachineAlias")
    journeys = load_journeys(ROOT / "journeys")
    assert len(versions) == len(aliases) == len(journeys)
    machine_of = {
        m["Properties"]["StateMachineName"].removeprefix("leadflow-dev-"): k for k, m in machines.items()
    }
    for journey in journeys:
        machine = machine_of[journey.id]
        digest = definition_hash(compile_journey(journey, templates_dir=ROOT / "templates"))
        [(version_id, version)] = [
            (k, v) for k, v in versions.items() if v["Properties"]["StateMachineArn"] == {"Ref": machine}
        ]
        assert digest[:12] in version_id
        assert version["Properties"]["StateMachineRevisionId"] == {
            "Fn::GetAtt": [machine, "StateMachineRevisionId"]
        }
        assert version["DeletionPolicy"] == version["UpdateReplacePolicy"] == "Retain"
        [alias] = [
            a
            for a in aliases.values()
            if a["Properties"]["RoutingConfiguration"][0]["StateMachineVersionArn"]
            == {"Fn::GetAtt": [version_id, "Arn"]}
        ]
        assert alias["Properties"]["Name"] == "live"
        assert alias["Properties"]["RoutingConfiguration"] == [
            {"StateMachineVersionArn": {"Fn::GetAtt": [version_id, "Arn"]}, "Weight": 100}
        ]
    # the functions know the alias; trigger may start executions on it and on nothing else
    trigger = logical_id_of(template_json, "AWS::Lambda::Function", "TriggerFunction")
    env = template_json["Resources"][trigger]["Properties"]["Environment"]["Variables"]
    assert env["LEADFLOW_JOURNEY_ALIAS"] == "live"
    starts = [
        st
        for st in _statements(template_json, "TriggerFunctionServiceRole")
        if "states:StartExecution" in _actions([st])
    ]
    assert len(starts) == len(journeys)
    for st in starts:
        assert st["Condition"] == {"StringEquals": {"states:StateMachineQualifier": "live"}}
        assert st["Resource"]["Ref"] in machines


def test_the_journey_versions_policy_reads_versions_and_ends_old_executions_only(
    template_json: dict[str, Any],
) -> None:
    """``leadflow journeys versions`` and ``apply-changes`` (after cdk deploy): read versions and
    aliases, list, describe and stop this stage's journey executions, close enrollments, record
    the exit — nothing else."""
    [policy] = [
        p
        for k, p in resources(template_json, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("OpsJourneyVersions")
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert _actions(statements) == {
        "cloudformation:DescribeStacks",
        "states:ListStateMachineVersions",
        "states:DescribeStateMachine",
        "states:DescribeStateMachineAlias",
        "states:ListExecutions",
        "states:DescribeExecution",
        "states:StopExecution",
        "states:GetExecutionHistory",
        "states:StartExecution",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    }
    text = json.dumps(statements)
    assert '"Resource": "*"' not in text
    [update] = [st for st in statements if "dynamodb:UpdateItem" in st["Action"]]
    assert "TablesContacts" in json.dumps(update["Resource"])
    # move_to_new starts moved contacts on the alias only
    [start] = [st for st in statements if st["Action"] == "states:StartExecution"]
    assert start["Condition"] == {"StringEquals": {"states:StateMachineQualifier": "live"}}
    assert "OpsJourneyVersionsPolicyArn" in template_json["Outputs"]


def inline_function(stack: Any, name: str, returns: str) -> Any:
    """A Python function whose handler returns ``returns`` (its code inline: nothing to bundle)."""
    from aws_cdk import aws_lambda as lambda_

    return lambda_.Function(
        stack,
        name,
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline(f"def handler(event, context):\n    return {returns}\n"),
    )


def journeys_only_stack(outdir: Path, name: str, journeys: list[Any]) -> tuple[Any, Any, Any]:
    """(app, stack, machines): a stack with only the journeys' state machines (their send task an
    inline function), synthesized into a new folder under ``outdir``."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_logs as logs
    from leadflow_infra.constructs import JourneyStateMachines

    app = App(outdir=str(outdir / f"out{len(list(outdir.iterdir()))}"))
    stack = Stack(app, name)
    machines = JourneyStateMachines(
        stack,
        "Journeys",
        journeys=journeys,
        prefix="p",
        send=inline_function(stack, "Send", returns="event"),
        log_retention=logs.RetentionDays.ONE_DAY,
    )
    return app, stack, machines


def test_a_changed_journey_is_a_new_version_and_the_old_one_stays(tmp_path: Path) -> None:
    """Re-synthesizing with one journey changed: that journey's version gets a new logical id
    (CloudFormation creates it, retains the old) and its alias routes to it; the others keep theirs."""

    from leadflow.journeys import load_journey

    def synth(journeys: list[Any]) -> dict[str, Any]:
        app, _, _ = journeys_only_stack(tmp_path, "Versions", journeys)
        return app.synth().get_stack_by_name("Versions").template  # type: ignore[no-any-return]

    welcome = load_journey(ROOT / "journeys" / "welcome.yaml")
    webinar = load_journey(ROOT / "journeys" / "webinar.yaml")
    text = (ROOT / "journeys" / "welcome.yaml").read_text().replace("days: 2", "days: 3", 1)
    assert text != (ROOT / "journeys" / "welcome.yaml").read_text()
    (tmp_path / "welcome.yaml").write_text(text)
    changed = load_journey(tmp_path / "welcome.yaml")
    before = resources(synth([welcome, webinar]), "AWS::StepFunctions::StateMachineVersion")
    after = resources(synth([changed, webinar]), "AWS::StepFunctions::StateMachineVersion")
    [kept] = set(before) & set(after)
    assert "webinar" in kept
    [new] = set(after) - set(before)
    assert "welcome" in new
    assert all(v["DeletionPolicy"] == "Retain" for v in before.values())


def test_api_routes_are_exactly_the_declared_routes_and_admin_needs_iam(
    template_json: dict[str, Any],
) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(template_json, "AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {route.key for route in ALL_ROUTES}
    for route in PUBLIC_ROUTES:
        assert routes[route.key].get("AuthorizationType", "NONE") == "NONE", route.key
    assert ADMIN_ROUTES
    for route in ADMIN_ROUTES:
        assert routes[route.key]["AuthorizationType"] == "AWS_IAM", route.key
    # each route reaches its own function: admin routes never go to the public track function
    integrations = resources(template_json, "AWS::ApiGatewayV2::Integration")
    for route in ALL_ROUTES:
        target = routes[route.key]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = json.dumps(integrations[target]["Properties"]["IntegrationUri"])
        assert f'"Ref": "{route.function.capitalize()}Live' in uri, route.key  # its SnapStart alias
    [stage] = resources(template_json, "AWS::ApiGatewayV2::Stage").values()
    assert "DestinationArn" in stage["Properties"]["AccessLogSettings"]
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] == 500


def _statements(template_json: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in resources(template_json, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_prefix in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for st in statements:
        value = st["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


def test_iam_is_least_privilege(template_json: dict[str, Any]) -> None:
    for policy in resources(template_json, "AWS::IAM::Policy").values():
        for action in _actions(policy["Properties"]["PolicyDocument"]["Statement"]):
            assert action != "*"
            assert not action.endswith(":*"), action
    track = json.dumps(_statements(template_json, "TrackFunctionServiceRole"))
    assert "Messages" not in track
    assert "states:" not in track
    score = _actions(_statements(template_json, "ScoreFunctionServiceRole"))
    assert not any(a.startswith(("states:", "ses:", "sns:")) for a in score)
    trigger = _actions(_statements(template_json, "TriggerFunctionServiceRole"))
    assert "states:StartExecution" in trigger
    # wait_for: trigger answers task tokens and stops an exiting contact's execution; send answers
    # its own token when the event came first
    assert {"states:SendTaskSuccess", "states:SendTaskFailure", "states:StopExecution"} <= trigger
    assert {"states:SendTaskSuccess", "states:SendTaskFailure"} <= _actions(
        _statements(template_json, "SendFunctionServiceRole")
    )
    assert not any(a.startswith(("ses:", "secretsmanager:")) for a in trigger)
    send = _statements(template_json, "SendFunctionServiceRole")
    assert {"ses:SendRawEmail", "sns:Publish"} <= _actions(send)
    [sms] = [st for st in send if st.get("Sid") == "SmsToPhoneNumbersOnly"]
    assert sms["NotResource"] == "arn:aws:sns:*:*:*"


def test_cfn_lint_passes(synthesized: tuple[Any, Path]) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            "W3005",
            "--",
            str(synthesized[1]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_stage_config_fails_with_a_readable_message() -> None:
    from leadflow_infra.config import StageConfigError, load_stage_config

    stages = cdk_context()["stages"]
    broken = {**stages["dev"], "sender_email": "not-an-address"}
    with pytest.raises(StageConfigError, match=r"stage 'dev': sender_email: String should match"):
        load_stage_config({"dev": broken}, "dev")
    missing = {k: v for k, v in stages["dev"].items() if k != "forms"}
    with pytest.raises(StageConfigError, match="forms: Field required"):
        load_stage_config({"dev": missing}, "dev")
    with pytest.raises(StageConfigError, match="no stage 'qa'"):
        load_stage_config(stages, "qa")


def test_synth_command_reports_bad_config() -> None:
    env = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "app.py")],
        capture_output=True,
        text=True,
        check=False,
        env=env | {"CDK_CONTEXT_JSON": json.dumps({"stage": "qa", "stages": {}})},
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "leadflow: cdk.json has no stage 'qa'" in result.stderr


def test_feedback_function_is_subscribed_to_ses_feedback_and_inbound_sms(
    template_json: dict[str, Any],
) -> None:
    feedback_live = {"Ref": logical_id_of(template_json, "AWS::Lambda::Alias", "FeedbackLive")}
    topics = resources(template_json, "AWS::SNS::Topic")
    ses_topic = logical_id_of(template_json, "AWS::SNS::Topic", "EmailFeedback")
    sms_topic = logical_id_of(template_json, "AWS::SNS::Topic", "InboundSms")
    key_id = logical_id_of(template_json, "AWS::KMS::Key", "TopicKey")
    assert topics[sms_topic]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    subscriptions = {
        s["Properties"]["TopicArn"]["Ref"]: s["Properties"]
        for s in resources(template_json, "AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "lambda"
    }
    for topic in (ses_topic, sms_topic):
        assert subscriptions[topic]["Endpoint"] == feedback_live
    invoke = {
        p["Properties"]["SourceArn"]["Ref"]
        for p in resources(template_json, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "sns.amazonaws.com"
        and p["Properties"]["FunctionName"] == feedback_live
    }
    assert invoke == {ses_topic, sms_topic}
    # only this account's End User Messaging SMS may publish inbound replies
    [policy] = [
        p["Properties"]
        for p in resources(template_json, "AWS::SNS::TopicPolicy").values()
        if {"Ref": sms_topic} in p["Properties"]["Topics"]
    ]
    [publish] = [
        st
        for st in policy["PolicyDocument"]["Statement"]
        if isinstance(st.get("Principal"), dict) and "Service" in st["Principal"]
    ]
    assert publish["Principal"] == {"Service": "sms-voice.amazonaws.com"}
    assert publish["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # least privilege: tables only, no sending, no journeys
    actions = _actions(_statements(template_json, "FeedbackFunctionServiceRole"))
    assert not any(a.startswith(("ses:", "sns:Publish", "states:", "secretsmanager:")) for a in actions)
    assert "dynamodb:PutItem" in actions
    admin = _actions(_statements(template_json, "AdminFunctionServiceRole"))
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem"} <= admin


# --- cdk deploy carries out each journey's on_change (a CDK Trigger) -----------------------------


def test_the_deploy_runs_journey_changes_after_every_alias_and_waits_for_it(
    template_json: dict[str, Any],
) -> None:
    [(logical, trigger)] = resources(template_json, "Custom::Trigger").items()
    assert logical == "JourneyChangesOnDeploy"
    props = trigger["Properties"]
    function = logical_id_of(template_json, "AWS::Lambda::Function", "JourneychangesFunction")
    version = props["HandlerArn"]["Ref"]
    assert template_json["Resources"][version]["Type"] == "AWS::Lambda::Version"
    assert template_json["Resources"][version]["Properties"]["FunctionName"] == {"Ref": function}
    # synchronous: the deploy ends after on_change was carried out (and a crash would show)
    assert props["InvocationType"] == "RequestResponse"
    timeout_s = template_json["Resources"][function]["Properties"]["Timeout"]
    assert int(props["Timeout"]) == timeout_s * 1000
    # after every journey's version is published and its alias moved
    after = set(trigger["DependsOn"])
    assert set(resources(template_json, "AWS::StepFunctions::StateMachineAlias")) <= after
    versions = resources(template_json, "AWS::StepFunctions::StateMachineVersion")
    assert set(versions) <= after
    assert len(versions) == len(load_journeys(ROOT / "journeys"))
    # the Trigger's provider may invoke that function's versions and nothing else
    provider = props["ServiceToken"]["Fn::GetAtt"][0]
    role = template_json["Resources"][provider]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        st
        for policy in template_json["Resources"][role]["Properties"].get("Policies", [])
        for st in policy["PolicyDocument"]["Statement"]
    ]
    assert _actions(statements) == {"lambda:InvokeFunction"}
    assert function in json.dumps([st["Resource"] for st in statements])


def test_journey_changes_may_do_what_apply_on_change_does_and_no_more(template_json: dict[str, Any]) -> None:
    """The function's role gets the statements of ``OpsJourneyVersions`` minus reading the stack's
    outputs (it knows its journeys from its environment), plus X-Ray; no table scan, no delete."""
    statements = _statements(template_json, "JourneychangesFunctionServiceRole")
    [ops] = [
        p
        for k, p in resources(template_json, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("OpsJourneyVersions")
    ]
    ops_statements = ops["Properties"]["PolicyDocument"]["Statement"]
    xray = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert _actions(statements) == (_actions(ops_statements) - {"cloudformation:DescribeStacks"}) | xray
    shared = [st for st in statements if not set(_actions([st])) <= xray]
    assert shared == [st for st in ops_statements if st["Action"] != "cloudformation:DescribeStacks"]
    [start] = [st for st in statements if st["Action"] == "states:StartExecution"]
    assert start["Condition"] == {"StringEquals": {"states:StateMachineQualifier": "live"}}
    text = json.dumps(shared)
    assert '"Resource": "*"' not in text
    assert "TablesMessages" not in text
    assert "TablesIdempotency" not in text


def test_a_changed_journey_or_on_change_reruns_the_trigger_and_an_unchanged_one_does_not(
    tmp_path: Path,
) -> None:
    """A Trigger runs when its custom resource's ``HandlerArn`` changes: the function's current
    version, whose hash carries the journeys' definition hashes and ``on_change``."""
    from leadflow_infra.stack import journey_changes_trigger

    from leadflow.journeys import load_journey

    def handler_arn(journeys: list[Any]) -> str:
        app, stack, machines = journeys_only_stack(tmp_path, "Changes", journeys)
        changes = inline_function(stack, "Changes", returns="{}")
        journey_changes_trigger(stack, changes, machines, journeys)
        template = app.synth().get_stack_by_name("Changes").template
        [trigger] = resources(template, "Custom::Trigger").values()
        return str(trigger["Properties"]["HandlerArn"]["Ref"])

    original = (ROOT / "journeys" / "welcome.yaml").read_text()
    webinar = load_journey(ROOT / "journeys" / "webinar.yaml")

    def welcome(text: str, name: str) -> Any:
        (tmp_path / name).write_text(text)
        return load_journey(tmp_path / name)

    first = handler_arn([welcome(original, "a.yaml"), webinar])
    assert handler_arn([welcome(original, "b.yaml"), webinar]) == first  # nothing changed
    longer_wait = original.replace("days: 2", "days: 3", 1)
    assert longer_wait != original
    assert handler_arn([welcome(longer_wait, "c.yaml"), webinar]) != first  # a new version
    assert "on_change" not in original
    only_on_change = original + "\non_change: exit\n"
    assert handler_arn([welcome(only_on_change, "d.yaml"), webinar]) != first  # same definition


def test_a_settings_field_without_a_stack_value_fails_the_synth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions' environment is built from ``Settings``' own declaration of its variables: a
    field added to the model but given no value by the stack stops ``cdk synth`` with the
    variable's name, instead of deploying functions that fail their cold start."""
    import app as cdk_app
    import leadflow_infra.stack as stack_module
    from aws_cdk import App
    from pydantic import Field

    from leadflow.kernel.settings import Settings

    class WithNewSetting(Settings):
        crm_endpoint: str = Field(min_length=1)

    monkeypatch.setattr(stack_module, "Settings", WithNewSetting)
    with pytest.raises(ValueError, match="no value for LEADFLOW_CRM_ENDPOINT"):
        cdk_app.build(App(context=cdk_context()))


def test_snap_start_functions_run_only_through_their_live_alias(template_json: dict[str, Any]) -> None:
    """With SnapStart only a published version starts from its snapshot: every function has it,
    nothing invokes one of them unqualified (``$LATEST`` would import from scratch), and a replaced
    version is deleted (its snapshot is billed while it exists)."""
    functions = resources(template_json, "AWS::Lambda::Function")
    snap_started = {
        logical
        for logical, r in functions.items()
        if r["Properties"].get("SnapStart", {}).get("ApplyOn") == "PublishedVersions"
    }
    assert {functions[logical]["Properties"]["FunctionName"] for logical in snap_started} == {
        f"leadflow-dev-{name}" for name in FUNCTIONS
    }
    invoking = {
        "AWS::Lambda::EventSourceMapping": "FunctionName",
        "AWS::Lambda::Permission": "FunctionName",
        "AWS::SNS::Subscription": "Endpoint",
        "AWS::ApiGatewayV2::Integration": "IntegrationUri",
        "AWS::StepFunctions::StateMachine": "DefinitionSubstitutions",
    }
    aliases = resources(template_json, "AWS::Lambda::Alias")
    for kind, prop in invoking.items():
        for logical, r in resources(template_json, kind).items():
            named = json.dumps(r["Properties"].get(prop))
            for function in snap_started:
                assert f'"{function}"' not in named, f"{logical} invokes {function} unqualified"
    for function in snap_started:
        [alias] = [a for a in aliases.values() if a["Properties"]["FunctionName"] == {"Ref": function}]
        assert alias["Properties"]["Name"] == "live"
        version = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert template_json["Resources"][version]["DeletionPolicy"] == "Delete"


def test_a_stage_without_snap_start_invokes_the_functions_themselves(tmp_path: Path) -> None:
    """``snap_start: false``: no snapshot, no alias; every path names the function, and a journey
    role is granted the send function once."""
    import app as cdk_app
    from aws_cdk import App

    context = cdk_context()
    context["stage_defaults"] = {**context["stage_defaults"], "snap_start": False}
    application = App(outdir=str(tmp_path), context=context)
    stack = cdk_app.build(application)
    application.synth()
    document = json.loads((tmp_path / f"{stack.stack_name}.template.json").read_text())
    assert not resources(document, "AWS::Lambda::Alias")
    functions = resources(document, "AWS::Lambda::Function")
    assert all("SnapStart" not in r["Properties"] for r in functions.values())
    send = logical_id_of(document, "AWS::Lambda::Function", "SendFunction")
    for machine in resources(document, "AWS::StepFunctions::StateMachine").values():
        assert machine["Properties"]["DefinitionSubstitutions"]["SendFunctionArn"] == {
            "Fn::GetAtt": [send, "Arn"]
        }
    for policy in resources(document, "AWS::IAM::Policy").values():
        invokes = [
            st
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
            if st["Action"] == "lambda:InvokeFunction"
        ]
        assert len(invokes) <= 1, invokes
