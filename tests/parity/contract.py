"""The template as the contract with AWS: what the local system did, checked against it.

- ``call_problems``: each recorded AWS call becomes the IAM authorizations AWS would make for it
  (``authorizations``: action names, resource ARNs of the deployed stage, KMS for resources
  encrypted with a customer key) and each is evaluated against the caller's policies in the
  template (a function's role, the journeys' roles, the OpsRedrive policy) — and the key policy.
- ``invocation_problems``: each way a function was invoked locally (an API route, a stream or
  queue mapping, an SNS subscription, Secrets Manager rotation, a state machine task) exists in
  the template with what AWS needs to use it (integration and permission, mapping and filter, the
  role's polling rights, subscription and permission, rotation schedule and permission, task and
  role, the deploy's Trigger: after every alias, synchronous, its provider allowed to invoke).
- ``environment_problems``: the function's template environment starts it (``Settings``) and fits
  Lambda's 4 KB.

Local resources are named ``leadflow-local-*``; ``Names`` maps each to the template's resource.
Every problem is one readable line; an empty list is a pass.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from leadflow.kernel.settings import Settings, get_settings
from leadflow.local.system import SENDER
from tests.parity.iam import Request, decide, matches, principal_named
from tests.parity.recorder import OPS_REDRIVE, STATES, Call, CallRecorder
from tests.parity.template import ACCOUNT, PARTITION, REGION, STAGE, Stack, arn

LOCAL = "leadflow-local-"
DEPLOYED = f"leadflow-{STAGE}-"
ENVIRONMENT_LIMIT = 4096
"""Lambda: a function's environment variables (keys and values) total at most 4 KB."""

