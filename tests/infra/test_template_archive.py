"""The template archive in the synthesized stack: every template version of this deploy staged
and copied (never pruned) into a private, encrypted, SSL-only bucket that only ``send`` reads;
every journey send names the version it renders, and no definition goes live before its versions
are archived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leadflow.journeys import load_journeys
from leadflow.messaging.template_versions import archive_key, bundle_of, template_names, version_of
from tests.infra.conftest import ROOT
from tests.infra.test_stack import _statements, resources, stage_functions

TEMPLATES = ROOT / "templates"


def _bucket(template_json: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(logical, bucket)] = [
        (k, v)
        for k, v in resources(template_json, "AWS::S3::Bucket").items()
        if k.startswith("TemplateArchive")
    ]
    return logical, bucket


def _sends(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """Every send spec in a definition's task payloads (plain, split variants, branch acts)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "template" in value and "channel" in value:
                found.append(value)
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(definition["States"])
    return found


def test_the_archive_bucket_is_private_encrypted_ssl_only_and_retained(template_json: dict[str, Any]) -> None:
    logical, bucket = _bucket(template_json)
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [policy] = [
        p
        for p in resources(template_json, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": logical}
    ]
    [deny] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_version_is_uploaded_and_none_is_ever_pruned(synthesized: tuple[Any, Path]) -> None:
    template_json = json.loads(synthesized[1].read_text())
    logical, _ = _bucket(template_json)
    [deployment] = resources(template_json, "Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert props["Prune"] is False
    assert props["RetainOnDelete"] is True
    assert props["DestinationBucketName"] == {"Ref": logical}
    # the staged asset: one document per template, under its version, with the whole bundle
    [staged] = list(synthesized[1].parent.glob("template-archive.*"))
    names = template_names(TEMPLATES)
    assert {"welcome", "trial-offer", "sms-reminder"} <= set(names)
    for name in names:
        document = staged / archive_key(name, version_of(TEMPLATES, name))
        assert json.loads(document.read_text(encoding="utf-8")) == bundle_of(TEMPLATES, name)
    assert len(list(staged.rglob("*.json"))) == len(names)


def test_only_send_reads_the_archive_and_only_its_versions(template_json: dict[str, Any]) -> None:
    logical, _ = _bucket(template_json)
    send = _statements(template_json, "SendFunctionServiceRole")
    reads = [s for s in send if logical in json.dumps(s.get("Resource"))]
    assert sorted((s["Action"], json.dumps(s["Resource"])) for s in reads) == sorted(
        [
            (
                "s3:GetObject",
                json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [logical, "Arn"]}, "/templates/*"]]}),
            ),
            ("s3:ListBucket", json.dumps({"Fn::GetAtt": [logical, "Arn"]})),
        ]
    )
    for name in ("track", "admin", "trigger", "score", "rotate", "feedback", "report", "bulk"):
        role = f"{name.capitalize()}FunctionServiceRole"
        assert logical not in json.dumps(_statements(template_json, role)), name
    for function in stage_functions(template_json).values():
        assert function["Properties"]["Environment"]["Variables"]["LEADFLOW_TEMPLATE_ARCHIVE_BUCKET"] == {
            "Ref": logical
        }


def test_every_send_names_its_template_version_and_waits_for_the_archive(
    template_json: dict[str, Any],
) -> None:
    [deployment_id] = resources(template_json, "Custom::CDKBucketDeployment")
    machines = {
        m["Properties"]["StateMachineName"]: m
        for m in resources(template_json, "AWS::StepFunctions::StateMachine").values()
    }
    named: set[str] = set()
    for journey in load_journeys(ROOT / "journeys"):
        machine = machines[f"leadflow-dev-{journey.id}"]
        assert deployment_id in machine.get("DependsOn", []), journey.id
        sends = _sends(json.loads(machine["Properties"]["DefinitionString"]))
        for send in sends:
            assert send["template_version"] == version_of(TEMPLATES, send["template"]), (journey.id, send)
        named.update(s["template"] for s in sends)
    assert {
        "welcome",
        "welcome-followup-engaged",
        "trial-tips-a",
        "trial-tips-b",
        "webinar-reminder",
    } <= named
