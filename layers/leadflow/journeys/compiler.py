"""Compile a journey to Amazon States Language: a pure function, deterministic output.

State names are what a marketer wrote ("Send email: welcome", "Wait 2 days"), so ops can follow an
execution in the Step Functions console. Two placeholders are filled at deploy time (CDK
``definition_substitutions``) or by the local runtime: ``${SendFunctionArn}``, ``${MessagesTableName}``.
"""

from __future__ import annotations

import json
from typing import Any

from leadflow.journeys.model import BranchStep, EndStep, Journey, SendEmailStep, Step, WaitStep

SEND_FUNCTION_ARN = "${SendFunctionArn}"
MESSAGES_TABLE_NAME = "${MessagesTableName}"
MAX_EXECUTION_SECONDS = 365 * 86400  # Standard workflows run up to one year
SEND_RETRY_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "SendThrottled",
]
COMPLETE = "Journey complete"

State = dict[str, Any]


class _Builder:
    def __init__(self, journey: Journey) -> None:
        self.journey = journey
        self.states: dict[str, State] = {}

    def add(self, name: str, state: State) -> str:
        unique = name[:80]
        n = 2
        while unique in self.states:
            suffix = f" ({n})"
            unique = name[: 80 - len(suffix)] + suffix
            n += 1
        self.states[unique] = state
        return unique

    def chain(self, steps: list[Step], after: str) -> str:
        """Add the states of ``steps``, the last one continuing to ``after``; return the first's name."""
        nxt = after
        for step in reversed(steps):
            nxt = self.step(step, nxt)
        return nxt

    def step(self, step: Step, nxt: str) -> str:
        if isinstance(step, SendEmailStep):
            return self.send_email(step, nxt)
        if isinstance(step, WaitStep):
            wait = step.wait
            return self.add(
                f"Wait {wait.describe()}", {"Type": "Wait", "Seconds": wait.total_seconds, "Next": nxt}
            )
        if isinstance(step, BranchStep):
            return self.branch(step, nxt)
        assert isinstance(step, EndStep)
        return COMPLETE

    def send_email(self, step: SendEmailStep, nxt: str) -> str:
        send = step.send_email
        return self.add(
            f"Send email: {send.name or send.id}",
            {
                "Type": "Task",
                "Comment": f"template {send.template}",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": SEND_FUNCTION_ARN,
                    "Payload": {
                        "action": "send_email",
                        "journey_id": self.journey.id,
                        "step_id": send.id,
                        "template": send.template,
                        "contact_id.$": "$.contact_id",
                        "execution_id.$": "$$.Execution.Id",
                    },
                },
                "ResultSelector": {"message_id.$": "$.Payload.message_id", "status.$": "$.Payload.status"},
                "ResultPath": f"$.steps.{send.id}",
                "Retry": [
                    {
                        "ErrorEquals": SEND_RETRY_ERRORS,
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2.0,
                        "JitterStrategy": "FULL",
                    }
                ],
                "Next": nxt,
            },
        )

    def branch(self, step: BranchStep, nxt: str) -> str:
        branch = step.branch
        then_first = self.chain(branch.then, nxt)
        else_first = self.chain(branch.else_, nxt)
        ref = branch.if_.step
        checks = [
            {"Variable": f"$.engagement.{ref}.Item.{attribute}", "IsPresent": True}
            for attribute in branch.if_.attributes
        ]
        condition: dict[str, Any] = checks[0] if len(checks) == 1 else {"Or": checks}
        choice = self.add(
            branch.name,
            {"Type": "Choice", "Choices": [{**condition, "Next": then_first}], "Default": else_first},
        )
        return self.add(
            f"Check engagement: {ref}",
            {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:getItem",
                "Parameters": {
                    "TableName": MESSAGES_TABLE_NAME,
                    "Key": {
                        "pk": {"S.$": f"States.Format('M#{{}}', $.steps.{ref}.message_id)"},
                        "sk": {"S": "MSG"},
                    },
                    "ProjectionExpression": "first_opened_at, first_clicked_at",
                },
                "ResultPath": f"$.engagement.{ref}",
                "Retry": [
                    {
                        "ErrorEquals": ["DynamoDB.AmazonDynamoDBException", "States.TaskFailed"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 3,
                        "BackoffRate": 2.0,
                    }
                ],
                "Next": choice,
            },
        )


def compile_journey(journey: Journey) -> str:
    """The journey's state machine definition (ASL JSON text)."""
    builder = _Builder(journey)
    builder.states[COMPLETE] = {"Type": "Succeed", "Comment": "The contact reached the end of the journey."}
    # A send that still fails after its retries fails the execution *at its own state* (no Catch to
    # a Fail state): the console shows which step failed and why, and a redrive resumes right there.
    start = builder.chain(journey.steps, COMPLETE)
    timeout = min(MAX_EXECUTION_SECONDS, journey.max_duration_seconds + 86400)
    # states in reading order: first state first, terminal states last
    ordered = dict(reversed(list(builder.states.items())))
    definition = {
        "Comment": f"leadflow journey '{journey.id}': {journey.name}",
        "StartAt": start,
        "TimeoutSeconds": timeout,
        "States": ordered,
    }
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"