# local resources without a name in the template: local name -> (logical id prefix, type)
UNNAMED = {
    "trigger-failures": ("TriggerStreamFailures", "AWS::SQS::Queue"),
    "score-failures": ("ScoreStreamFailures", "AWS::SQS::Queue"),
    "report-failures": ("ReportStreamFailures", "AWS::SQS::Queue"),
    "bulk-jobs": ("BulkJobsQueue", "AWS::SQS::Queue"),
    "webhook-dead-letters": ("WebhookDeadLetters", "AWS::SQS::Queue"),
    "sales-handoff": ("SalesHandoff", "AWS::SNS::Topic"),
    "feedback": ("EmailFeedback", "AWS::SNS::Topic"),
    "inbound-sms": ("InboundSms", "AWS::SNS::Topic"),
    "signing-key": ("SigningKey", "AWS::SecretsManager::Secret"),
    "webhook-keys": ("WebhookKeys", "AWS::SecretsManager::Secret"),
    "template-archive": ("TemplateArchiveBucket", "AWS::S3::Bucket"),
}
IAM_ACTION = {
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
SIGNING = {"dynamodbstreams": "dynamodb", "stepfunctions": "states", "sesv2": "ses"}
NO_AUTHORIZATION = {("sts", "GetCallerIdentity")}
TRANSACT_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


class NotInTemplate(LookupError):
    """A call reached a resource the template does not define."""


@dataclass
class Names:
    """Local resource names and ARNs -> the deployed stage's."""

    stack: Stack
    _cache: dict[str, str] = field(default_factory=dict)

    def _logical(self, local: str) -> str:
        short = local.removeprefix(LOCAL)
        if short not in UNNAMED:
            raise NotInTemplate(f"{local}: no such resource in the template")
        return self.stack.logical_with_prefix(*UNNAMED[short])

    def deployed_name(self, local: str) -> str:
        if not local.startswith(LOCAL):
            raise NotInTemplate(f"{local}: not a resource of the local stage")
        return DEPLOYED + local.removeprefix(LOCAL)

    def table(self, name_or_arn: str, index: str | None = None) -> str:
        name = name_or_arn.split(":table/", 1)[-1].split("/", 1)[0]
        deployed = self.deployed_name(name)
        logical = self._table_logical(deployed)
        table = str(self.stack.resolve({"Fn::GetAtt": [logical, "Arn"]}))
        return f"{table}/index/{index}" if index else table

    def _table_logical(self, deployed: str) -> str:
        for logical, resource in self.stack.of_type("AWS::DynamoDB::Table").items():
            if self.stack.resolve(resource["Properties"].get("TableName")) == deployed:
                return logical
        raise NotInTemplate(f"table {deployed} is not in the template")

    def stream(self, local_arn: str) -> str:
        logical = self._table_logical(self.deployed_name(local_arn.split(":table/", 1)[1].split("/", 1)[0]))
        return str(self.stack.resolve({"Fn::GetAtt": [logical, "StreamArn"]}))

    def queue_url(self, url: str) -> str:
        return self.queue_name(urlsplit(url).path.rsplit("/", 1)[-1])

    def queue_name(self, name: str) -> str:
        return str(self.stack.resolve({"Fn::GetAtt": [self._logical(name), "Arn"]}))

    def queue_arn(self, local_arn: str) -> str:
        return self.queue_name(local_arn.rsplit(":", 1)[-1])

    def topic(self, local_arn: str) -> str:
        return str(self.stack.resolve({"Ref": self._logical(local_arn.rsplit(":", 1)[-1])}))

    def secret(self, name_or_arn: str) -> str:
        name = name_or_arn
        if name.startswith("arn:"):
            name = re.sub(r"-[A-Za-z0-9]{6}$", "", name.split(":secret:", 1)[1])
        return str(self.stack.resolve({"Ref": self._logical(name)}))

    def bucket(self, name: str) -> str:
        return str(self.stack.resolve({"Fn::GetAtt": [self._logical(name), "Arn"]}))

    def function(self, name_or_arn: str) -> str:
        name = name_or_arn.rsplit(":function:", 1)[-1].split(":", 1)[0]
        deployed = self.deployed_name(name)
        if deployed not in self.stack.functions():
            raise NotInTemplate(f"function {deployed} is not in the template")
        return arn("lambda", f"function:{deployed}")

    def invoked_as(self, function_arn: str) -> str:
        """What every invocation path of the function must name: with SnapStart its alias — only a
        published version starts from a snapshot, ``$LATEST`` never does — else the function."""
        logical = self.stack.functions()[function_arn.rsplit(":", 1)[-1]]
        snap_start = self.stack.resources[logical]["Properties"].get("SnapStart", {})
        if snap_start.get("ApplyOn") != "PublishedVersions":
            return function_arn
        aliases = [
            alias
            for alias, r in self.stack.of_type("AWS::Lambda::Alias").items()
            if r["Properties"]["FunctionName"] == {"Ref": logical}
        ]
        if len(aliases) != 1:
            raise NotInTemplate(f"{function_arn} has SnapStart and {len(aliases)} aliases (one is invoked)")
        return str(self.stack.resolve({"Ref": aliases[0]}))

    def state_machine(self, local_arn: str) -> str:
        """The deployed state machine's (unqualified) ARN; for a version or alias ARN that of its
        state machine (``qualified`` says which qualifier the call named)."""
        deployed = self.deployed_name(local_arn.split(":stateMachine:", 1)[-1].split(":", 1)[0])
        machines = {
            self.stack.resolve(r["Properties"].get("StateMachineName"))
            for r in self.stack.of_type("AWS::StepFunctions::StateMachine").values()
        }
        if deployed not in machines:
            raise NotInTemplate(f"state machine {deployed} is not in the template")
        return arn("states", f"stateMachine:{deployed}")

    def state_machines(self) -> list[str]:
        """Every state machine of the template (the journeys), as deployed ARNs."""
        return sorted(
            arn("states", f"stateMachine:{self.stack.resolve(r['Properties'].get('StateMachineName'))}")
            for r in self.stack.of_type("AWS::StepFunctions::StateMachine").values()
        )

    def execution(self, local_arn: str) -> str:
        machine, name = local_arn.split(":execution:", 1)[1].split(":", 1)
        deployed = self.state_machine(f"{local_arn.split(':execution:')[0]}:stateMachine:{machine}")
        return deployed.replace(":stateMachine:", ":execution:") + f":{name}"

    def event_bus(self, name_or_arn: str) -> str:
        name = name_or_arn.rsplit("/", 1)[-1]
        if name == "default":
            return arn("events", "event-bus/default")
        deployed = self.deployed_name(name)
        for logical, resource in self.stack.of_type("AWS::Events::EventBus").items():
            if self.stack.resolve(resource["Properties"]["Name"]) == deployed:
                return str(self.stack.resolve({"Fn::GetAtt": [logical, "Arn"]}))
        raise NotInTemplate(f"event bus {deployed} is not in the template")

    def ses_identity(self, principal: str, source: str | None) -> str:
        """The identity AWS authorizes a send against: the domain of the sender the deployed
        function is configured with (the local one sends from the local sender)."""
        if principal.startswith(LOCAL):
            local_sender = SENDER  # the local stage's LEADFLOW_SENDER_EMAIL
            if source and local_sender not in source:
                raise NotInTemplate(f"sends from {source}, not from the configured sender {local_sender}")
            sender = self.stack.environment(self.deployed_name(principal))["LEADFLOW_SENDER_EMAIL"]
            return arn("ses", f"identity/{sender.rsplit('@', 1)[-1]}")
        raise NotInTemplate(f"{principal} sends email")

    def configuration_set(self, local: str) -> str:
        if local != f"{LOCAL}email":
            raise NotInTemplate(f"configuration set {local} is not the stage's")
        [config] = self.stack.of_type("AWS::SES::ConfigurationSet").values()
        return arn("ses", f"configuration-set/{self.stack.resolve(config['Properties']['Name'])}")


def _action(call: Call) -> str:
    service = SIGNING.get(call.service, call.service)
    return IAM_ACTION.get((call.service, call.operation), f"{service}:{call.operation}")


def authorizations(call: Call, names: Names) -> list[Request]:
    """What AWS authorizes for the call, on the deployed stage's resources."""
    p, op, service = call.params, call.operation, call.service
    if (service, op) in NO_AUTHORIZATION:
        return []
    action = _action(call)
    if service == "dynamodb":
        if op in ("TransactWriteItems", "TransactGetItems"):
            found = []
            for item in p["TransactItems"]:
                [(kind, body)] = item.items()
                found.append(Request(TRANSACT_ACTION[kind], names.table(body["TableName"])))
            return found
        if op in ("BatchWriteItem", "BatchGetItem"):
            return [Request(action, names.table(t)) for t in p["RequestItems"]]
        return [Request(action, names.table(p["TableName"], p.get("IndexName")))]
    if service == "dynamodbstreams":
        if op == "ListStreams":
            return [Request(action, "*")]
        stream = p.get("StreamArn") or call.stream_arn
        if not stream:
            raise NotInTemplate(f"{op}: stream of the iterator unknown")
        return [Request(action, names.stream(stream))]
    if service == "sqs":
        if op == "GetQueueUrl":
            return [Request(action, names.queue_name(p["QueueName"]))]
        return [Request(action, names.queue_url(p["QueueUrl"]))]
    if service == "sns":
        target = p.get("TopicArn") or p.get("TargetArn")
        if op == "Publish" and not target:
            return [Request(action, "*")]  # SMS to a phone number: no resource
        return [Request(action, names.topic(str(target)))]
    if service == "secretsmanager":
        return [Request(action, names.secret(p["SecretId"]))]
    if service == "stepfunctions":
        if "executionArn" in p:
            return [Request(action, names.execution(p["executionArn"]))]
        if "stateMachineArn" in p:
            # a version or alias (…:stateMachine:<name>:<qualifier>) is authorized against the state
            # machine's ARN, the qualifier in the context key states:StateMachineQualifier
            qualifier = p["stateMachineArn"].split(":stateMachine:", 1)[-1].partition(":")[2]
            context = (("states:StateMachineQualifier", qualifier),) if qualifier else ()
            return [Request(action, names.state_machine(p["stateMachineArn"]), context)]
        # Task tokens (SendTaskSuccess/Failure/Heartbeat): the service authorization reference lists
        # no resource type, but AWS evaluates the call against the state machine the token belongs to
        # ("not authorized to perform: states:SendTaskFailure on resource: ...:stateMachine:..."). The
        # token does not say which journey it is from, so the caller must be allowed on every journey.
        return [Request(action, machine) for machine in names.state_machines()]
    if service == "lambda":
        function = names.function(p["FunctionName"])
        if call.principal == STATES:  # a journey's task names what the deployed definition names
            return [Request(action, names.invoked_as(function))]
        return [Request(action, function)]
    if service == "events":
        return [Request(action, names.event_bus(e.get("EventBusName", "default"))) for e in p["Entries"]]
    if service in ("ses", "sesv2"):
        config = p.get("ConfigurationSetName")
        raw = p.get("RawMessage", {}).get("Data") or p.get("Content", {}).get("Raw", {}).get("Data")
        if config is None and raw is not None:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            header = re.search(r"^X-SES-CONFIGURATION-SET:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
            config = header.group(1) if header else None
        source = p.get("Source") or p.get("FromEmailAddress") or _from_header(raw)
        found = [Request(action, names.ses_identity(call.principal, source))]
        if config:
            found.append(Request(action, names.configuration_set(config)))
        return found
    if service == "s3":
        bucket = names.bucket(p["Bucket"])
        if op in ("GetObject", "HeadObject"):
            return [Request("s3:GetObject", f"{bucket}/{p['Key']}")]
        if op in ("ListObjectsV2", "ListObjects"):
            return [Request("s3:ListBucket", bucket)]
        return [Request(action, f"{bucket}/{p['Key']}" if "Key" in p else bucket)]
    if service == "cloudformation":
        return [Request(action, "*")]
    raise NotInTemplate(f"{service}:{op}: this tier does not know the call's resource")


def _from_header(raw: Any) -> str | None:
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    found = re.search(r"^From:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def _customer_key(stack: Stack, resource_arn: str) -> str | None:
    """The ARN of the stack's KMS key that encrypts the resource, if any."""
    for logical, resource in stack.resources.items():
        props = resource.get("Properties", {})
        key = props.get("KmsMasterKeyId") or props.get("KmsKeyId")
        if resource["Type"] == "AWS::DynamoDB::Table":
            key = props.get("SSESpecification", {}).get("KMSMasterKeyId")
        if not key:
            continue
        attribute = {"AWS::SNS::Topic": "TopicArn", "AWS::SQS::Queue": "Arn", "AWS::DynamoDB::Table": "Arn"}
        deployed = (
            stack.resolve({"Ref": logical})
            if resource["Type"] == "AWS::SecretsManager::Secret"
            else stack.deployed(logical).attributes.get(attribute.get(resource["Type"], "Arn"))
        )
        if deployed == resource_arn or (deployed and resource_arn.startswith(f"{deployed}/")):
            resolved = stack.resolve(key)
            return str(resolved) if str(resolved).startswith("arn:") else arn("kms", f"key/{resolved}")
    return None


def kms_requests(stack: Stack, request: Request) -> list[Request]:
    """The key use AWS makes on the caller's behalf: publishing to or sending to an encrypted
    topic/queue needs GenerateDataKey and Decrypt, reading an encrypted secret or table Decrypt."""
    if request.resource == "*":
        return []
    key = _customer_key(stack, request.resource)
    if key is None:
        return []
    if request.action in ("sns:Publish", "sqs:SendMessage"):
        return [Request("kms:GenerateDataKey", key), Request("kms:Decrypt", key)]
    return [Request("kms:Decrypt", key)]


def key_policy_allows(stack: Stack, request: Request, role_arn: str) -> bool:
    """The key policy lets the role use the key: it names the role, or delegates to IAM (the
    account root)."""
    for logical, resource in stack.of_type("AWS::KMS::Key").items():
        if stack.deployed(logical).attributes["Arn"] != request.resource:
            continue
        statements = stack.resolve(resource["Properties"]["KeyPolicy"]["Statement"])
        root = f"arn:{PARTITION}:iam::{ACCOUNT}:root"
        named = [s for s in statements if principal_named(s, aws=(root, role_arn, ACCOUNT))]
        return decide(named, Request(request.action, "*")) == "allow"
    return False


def policies_of(stack: Stack, principal: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(label, role ARN, statements) of each identity the principal acts as."""
    if principal == OPS_REDRIVE:
        logical = stack.logical_with_prefix("OpsRedrive", "AWS::IAM::ManagedPolicy")
        return [("OpsRedrive policy", "", stack.statements_of_managed_policy(logical))]
    if principal == STATES:
        found = []
        for machine in stack.of_type("AWS::StepFunctions::StateMachine").values():
            role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
            found.append(
                (
                    f"state machine {stack.resolve(machine['Properties']['StateMachineName'])}",
                    str(stack.resolve({"Fn::GetAtt": [role, "Arn"]})),
                    list(stack.statements_of_role(role)),
                )
            )
        return found
    function = DEPLOYED + principal.removeprefix(LOCAL)
    role = stack.role_of(function)
    return [
        (function, str(stack.resolve({"Fn::GetAtt": [role, "Arn"]})), list(stack.statements_of_role(role)))
    ]


def call_problems(stack: Stack, calls: Iterable[Call]) -> list[str]:
    names = Names(stack)
    problems: set[str] = set()
    checked: set[tuple[str, Request]] = set()
    for call in calls:
        try:
            requests = authorizations(call, names)
        except (NotInTemplate, LookupError) as exc:
            problems.add(f"{call.principal}: {call.service}:{call.operation}: {exc}")
            continue
        for request in requests:
            if (call.principal, request) in checked:
                continue
            checked.add((call.principal, request))
            for label, role_arn, statements in policies_of(stack, call.principal):
                verdict = decide(statements, request)
                if verdict != "allow":
                    problems.add(f"{label}: {request.action} on {request.resource}: {verdict}")
                    continue
                for key_use in kms_requests(stack, request):
                    verdict = decide(statements, key_use)
                    if verdict != "allow":
                        problems.add(
                            f"{label}: {key_use.action} on {key_use.resource} ({request.action}): {verdict}"
                        )
                    elif not key_policy_allows(stack, key_use, role_arn):
                        problems.add(f"{label}: key policy of {key_use.resource} denies {key_use.action}")
    return sorted(problems)


# --- invocation paths -------------------------------------------------------------------------


def _names_function(value: Any, function_arn: str) -> bool:
    """``value`` (a ``FunctionName`` property: an ARN, a name, or ``name:qualifier``) names exactly
    ``function_arn`` — an alias ARN is named only with its qualifier."""
    return str(value) == function_arn or function_arn.endswith(f":function:{value}")


def _permission(stack: Stack, function_arn: str, service: str, source: str | None = None) -> bool:
    for resource in stack.of_type("AWS::Lambda::Permission").values():
        props = stack.resolve(resource["Properties"])
        if not _names_function(props["FunctionName"], function_arn):
            continue
        if props.get("Action") != "lambda:InvokeFunction" or props.get("Principal") != service:
            continue
        if source is None or "SourceArn" not in props or matches(str(props["SourceArn"]), source):
            return True
    return False


def _filter_allows(mapping: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Lambda event filtering, the equality patterns leadflow uses (``{"field": ["value"]}``)."""
    filters = mapping.get("FilterCriteria", {}).get("Filters", [])
    if not filters:
        return True
    for entry in filters:
        pattern = json.loads(entry["Pattern"])
        if all(record.get(k) in v for k, v in pattern.items() if isinstance(v, list)):
            return True
    return False


def _role_statements(stack: Stack, function_arn: str) -> list[dict[str, Any]]:
    return list(stack.statements_of_role(stack.role_of(function_arn.rsplit(":", 1)[-1])))


def invocation_problems(stack: Stack, invocations: Iterable[tuple[str, Any]]) -> list[str]:
    names = Names(stack)
    problems: set[str] = set()
    seen: set[str] = set()
    for local_function, event in invocations:
        if not local_function.startswith(LOCAL) or not isinstance(event, Mapping):
            continue  # an operator tool, not a function
        try:
            function_arn = names.function(local_function)
        except NotInTemplate as exc:
            problems.add(str(exc))
            continue
        name = function_arn.rsplit(":", 1)[-1]
        try:
            target = names.invoked_as(function_arn)
        except NotInTemplate as exc:
            problems.add(str(exc))
            continue
        records = event.get("Records") if isinstance(event.get("Records"), list) else None
        if "routeKey" in event:
            key = f"{name} {event['routeKey']}"
            if key not in seen:
                seen.add(key)
                problems.update(_route_problems(stack, target, str(event["routeKey"])))
        elif records and records[0].get("eventSource") == "aws:dynamodb":
            for record in records:
                problems.update(_stream_problems(stack, names, function_arn, record, target))
        elif records and records[0].get("eventSource") == "aws:sqs":
            key = f"{name} sqs {records[0]['eventSourceARN']}"
            if key not in seen:
                seen.add(key)
                problems.update(
                    _queue_problems(stack, names, function_arn, str(records[0]["eventSourceARN"]), target)
                )
        elif records and records[0].get("EventSource") == "aws:sns":
            key = f"{name} sns {records[0]['Sns']['TopicArn']}"
            if key not in seen:
                seen.add(key)
                problems.update(
                    _topic_problems(stack, names, function_arn, str(records[0]["Sns"]["TopicArn"]), target)
                )
        elif {"SecretId", "ClientRequestToken", "Step"} <= set(event):
            key = f"{name} rotation {event['SecretId']}"
            if key not in seen:
                seen.add(key)
                problems.update(_rotation_problems(stack, names, target, str(event["SecretId"])))
        elif not event:  # no payload: CDK's Trigger custom resource invokes it during the deploy
            key = f"{name} deploy trigger"
            if key not in seen:
                seen.add(key)
                problems.update(_deploy_trigger_problems(stack, function_arn))
        else:
            key = f"{name} task"
            if key not in seen:
                seen.add(key)
                problems.update(_task_problems(stack, target))
    return sorted(problems)


def _route_problems(stack: Stack, function_arn: str, route_key: str) -> list[str]:
    for route in stack.of_type("AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        if props["RouteKey"] != route_key:
            continue
        integration = props["Target"]["Fn::Join"][1][1]["Ref"]
        target = stack.resolve(stack.resources[integration]["Properties"]["IntegrationUri"])
        if target != function_arn:
            return [f"route {route_key} goes to {target}, locally to {function_arn}"]
        method, path = route_key.split(" ", 1)
        api = stack.resolve({"Ref": props["ApiId"]["Ref"]})
        source = f"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:{api}/$default/{method}{path}"
        if not _permission(stack, function_arn, "apigateway.amazonaws.com", source):
            return [f"route {route_key}: API Gateway may not invoke {function_arn}"]
        return []
    return [f"route {route_key} (served locally by {function_arn}) is not in the template"]


def _mapping(stack: Stack, function_arn: str, source_arn: str) -> Mapping[str, Any] | None:
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        props = stack.resolve(mapping["Properties"])
        if props["EventSourceArn"] == source_arn and _names_function(props["FunctionName"], function_arn):
            return dict(props)
    return None


def _stream_problems(
    stack: Stack, names: Names, function_arn: str, record: Mapping[str, Any], target: str
) -> list[str]:
    """``target``: what the mapping must name (``Names.invoked_as``); the role is the function's."""
    stream = names.stream(str(record["eventSourceARN"]))
    mapping = _mapping(stack, target, stream)
    if mapping is None:
        return [
            f"{function_arn} gets stream records locally, the template maps no stream {stream} to {target}"
        ]
    problems = []
    if not _filter_allows(mapping, record):
        problems.append(
            f"{function_arn}: the mapping's filter drops {record.get('eventName')} records it gets locally"
        )
    statements = _role_statements(stack, function_arn)
    for action in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"):
        if decide(statements, Request(action, stream)) != "allow":
            problems.append(
                f"{function_arn}: its role may not {action} on {stream} (the mapping polls as it)"
            )
    failure = mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if failure and decide(statements, Request("sqs:SendMessage", str(failure))) != "allow":
        problems.append(f"{function_arn}: its role may not send to its on-failure queue {failure}")
    return problems


def _queue_problems(
    stack: Stack, names: Names, function_arn: str, local_queue: str, target: str
) -> list[str]:
    queue = names.queue_arn(local_queue)
    mapping = _mapping(stack, target, queue)
    if mapping is None:
        return [
            f"{function_arn} gets messages of {queue} locally, the template maps no such queue to {target}"
        ]
    statements = _role_statements(stack, function_arn)
    return [
        f"{function_arn}: its role may not {action} on {queue} (the mapping polls as it)"
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
        if decide(statements, Request(action, queue)) != "allow"
    ]


def _topic_problems(
    stack: Stack, names: Names, function_arn: str, local_topic: str, target: str
) -> list[str]:
    topic = names.topic(local_topic)
    for subscription in stack.of_type("AWS::SNS::Subscription").values():
        props = stack.resolve(subscription["Properties"])
        if props["Protocol"] == "lambda" and props["TopicArn"] == topic and props["Endpoint"] == target:
            if not _permission(stack, target, "sns.amazonaws.com", topic):
                return [f"{topic}: SNS may not invoke {target}"]
            return []
    return [
        f"{function_arn} gets notifications of {topic} locally, the template subscribes no {target} to it"
    ]


def _rotation_problems(stack: Stack, names: Names, function_arn: str, local_secret: str) -> list[str]:
    secret = names.secret(local_secret)
    for schedule in stack.of_type("AWS::SecretsManager::RotationSchedule").values():
        props = stack.resolve(schedule["Properties"])
        if props["SecretId"] == secret and props.get("RotationLambdaARN") == function_arn:
            if not _permission(stack, function_arn, "secretsmanager.amazonaws.com"):
                return [f"Secrets Manager may not invoke {function_arn}"]
            return []
    return [f"{function_arn} rotates {secret} locally, the template schedules no such rotation"]


def _deploy_trigger_problems(stack: Stack, function_arn: str) -> list[str]:
    """The function ran as the deploy runs it (``journey_changes``): a ``Custom::Trigger`` invokes
    a version of it synchronously (a failure reaches the deploy), only after every journey alias
    moved (``DependsOn``), and the Trigger's provider may invoke it."""
    logical = stack.functions()[function_arn.rsplit(":", 1)[-1]]
    versions = {
        k
        for k, r in stack.of_type("AWS::Lambda::Version").items()
        if r["Properties"].get("FunctionName") == {"Ref": logical}
    }
    found = [
        r
        for r in stack.of_type("Custom::Trigger").values()
        if r["Properties"].get("HandlerArn", {}).get("Ref") in versions
    ]
    if not found:
        return [
            f"{function_arn} ran as the deploy's trigger locally, no Custom::Trigger invokes a version of it"
        ]
    problems = []
    aliases = set(stack.of_type("AWS::StepFunctions::StateMachineAlias"))
    for trigger in found:
        props = trigger["Properties"]
        if props.get("InvocationType") != "RequestResponse":
            problems.append(
                f"{function_arn}: the deploy's trigger does not wait for it ({props.get('InvocationType')})"
            )
        missing = sorted(aliases - set(trigger.get("DependsOn", [])))
        if missing:
            problems.append(
                f"{function_arn}: the deploy's trigger may run before the aliases {', '.join(missing)}"
            )
        provider = props["ServiceToken"]["Fn::GetAtt"][0]
        role = stack.resources[provider]["Properties"]["Role"]["Fn::GetAtt"][0]
        if (
            decide(
                list(stack.statements_of_role(role)), Request("lambda:InvokeFunction", f"{function_arn}:1")
            )
            != "allow"
        ):
            problems.append(f"{function_arn}: the deploy's trigger provider may not invoke it")
    return problems


def _task_problems(stack: Stack, function_arn: str) -> list[str]:
    """A state machine task invoked the function: some journey's definition names it, and every
    machine naming it may invoke it."""
    naming = []
    for machine in stack.of_type("AWS::StepFunctions::StateMachine").values():
        props = machine["Properties"]
        substitutions = stack.resolve(props.get("DefinitionSubstitutions", {}))
        definition = str(stack.resolve(props["DefinitionString"]))
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(value))
        if function_arn in definition:
            naming.append(props)
    if not naming:
        return [f"{function_arn} ran as a state machine task locally, no journey's definition names it"]
    problems = []
    for props in naming:
        role = props["RoleArn"]["Fn::GetAtt"][0]
        if (
            decide(list(stack.statements_of_role(role)), Request("lambda:InvokeFunction", function_arn))
            != "allow"
        ):
            problems.append(f"state machine {props['StateMachineName']} may not invoke {function_arn}")
    return problems


# --- environment -------------------------------------------------------------------------------


def cold_start(environment: Mapping[str, str]) -> Settings:
    """``get_settings()`` in a process whose environment is exactly the function's (the Lambda
    runtime adds variables, none of them ``LEADFLOW_*``)."""
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


def environment_size(environment: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in environment.items())


def environment_problems(stack: Stack, function_name: str) -> list[str]:
    environment = stack.environment(function_name)
    problems = []
    try:
        cold_start(environment)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        problems.append(f"{function_name}: Settings fails at cold start ({fields})")
    size = environment_size(environment)
    if size > ENVIRONMENT_LIMIT:
        problems.append(
            f"{function_name}: environment is {size} bytes, Lambda allows {ENVIRONMENT_LIMIT} (4 KB)"
        )
    return problems


def functions_reached(recorder: CallRecorder) -> set[str]:
    return {f.removeprefix(LOCAL) for f, _ in recorder.invocations if f.startswith(LOCAL)}
