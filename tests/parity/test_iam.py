"""The parity tier's IAM evaluator behaves as IAM does on the cases the tier meets."""

from __future__ import annotations

from typing import Any

from tests.parity.iam import Request, decide, matches, principal_named

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/leadflow-dev-contacts"


def allow(actions: Any, resources: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def test_actions_match_case_insensitively_with_wildcards() -> None:
    statements = [allow(["dynamodb:Get*", "kms:GenerateDataKey*"], "*")]
    assert decide(statements, Request("dynamodb:GetItem", TABLE)) == "allow"
    assert decide(statements, Request("DynamoDB:getitem", TABLE)) == "allow"
    assert decide(statements, Request("kms:GenerateDataKey", "k")) == "allow"
    assert decide(statements, Request("dynamodb:PutItem", TABLE)) == "implicit deny"


def test_a_table_grant_does_not_cover_its_indexes_or_stream() -> None:
    statements = [allow("dynamodb:Query", TABLE)]
    assert decide(statements, Request("dynamodb:Query", TABLE)) == "allow"
    assert decide(statements, Request("dynamodb:Query", f"{TABLE}/index/by-email")) == "implicit deny"
    with_indexes = [allow("dynamodb:Query", [TABLE, f"{TABLE}/index/*"])]
    assert decide(with_indexes, Request("dynamodb:Query", f"{TABLE}/index/by-email")) == "allow"
    assert decide(statements, Request("dynamodb:GetRecords", f"{TABLE}/stream/2026")) == "implicit deny"


def test_resources_match_case_sensitively_and_with_question_marks() -> None:
    statements = [
        allow(
            "states:StopExecution", "arn:aws:states:us-east-1:123456789012:execution:leadflow-dev-welcome:*"
        )
    ]
    execution = "arn:aws:states:us-east-1:123456789012:execution:leadflow-dev-welcome:welcome-c01"
    assert decide(statements, Request("states:StopExecution", execution)) == "allow"
    assert decide(
        statements, Request("states:StopExecution", execution.replace("welcome", "Welcome", 1))
    ) == ("implicit deny")
    assert matches("arn:aws:sqs:*:123456789012:queue-?", "arn:aws:sqs:us-east-1:123456789012:queue-1")
    assert not matches("arn:aws:sqs:*:123456789012:queue-?", "arn:aws:sqs:us-east-1:123456789012:queue-12")


def test_not_resource_allows_everything_but_what_it_lists() -> None:
    sms_only = [{"Effect": "Allow", "Action": "sns:Publish", "NotResource": "arn:aws:sns:*:*:*"}]
    assert decide(sms_only, Request("sns:Publish", "*")) == "allow"  # to a phone number
    assert decide(sms_only, Request("sns:Publish", "arn:aws:sns:us-east-1:123456789012:t")) == "implicit deny"


def test_explicit_deny_wins_and_conditions_never_grant() -> None:
    statements = [
        allow("dynamodb:*", "*"),
        {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE},
    ]
    assert decide(statements, Request("dynamodb:DeleteItem", TABLE)) == "explicit deny"
    assert decide(statements, Request("dynamodb:PutItem", TABLE)) == "allow"
    conditional = [allow("dynamodb:PutItem", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})]
    assert decide(conditional, Request("dynamodb:PutItem", TABLE)) == "implicit deny"
    not_action = [{"Effect": "Deny", "NotAction": "dynamodb:GetItem", "Resource": "*"}, allow("*", "*")]
    assert decide(not_action, Request("dynamodb:PutItem", TABLE)) == "explicit deny"
    assert decide(not_action, Request("dynamodb:GetItem", TABLE)) == "allow"


def test_key_policy_principals() -> None:
    root = "arn:aws:iam::123456789012:root"
    assert principal_named({"Principal": {"AWS": root}}, aws=[root])
    assert principal_named({"Principal": {"Service": "ses.amazonaws.com"}}, service="ses.amazonaws.com")
    assert not principal_named({"Principal": {"Service": "ses.amazonaws.com"}}, aws=[root])


def test_a_start_on_an_alias_is_allowed_by_the_machine_grant_for_that_qualifier_only() -> None:
    """Step Functions authorizes StartExecution on an alias against the state machine's ARN, with
    the alias name in ``states:StateMachineQualifier``: trigger's grant names the alias ``live``."""
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:leadflow-dev-welcome"
    live = [
        allow(
            "states:StartExecution",
            machine,
            Condition={"StringEquals": {"states:StateMachineQualifier": "live"}},
        )
    ]
    on_alias = Request("states:StartExecution", machine, (("states:StateMachineQualifier", "live"),))
    assert decide(live, on_alias) == "allow"
    on_version = Request("states:StartExecution", machine, (("states:StateMachineQualifier", "3"),))
    assert decide(live, on_version) == "implicit deny"
    assert decide(live, Request("states:StartExecution", machine)) == "implicit deny"  # unqualified
    unconditional = [allow("states:StartExecution", machine)]
    assert decide(unconditional, on_alias) == "allow"
