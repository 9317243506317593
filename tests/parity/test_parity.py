"""What passes locally runs in AWS: one broad scenario on the local system, every AWS call recorded
per function, then checked against the synthesized template (``tests.parity.contract``).

The scenario is what a stage lives through: sign-ups through the form and page views, the welcome
journey's emails, opens and clicks, SES delivery/bounce/complaint notifications and an SMS STOP,
the admin API (contacts, tags, timeline, export, lookup, segments, a broadcast through the bulk
worker, reports, an MQL hand-off and sales feedback, do-not-contact, erasure), a rotation of the
signing key driven by Secrets Manager, a stream batch that fails until ``leadflow ops redrive``
re-processes it, and the journeys' follow-ups two virtual days later, after a deploy edited their
templates (send reads the versions the executions started with from the template archive). One local system for the
module; the template is synthesized once per session.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from botocore.exceptions import ClientError

from leadflow.local import limits, recording
from leadflow.local.system import FUNCTIONS, ROOT, LocalSystem, resource_name
from leadflow.messaging.render import EmailRenderer
from tests.helpers import redrive_local_stage
from tests.integration.test_key_rotation import enable_rotation
from tests.integration.test_routing import become_mql
from tests.parity import contract
from tests.parity.iam import Request, decide
from tests.parity.recorder import OPS_REDRIVE, STATES, CallRecorder
from tests.parity.template import STAGE, Stack, arn

JSON = {"content-type": "application/json"}


def admin(system: LocalSystem, method: str, path: str, body: Any = None, query: str = "") -> dict[str, Any]:
    reply = system.invoke_http(
        method,
        path,
        query=query,
        headers={**JSON, "authorization": f"Bearer {system.admin_key}"},
        body=json.dumps(body) if body is not None else None,
    )
    assert reply["statusCode"] < 300, (method, path, reply)
    return dict(json.loads(reply["body"])) if reply.get("body") else {}


def sign_up(system: LocalSystem, email: str, visitor: str) -> str:
    page = system.invoke_http(
        "GET", "/t/p.gif", query=urlencode({"vid": visitor, "url": "https://example.com/pricing"})
    )
    assert page["statusCode"] == 200
    fields = {"email": email, "first_name": "Ada", "consent": True, "visitor_id": visitor}
    reply = system.invoke_http("POST", "/forms/newsletter", headers=JSON, body=json.dumps(fields))
    assert reply["statusCode"] == 201, reply
    contact_id: str = json.loads(reply["body"])["contact_id"]
    return contact_id


def mails_to(system: LocalSystem, address: str) -> list[dict[str, Any]]:
    return [m for m in system.outbox() if address in m["to"]]


def deploy_edited_layer(system: LocalSystem, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """A deploy changed every follow-up template while contacts wait: send's layer now has the
    edited templates; the waiting executions still name the versions they started with, which
    send reads from the template archive."""
    shutil.copytree(system.content_dir / "templates", folder)
    for name in ("welcome-followup-engaged", "welcome-followup-nudge"):
        (folder / name / "subject.txt").write_text("Edited after the contacts entered\n", encoding="utf-8")
    sender = system.modules["send"].sender
    monkeypatch.setattr(sender, "_renderer", EmailRenderer(folder, archive=sender._renderer._archive))


def deploy_changed_win_back(system: LocalSystem) -> None:
    """A deploy changes the win-back journey while a contact waits in it, and says its contacts
    leave (``on_change: exit``): the deploy's ``journey_changes`` function (the stack's CDK
    Trigger) ends the execution on the old version, closes the enrollment, records the exit."""
    path = system.content_dir / "journeys" / "win-back.yaml"
    text = path.read_text(encoding="utf-8")
    assert "wait: {days: 7}" in text
    path.write_text(
        text.replace("wait: {days: 7}", "wait: {days: 6}") + "on_change: exit\n", encoding="utf-8"
    )
    outcome = system.deploy_journeys()
    assert outcome["win-back"].startswith("published"), outcome
    [report] = system.change_reports
    assert (report.journey_id, report.exited) == ("win-back", {"v1": 1})
    assert system.change_failures == {}


def copy_of_the_content(folder: Path) -> Path:
    """The repository's journeys, templates, segments and lead model, for a system whose deploy
    edits a journey."""
    for name in ("journeys", "templates", "segments"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.copy2(ROOT / "leads.yaml", folder / "leads.yaml")
    return folder


def scenario(system: LocalSystem, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    engaged = sign_up(system, "parity-engaged@example.com", "v-parity-000001")
    bounced = sign_up(system, "parity-bounce@example.com", "v-parity-000002")
    complained = sign_up(system, "parity-complaint@example.com", "v-parity-000003")
    erased = sign_up(system, "parity-erased@example.com", "v-parity-000004")
    system.settle()

    # opens and clicks of the welcome email
    [welcome] = mails_to(system, "parity-engaged@example.com")
    html = str(welcome["html"])
    for kind in ("o", "c"):
        for link in re.findall(rf'(https?://[^/"]+/t/{kind}/[^"]+)"', html)[:2]:
            reply = system.invoke_http("GET", urlsplit(link).path, headers={"user-agent": "Mozilla/5.0"})
            assert reply["statusCode"] in (200, 302), reply
    # SES event publishing (through the feedback topic) and a two-way SMS reply
    system.deliver_feedback(system.ses_event(welcome, "Delivery"))
    system.deliver_feedback(system.ses_event(mails_to(system, "parity-bounce@example.com")[0], "Bounce"))
    system.deliver_feedback(
        system.ses_event(mails_to(system, "parity-complaint@example.com")[0], "Complaint")
    )
    system.sms_reply("+14155550123", "STOP")
    # a browser event on the public route, a business event from a server on the admin route
    event = {"type": "video_played", "email": "parity-engaged@example.com", "properties": {"video": "demo"}}
    reply = system.invoke_http("POST", "/events", headers=JSON, body=json.dumps(event))
    assert reply["statusCode"] == 202, reply
    admin(
        system,
        "POST",
        "/admin/events",
        {"type": "webinar_attended", "email": "parity-engaged@example.com", "properties": {"webinar": "w1"}},
    )
    system.settle()

    # the admin API
    created = admin(
        system, "POST", "/admin/contacts", {"email": "parity-admin@example.com", "tags": ["reader"]}
    )
    admin(system, "POST", f"/admin/contacts/{created['contact_id']}/tags", {"add": ["vip"]})
    admin(system, "GET", "/admin/contacts", query="limit=10")
    admin(system, "GET", f"/admin/contacts/{engaged}")
    admin(system, "GET", f"/admin/contacts/{engaged}/timeline", query="limit=5")
    admin(system, "GET", f"/admin/contacts/{engaged}/export")
    admin(system, "POST", "/admin/contacts/lookup", {"email": "parity-engaged@example.com"})
    admin(system, "GET", "/admin/attributes")
    imported = system.invoke_http(
        "POST",
        "/admin/contacts/import",
        headers={"content-type": "text/csv", "authorization": f"Bearer {system.admin_key}"},
        body="email,first_name,tags\nparity-import-1@example.com,Ida,reader\nparity-import-2@example.com,Ivo,\n",
    )
    assert imported["statusCode"] == 200, imported
    duplicate = admin(system, "POST", "/admin/contacts", {"email": "parity-dup@example.com"})["contact_id"]
    admin(system, "POST", f"/admin/contacts/{created['contact_id']}/merge", {"duplicate_id": duplicate})
    admin(
        system,
        "POST",
        "/admin/journeys/win-back/enrollments",
        {"contact_id": complained, "request_id": "crm-parity-2"},
    )
    admin(system, "PUT", "/admin/segments/parity-readers", {"name": "Readers", "when": {"tag": "reader"}})
    admin(system, "POST", "/admin/segments/parity-readers/evaluate")
    system.drain_bulk()
    admin(system, "GET", "/admin/segments")
    admin(system, "GET", "/admin/segments/parity-readers/members")
    broadcast = admin(
        system, "POST", "/admin/broadcasts", {"segment": "parity-readers", "template": "win-back"}
    )
    system.drain_bulk()
    admin(system, "GET", f"/admin/broadcasts/{broadcast['broadcast_id']}")
    become_mql(system, engaged)  # the lead engine's crossing: the hand-off journey starts
    system.settle()
    admin(
        system,
        "POST",
        f"/admin/contacts/{engaged}/sales-feedback",
        {"outcome": "accepted", "owner": "zoe", "request_id": "crm-parity-1"},
    )
    admin(system, "GET", "/admin/reports/journeys/welcome")
    admin(system, "GET", "/admin/reports/messages/welcome")
    admin(system, "GET", "/admin/reports/attribution")
    admin(
        system,
        "POST",
        f"/admin/contacts/{created['contact_id']}/do-not-contact",
        {"reason": "asked by phone"},
    )
    admin(system, "POST", f"/admin/contacts/{erased}/erase", {"reason": "art. 17 request #parity"})
    admin(system, "GET", f"/admin/erasures/{erased}")
    system.settle()

    # Secrets Manager rotates the signing key through the rotate function's four steps
    sm = system.client("secretsmanager")
    sm.rotate_secret(
        SecretId=resource_name("signing-key"),
        RotationLambdaARN=enable_rotation(system),
        RotationRules={"AutomaticallyAfterDays": 90},
    )

    # a score batch fails until its records go to the on-failure queue; then ops redrive
    store = system.modules["score"].service._store
    real = store.update_op

    def broken(contact_id: str, sets: dict[str, Any], *args: Any) -> dict[str, Any]:
        if "score_value" in sets:
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}}, "TransactWriteItems"
            )
        return real(contact_id, sets, *args)

    monkeypatch.setattr(store, "update_op", broken)
    sign_up(system, "parity-redrive@example.com", "v-parity-000005")
    system.settle()
    monkeypatch.undo()
    assert system.dead_letters("score")
    with recording.invocation(OPS_REDRIVE, None):
        summaries = redrive_local_stage(system, ("trigger", "score", "report"))
    assert sum(s.redriven for s in summaries) >= 1
    assert sum(s.skipped for s in summaries) == 1  # the erased contact's journey stays stopped
    system.settle()

    deploy_changed_win_back(system)

    # two virtual days: follow-ups (rendered from the archive after a deploy edited them), the
    # hand-off's reminder
    deploy_edited_layer(system, monkeypatch, folder)
    system.advance(2 * 86400 + 60)
    # suppressed by their feedback, erased: no follow-up; the engaged contact gets one
    for address in ("parity-bounce@example.com", "parity-complaint@example.com", "parity-erased@example.com"):
        assert len(mails_to(system, address)) == 1, address
    assert len(mails_to(system, "parity-engaged@example.com")) == 2
    followup = mails_to(system, "parity-engaged@example.com")[-1]
    assert (
        followup["subject"] == "Ada, your next step: the attribution workshop"
    )  # the version it started with
    assert {bounced, complained} <= {c["contact_id"] for c in system.contacts()}


def state_data_sizes(system: LocalSystem) -> dict[str, int]:
    """Per execution, the largest state input or output (bytes) in its history: Step Functions
    fails an execution whose state data exceeds 256 KB (``States.DataLimitExceeded``)."""
    sizes: dict[str, int] = {}
    for execution in system.executions():
        largest = 0
        for event in system.history(execution["arn"]):
            for key, details in event.items():
                if key.endswith("EventDetails") and isinstance(details, dict):
                    for name in ("input", "output"):
                        largest = max(largest, len(str(details.get(name) or "").encode()))
        sizes[execution["arn"]] = largest
    return sizes


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallRecorder]:
    recorder = CallRecorder()
    with (
        recorder.installed(),
        LocalSystem(
            background_pump=False, content_dir=copy_of_the_content(tmp_path_factory.mktemp("content"))
        ) as system,
        pytest.MonkeyPatch.context() as patch,
    ):
        scenario(system, patch, tmp_path_factory.mktemp("layer") / "templates")
        recorder.state_data = state_data_sizes(system)
        yield recorder


def test_every_function_and_the_redrive_tool_were_reached(recorded: CallRecorder) -> None:
    assert contract.functions_reached(recorded) == set(FUNCTIONS)
    principals = recorded.by_principal()
    assert {OPS_REDRIVE, STATES} <= set(principals)
    for name in FUNCTIONS:
        assert principals.get(resource_name(name)), f"{name} made no AWS call"
    # the deploy's journey_changes ended the win-back contact's execution on the old version
    changes = {c.operation for c in recorded.calls if c.principal == resource_name("journey_changes")}
    assert {
        "DescribeStateMachineAlias",
        "ListStateMachineVersions",
        "ListExecutions",
        "StopExecution",
    } <= changes
    # each function reads the signing key itself (its own sandbox, its own cache)
    readers = {c.principal for c in recorded.calls if c.operation == "GetSecretValue"}
    assert {resource_name(f) for f in ("track", "send", "rotate")} <= readers
    published = {(c.principal, c.service) for c in recorded.calls if c.operation in ("Publish", "PutEvents")}
    assert {(resource_name("send"), "sns"), (resource_name("send"), "events")} <= published
    # the follow-up's template version came from the template archive
    archive_reads = {c.principal for c in recorded.calls if (c.service, c.operation) == ("s3", "GetObject")}
    assert archive_reads == {resource_name("send")}


def test_every_call_is_allowed_by_the_callers_policies(recorded: CallRecorder, stack: Stack) -> None:
    assert contract.call_problems(stack, recorded.calls) == []


def test_every_invocation_path_exists_in_the_template(recorded: CallRecorder, stack: Stack) -> None:
    assert contract.invocation_problems(stack, recorded.invocations) == []


def test_every_function_starts_with_its_deployed_environment(stack: Stack) -> None:
    assert [
        p
        for name in sorted(FUNCTIONS)
        for p in contract.environment_problems(stack, f"leadflow-{STAGE}-{name}")
    ] == []


def test_state_data_and_invocation_payloads_are_within_aws_limits(recorded: CallRecorder) -> None:
    """Step Functions state input/output at most 256 KB; Lambda payloads at most 6 MB for
    synchronous invocations (API, streams, queues, tasks, rotation) and 256 KB for asynchronous
    ones (SNS)."""
    assert recorded.state_data
    assert max(recorded.state_data.values()) <= limits.MESSAGE_LIMIT
    for function, event in recorded.invocations:
        if event is None:
            continue
        size = len(json.dumps(event, default=str).encode())
        records = event.get("Records") if isinstance(event, dict) else None
        asynchronous = bool(records) and records[0].get("EventSource") == "aws:sns"
        limit = limits.MESSAGE_LIMIT if asynchronous else limits.SYNC_PAYLOAD_LIMIT
        assert size <= limit, f"{function}: a {size}-byte event, Lambda takes at most {limit}"


# --- the tier fails when the template loses what the local system uses ---------------------------


def _without(document: dict[str, Any], predicate: Any) -> dict[str, Any]:
    """A copy of the template with every policy statement matching ``predicate`` removed."""
    broken: dict[str, Any] = json.loads(json.dumps(document))
    removed = 0
    for resource in broken["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            statements = resource["Properties"]["PolicyDocument"]["Statement"]
            kept = [s for s in statements if not predicate(s)]
            removed += len(statements) - len(kept)
            resource["Properties"]["PolicyDocument"]["Statement"] = kept
    assert removed, "the mutation removed nothing"
    return broken


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return [action] if isinstance(action, str) else list(action)


def test_a_removed_grant_fails_the_tier(recorded: CallRecorder, template_document: dict[str, Any]) -> None:
    """feedback loses its write to the messages table: the calls it made locally are denied."""
    feedback_role = Stack(template_document).role_of(f"leadflow-{STAGE}-feedback")
    broken = json.loads(json.dumps(template_document))
    for resource in broken["Resources"].values():
        if (
            resource["Type"] == "AWS::IAM::Policy"
            and {"Ref": feedback_role} in resource["Properties"]["Roles"]
        ):
            resource["Properties"]["PolicyDocument"]["Statement"] = [
                s
                for s in resource["Properties"]["PolicyDocument"]["Statement"]
                if "TablesMessages" not in json.dumps(s.get("Resource"))
            ]
    problems = contract.call_problems(Stack(broken), recorded.calls)
    assert problems
    assert all(p.startswith(f"leadflow-{STAGE}-feedback: dynamodb:") for p in problems), problems
    assert any(":table/leadflow-dev-messages: implicit deny" in p for p in problems)


def test_a_removed_key_grant_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """send may publish to the encrypted hand-off topic but no longer use its key."""
    broken = _without(
        template_document,
        lambda s: "kms:GenerateDataKey*" in _actions(s) and "TopicKey" in json.dumps(s.get("Resource")),
    )
    problems = contract.call_problems(Stack(broken), recorded.calls)
    assert any(
        p.startswith(f"leadflow-{STAGE}-send: kms:GenerateDataKey on arn:aws:kms:") for p in problems
    ), problems


def test_an_explicit_deny_fails_the_tier(recorded: CallRecorder, template_document: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(template_document))
    role = Stack(broken).role_of(f"leadflow-{STAGE}-track")
    [policy] = [
        r
        for r in broken["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
    ]
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Deny", "Action": "dynamodb:Put*", "Resource": "*"}
    )
    problems = contract.call_problems(Stack(broken), recorded.calls)
    assert problems
    assert all(p.startswith(f"leadflow-{STAGE}-track: dynamodb:PutItem on ") for p in problems), problems
    assert all(p.endswith(": explicit deny") for p in problems), problems


def test_a_removed_invocation_path_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """The feedback function's SNS subscription and report's stream mapping are gone."""
    broken = json.loads(json.dumps(template_document))
    for logical in [
        k
        for k, r in broken["Resources"].items()
        if (r["Type"] == "AWS::SNS::Subscription" and "Feedback" in k and "InboundSms" not in k)
        or (r["Type"] == "AWS::Lambda::EventSourceMapping" and k.startswith("ReportLive"))
    ]:
        del broken["Resources"][logical]
    problems = contract.invocation_problems(Stack(broken), recorded.invocations)
    assert any("feedback gets notifications of" in p for p in problems), problems
    assert any("report gets stream records locally" in p for p in problems), problems


def test_a_path_to_latest_of_a_snap_start_function_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """Score's stream mapping names the function, not its SnapStart alias: ``$LATEST`` would run,
    importing from scratch at every cold start."""
    broken = json.loads(json.dumps(template_document))
    [mapping] = [
        r
        for k, r in broken["Resources"].items()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and k.startswith("ScoreLive")
    ]
    [score] = [
        k
        for k, r in broken["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and k.startswith("ScoreFunction")
    ]
    mapping["Properties"]["FunctionName"] = {"Ref": score}
    problems = contract.invocation_problems(Stack(broken), recorded.invocations)
    assert problems == [
        f"arn:aws:lambda:us-east-1:123456789012:function:leadflow-{STAGE}-score gets stream records locally,"
        f" the template maps no stream arn:aws:dynamodb:us-east-1:123456789012:table/leadflow-{STAGE}-events"
        f"/stream/2026-12-03T00:00:00.000 to arn:aws:lambda:us-east-1:123456789012:function:leadflow-{STAGE}-score:live"
    ], problems


def test_an_execution_on_a_version_from_before_snap_start_still_reaches_send(stack: Stack) -> None:
    """Journey versions are retained: one published before SnapStart names the send function itself
    (its tasks' ``FunctionName``), newer ones its ``live`` alias. Every journey's role may invoke both,
    so an execution waiting for weeks on an older version still sends."""
    send = arn("lambda", f"function:leadflow-{STAGE}-send")
    for label, _, statements in contract.policies_of(stack, STATES):
        for target in (send, f"{send}:live"):
            assert decide(statements, Request("lambda:InvokeFunction", target)) == "allow", (label, target)


def test_a_removed_variable_fails_the_tier(template_document: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(template_document))
    stack = Stack(broken)
    del broken["Resources"][stack.functions()[f"leadflow-{STAGE}-report"]]["Properties"]["Environment"][
        "Variables"
    ]["LEADFLOW_BULK_QUEUE_URL"]
    assert contract.environment_problems(Stack(broken), f"leadflow-{STAGE}-report") == [
        f"leadflow-{STAGE}-report: Settings fails at cold start (bulk_queue_url)"
    ]


def test_a_start_grant_for_another_alias_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """trigger starts executions on each journey's alias ``live``: a grant that names another
    qualifier (or none) no longer allows the starts it made locally."""
    broken = json.loads(json.dumps(template_document))
    changed = 0
    for resource in broken["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if "states:StartExecution" in _actions(statement):
                statement["Condition"] = {"StringEquals": {"states:StateMachineQualifier": "canary"}}
                changed += 1
    assert changed
    problems = contract.call_problems(Stack(broken), recorded.calls)
    assert problems
    assert all(f"leadflow-{STAGE}-trigger: states:StartExecution" in p for p in problems), problems


def test_a_removed_archive_grant_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """send may no longer read the template archive: its read of the follow-up's version is denied."""
    broken = _without(
        template_document, lambda s: "s3:GetObject" in _actions(s) and "TemplateArchive" in json.dumps(s)
    )
    problems = contract.call_problems(Stack(broken), recorded.calls)
    assert problems
    assert all(
        p.startswith(f"leadflow-{STAGE}-send: s3:GetObject on arn:aws:s3:::templatearchivebucket")
        for p in problems
    ), problems


def test_a_deploy_trigger_that_may_run_before_an_alias_fails_the_tier(
    recorded: CallRecorder, template_document: dict[str, Any]
) -> None:
    """The Trigger of journey_changes loses its dependency on one alias, and becomes asynchronous:
    it could run before that journey's alias moved, and the deploy would not wait for it."""
    broken = json.loads(json.dumps(template_document))
    [trigger] = [r for r in broken["Resources"].values() if r["Type"] == "Custom::Trigger"]
    alias = next(d for d in trigger["DependsOn"] if d.startswith("JourneysAliaswinback"))
    trigger["DependsOn"].remove(alias)
    trigger["Properties"]["InvocationType"] = "Event"
    function = f"arn:aws:lambda:us-east-1:123456789012:function:leadflow-{STAGE}-journey_changes"
    problems = contract.invocation_problems(Stack(broken), recorded.invocations)
    assert problems == [
        f"{function}: the deploy's trigger does not wait for it (Event)",
        f"{function}: the deploy's trigger may run before the aliases {alias}",
    ]
