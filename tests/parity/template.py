"""The synthesized template as the deployed stage: intrinsics resolved to concrete values.

CloudFormation decides at deploy time what ``Ref``/``Fn::GetAtt`` of a resource are; this module
gives each logical resource the value AWS would (a table's ARN, a queue's URL, a secret's ARN with
its random suffix, ...) in one account and region, so that policies, environments and event source
mappings can be compared with what the local runtime does. Resources without a name in the template
(queues, secrets, topics) are named after their logical id: the mapping from a local resource to
its logical id (``tests/parity/recorder.py``) makes both sides meet on the same ARN.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STAGE = "dev"
STACK = f"leadflow-{STAGE}"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/4b6c1c20-0000-11f0-8a8f-0a1b2c3d4e5f"
API_ID = "a1b2c3d4e5"
STREAM_LABEL = "2026-12-03T00:00:00.000"

PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK,
    "AWS::StackId": STACK_ID,
    "AWS::NoValue": None,
}


class Unresolvable(ValueError):
    """An intrinsic this resolver does not know (a new resource type or function in the stack)."""


def arn(service: str, resource: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


@dataclass(frozen=True)
class Deployed:
    """What CloudFormation would return for one resource: ``ref`` and its attributes."""

    ref: Any
    attributes: Mapping[str, Any]


class Stack:
    """A template with its resources' deployed values; ``resolve`` turns intrinsics into values."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.template = copy.deepcopy(dict(template))
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self._deployed: dict[str, Deployed] = {}
        self._resolving: set[str] = set()

    # --- resources ---------------------------------------------------------------------------

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def functions(self) -> dict[str, str]:
        """Function name -> logical id, for every Lambda function of the stack."""
        return {
            self.resolve(r["Properties"]["FunctionName"]): logical
            for logical, r in self.of_type("AWS::Lambda::Function").items()
            if "FunctionName" in r["Properties"]
        }

    def logical_with_prefix(self, prefix: str, type_: str | None = None) -> str:
        """The one logical id starting with ``prefix`` (CDK appends a hash)."""
        found = [
            k
            for k, v in self.resources.items()
            if k.startswith(prefix) and (type_ is None or v["Type"] == type_)
        ]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources start with {prefix!r} ({type_}): {found}")
        return found[0]

    def deployed(self, logical: str) -> Deployed:
        if logical not in self._deployed:
            if logical in self._resolving:
                raise Unresolvable(f"circular reference through {logical}")
            self._resolving.add(logical)
            try:
                self._deployed[logical] = self._deploy(logical)
            finally:
                self._resolving.discard(logical)
        return self._deployed[logical]

    def _prop(self, logical: str, name: str, default: Any = None) -> Any:
        value = self.resources[logical].get("Properties", {}).get(name)
        return default if value is None else self.resolve(value)

    def _deploy(self, logical: str) -> Deployed:
        resource = self.resources[logical]
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            name = self._prop(logical, "TableName", logical)
            table = arn("dynamodb", f"table/{name}")
            return Deployed(name, {"Arn": table, "StreamArn": f"{table}/stream/{STREAM_LABEL}"})
        if kind == "AWS::SQS::Queue":
            name = self._prop(logical, "QueueName", logical)
            url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
            return Deployed(url, {"Arn": arn("sqs", name), "QueueName": name, "QueueUrl": url})
        if kind == "AWS::SNS::Topic":
            name = self._prop(logical, "TopicName", logical)
            topic = arn("sns", name)
            return Deployed(topic, {"TopicArn": topic, "TopicName": name})
        if kind == "AWS::SecretsManager::Secret":
            name = self._prop(logical, "Name", logical)
            secret = arn("secretsmanager", f"secret:{name}-AbCdEf")
            return Deployed(secret, {"Id": secret})
        if kind == "AWS::KMS::Key":
            key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
            return Deployed(key_id, {"Arn": arn("kms", f"key/{key_id}"), "KeyId": key_id})
        if kind == "AWS::Lambda::Function":
            name = self._prop(logical, "FunctionName", logical)
            return Deployed(name, {"Arn": arn("lambda", f"function:{name}")})
        if kind == "AWS::Lambda::Version":  # the first version published
            version = f"{self._function_arn(logical)}:1"
            return Deployed(version, {"Version": "1", "FunctionArn": version})
        if kind == "AWS::Lambda::Alias":
            alias = f"{self._function_arn(logical)}:{self._prop(logical, 'Name')}"
            return Deployed(alias, {"AliasArn": alias})
        if kind == "AWS::Lambda::LayerVersion":
            return Deployed(arn("lambda", f"layer:{logical}:1"), {})
        if kind == "AWS::StepFunctions::StateMachine":
            name = self._prop(logical, "StateMachineName", logical)
            machine = arn("states", f"stateMachine:{name}")
            return Deployed(machine, {"Arn": machine, "Name": name})
        if kind == "AWS::StepFunctions::StateMachineVersion":
            machine = self._prop(logical, "StateMachineArn")
            version = f"{machine}:1"  # the first version published
            return Deployed(version, {"Arn": version})
        if kind == "AWS::StepFunctions::StateMachineAlias":
            [route] = self._prop(logical, "RoutingConfiguration")
            machine = str(route["StateMachineVersionArn"]).rsplit(":", 1)[0]
            alias = f"{machine}:{self._prop(logical, 'Name')}"
            return Deployed(alias, {"Arn": alias})
        if kind == "AWS::Events::EventBus":
            name = self._prop(logical, "Name", logical)
            return Deployed(name, {"Arn": arn("events", f"event-bus/{name}"), "Name": name})
        if kind == "AWS::Events::Rule":
            return Deployed(logical, {"Arn": arn("events", f"rule/{logical}")})
        if kind == "AWS::SES::ConfigurationSet":
            return Deployed(self._prop(logical, "Name", logical), {})
        if kind == "AWS::SES::EmailIdentity":
            return Deployed(self._prop(logical, "EmailIdentity"), {})
        if kind == "AWS::IAM::Role":
            name = self._prop(logical, "RoleName", logical)
            return Deployed(name, {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}"})
        if kind == "AWS::IAM::ManagedPolicy":
            return Deployed(f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{logical}", {})
        if kind == "AWS::Logs::LogGroup":
            name = self._prop(logical, "LogGroupName", f"/aws/{logical}")
            return Deployed(name, {"Arn": arn("logs", f"log-group:{name}:*")})
        if kind == "AWS::ApiGatewayV2::Api":
            return Deployed(API_ID, {"ApiEndpoint": f"https://{API_ID}.execute-api.{REGION}.amazonaws.com"})
        if kind == "AWS::ApiGatewayV2::Stage":
            return Deployed(self._prop(logical, "StageName", "$default"), {})
        if kind == "AWS::ApiGatewayV2::DomainName":
            name = self._prop(logical, "DomainName")
            return Deployed(name, {"RegionalDomainName": f"d-{API_ID}.execute-api.{REGION}.amazonaws.com"})
        if kind == "AWS::S3::Bucket":
            name = self._prop(logical, "BucketName", logical.lower())
            return Deployed(name, {"Arn": f"arn:{PARTITION}:s3:::{name}"})
        if kind == "AWS::CloudWatch::Alarm":
            return Deployed(logical, {"Arn": arn("cloudwatch", f"alarm:{logical}")})
        return Deployed(logical, {})

    def _function_arn(self, logical: str) -> str:
        """The ARN of the function a version or an alias belongs to (``FunctionName``: its name)."""
        name = str(self._prop(logical, "FunctionName")).rsplit(":function:", 1)[-1]
        return arn("lambda", f"function:{name}")

    # --- intrinsics ----------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(key, arg)] = value.items()
            if key == "Ref":
                if arg in PSEUDO:
                    return PSEUDO[arg]
                if arg in self.template.get("Parameters", {}):
                    return self.template["Parameters"][arg].get("Default", arg)
                if arg not in self.resources:
                    raise Unresolvable(f"Ref to unknown {arg!r}")
                return self.deployed(arg).ref
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                attributes = self.deployed(logical).attributes
                if attribute not in attributes:
                    raise Unresolvable(f"Fn::GetAtt {logical}.{attribute}")
                return attributes[attribute]
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::If":
                raise Unresolvable("Fn::If (conditions) is not used by this stack")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name:
                logical, attribute = name.split(".", 1)
                out.append(str(self.resolve({"Fn::GetAtt": [logical, attribute]})))
            else:
                out.append(str(self.resolve({"Ref": name})))
        out.append(rest)
        return "".join(out)

    # --- what the parity tier reads --------------------------------------------------------------

    def environment(self, function_name: str) -> dict[str, str]:
        """The function's ``Environment.Variables`` as Lambda would set them (every value a string)."""
        logical = self.functions()[function_name]
        variables = self.resources[logical]["Properties"].get("Environment", {}).get("Variables", {})
        return {k: str(self.resolve(v)) for k, v in variables.items()}

    def role_of(self, function_name: str) -> str:
        """The logical id of the function's execution role."""
        logical = self.functions()[function_name]
        role = self.resources[logical]["Properties"]["Role"]
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            raise Unresolvable(f"{function_name}: role {role!r} is not a role of this stack")
        return str(role["Fn::GetAtt"][0])

    def statements_of_role(self, role: str) -> Iterator[dict[str, Any]]:
        """Every statement of the role's inline policies and attached managed policies (resolved)."""
        for logical, resource in self.resources.items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in props.get("Roles", []):
                yield from self.resolve(props["PolicyDocument"]["Statement"])
            if resource["Type"] == "AWS::IAM::Role" and logical == role:
                for policy in props.get("Policies", []):
                    yield from self.resolve(policy["PolicyDocument"]["Statement"])
                for attached in props.get("ManagedPolicyArns", []):
                    managed = self._managed(attached)
                    if managed is not None:
                        yield from managed

    def statements_of_managed_policy(self, logical: str) -> list[dict[str, Any]]:
        statements: list[dict[str, Any]] = self.resolve(
            self.resources[logical]["Properties"]["PolicyDocument"]["Statement"]
        )
        return statements

    def _managed(self, reference: Any) -> list[dict[str, Any]] | None:
        """A managed policy of this stack; AWS managed ones (basic execution: logs only) are None."""
        if isinstance(reference, dict) and "Ref" in reference and reference["Ref"] in self.resources:
            return self.statements_of_managed_policy(reference["Ref"])
        return None
