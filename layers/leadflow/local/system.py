"""``LocalSystem``: the whole leadflow system in one process on moto.

Resources come from the same definitions the CDK app deploys: the table specs in
``leadflow.platform.tables`` and the compiled journeys (the exact ASL text, placeholders filled). The four
Lambda handlers are imported from ``functions/*/app.py`` and called with real event shapes: HTTP
API v2 events for ``track``, DynamoDB stream batches for ``trigger`` and ``score``, Step Functions
Lambda-task payloads for ``send``."""

from __future__ import annotations

import base64
import email
import importlib.util
import itertools
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from datetime import datetime
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config
from moto import mock_aws

from leadflow import wiring
from leadflow.capture import protection
from leadflow.journeys import compile_journey, load_journeys
from leadflow.kernel import clock as domain_clock
from leadflow.kernel import observability
from leadflow.kernel.settings import Settings, get_settings
from leadflow.local import limits, recording, sfn_stop, sfn_versions
from leadflow.local.clock import VirtualClock
from leadflow.local.moto_patches import Handler, lambda_context, patched_moto
from leadflow.local.pump import Consumer, QueueConsumer, QueuePump, StreamPump
from leadflow.local.ses_simulator import SesSimulator
from leadflow.messaging.template_versions import upload_archive
from leadflow.platform.routes import resolve
from leadflow.platform.tables import ALL_TABLES, EVENTS, MESSAGES, TableSpec
from leadflow.platform.tokens import KeyRing

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGE = "local"
PREFIX = f"leadflow-{STAGE}"
FUNCTIONS = (
    "track",
    "trigger",
    "score",
    "send",
    "admin",
    "rotate",
    "feedback",
    "report",
    "bulk",
    "journey_changes",
)
FORBIDDEN = {
    "statusCode": 403,
    "headers": {"content-type": "application/json"},
    "body": '{"message":"Forbidden"}',
}
"""What API Gateway answers an admin route called without valid IAM credentials."""
SENDER = "news@leadflow.example.com"
JOURNEY_ALIAS = "live"
"""The alias of each journey state machine that executions start on (as the stack's)."""
RELOADED_ON_DEPLOY = ("trigger", "admin", "track", "send", "journey_changes")
"""Functions that read the journey files or templates at cold start: a journeys deploy starts them
afresh, as a deploy gives a Lambda function new instances."""


def resource_name(logical: str) -> str:
    return f"{PREFIX}-{logical}"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{resource_name(name)}"


def queue_url(logical: str) -> str:
    """The URL moto gives the queue named ``resource_name(logical)``."""
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{resource_name(logical)}"


def local_settings(public_base_url: str, content_dir: Path = ROOT) -> dict[str, str]:
    """The local runtime's value of every ``Settings`` field (the text of its variable)."""
    return {
        "stage": STAGE,
        "contacts_table": resource_name("contacts"),
        "events_table": resource_name("events"),
        "messages_table": resource_name("messages"),
        "idempotency_table": resource_name("idempotency"),
        "reports_table": resource_name("reports"),
        "report_goals": "purchase,deal_won",
        "public_base_url": public_base_url,
        "signing_key_secret": resource_name("signing-key"),
        "sender_email": SENDER,
        "sender_name": "Northwind Analytics",
        "unsubscribe_mailto": "unsubscribe@leadflow.example.com",
        "ses_configuration_set": resource_name("email"),
        "content_dir": str(content_dir),
        "state_machine_arn_prefix": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{PREFIX}-",
        "journey_alias": JOURNEY_ALIAS,
        "event_retention_days": "400",
        "sales_topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{resource_name('sales-handoff')}",
        "webhook_secrets_secret": resource_name("webhook-keys"),
        "sms_sender_id": "Northwind",
        "sms_origination_number": "",
        "sms_type": "Promotional",
        "forms": json.dumps(
            {
                "newsletter": {
                    "thank_you_url": "/thanks",
                    "error_url": "/",
                    "consent_required": True,
                    "double_opt_in": False,
                    "consent_text": "Yes, send me the Northwind Analytics newsletter. I can unsubscribe at any time.",
                },
                "whitepaper": {
                    "thank_you_url": "/thanks",
                    "error_url": "/",
                    "consent_required": True,
                    "double_opt_in": True,
                    "consent_text": "Yes, send me the whitepaper and the Northwind Analytics newsletter.",
                },
            }
        ),
        "bulk_queue_url": queue_url("bulk-jobs"),
        "event_bus_name": resource_name("leads"),
        "webhook_dead_letter_queue_url": queue_url("webhook-dead-letters"),
        "broadcast_send_rate": "1000",
        "public_event_types": "video_played",
        "event_source_keys_secret": resource_name("event-source-keys"),
        "template_archive_bucket": resource_name("template-archive"),
    }


def settings_env(public_base_url: str, content_dir: Path = ROOT) -> dict[str, str]:
    """The environment the functions see locally: every ``Settings`` field's variable
    (``Settings.environment``: a field without a local value, or a value of no field, is an
    error) and Powertools' own."""
    return Settings.environment(local_settings(public_base_url, content_dir)) | {
        "POWERTOOLS_SERVICE_NAME": "leadflow",
        "POWERTOOLS_METRICS_NAMESPACE": "Leadflow",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("LEADFLOW_LOG_LEVEL", "WARNING"),
    }


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "MOTO_ACCOUNT_ID": ACCOUNT,
}


def create_table(ddb: Any, spec: TableSpec, name: str) -> dict[str, Any]:
    """A table as the CDK app defines it: keys, on-demand, indexes, stream and TTL from the spec."""
    params: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": spec.partition_key, "KeyType": "HASH"},
            {"AttributeName": spec.sort_key, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": spec.partition_key, "AttributeType": "S"},
            {"AttributeName": spec.sort_key, "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.indexes:
        # the index keys are attributes too (declared once each)
        declared = {spec.partition_key, spec.sort_key}
        for index in spec.indexes:
            for attribute in (index.partition_key, index.sort_key):
                if attribute not in declared:
                    declared.add(attribute)
                    params["AttributeDefinitions"].append({"AttributeName": attribute, "AttributeType": "S"})
        params["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in spec.indexes
        ]
    if spec.stream:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream}
    table: dict[str, Any] = ddb.create_table(**params)["TableDescription"]
    if spec.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
        )
    return table


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` under a unique module name."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"leadflow_fn_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LocalSystem:
    """Start with ``with LocalSystem() as system:``; everything stops at the end of the block."""

    def __init__(
        self,
        public_base_url: str = "http://127.0.0.1:8080",
        *,
        background_pump: bool = True,
        content_dir: Path = ROOT,
        clock_start: float | None = None,
    ) -> None:
        """``content_dir`` holds ``journeys/`` and ``templates/`` (the repository's by default);
        ``clock_start`` sets the virtual clock (epoch seconds; default: now)."""
        self.public_base_url = public_base_url
        self.content_dir = content_dir
        self.clock = VirtualClock(clock_start)
        self._background_pump = background_pump
        self._stack = ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._invoke_lock = threading.RLock()
        self.handlers: dict[str, Handler] = {}
        self.state_machines: dict[str, str] = {}
        self.change_reports: list[Any] = []
        self.change_failures: dict[str, str] = {}
        """What the last ``deploy_journeys`` did to contacts in flight (``leadflow.ops.changes``)."""
        self.journey_aliases: dict[str, str] = {}
        """journey id -> the ARN of its alias (``live``): where trigger starts executions."""
        self.dlq_urls: dict[str, str] = {}
        self.modules: dict[str, ModuleType] = {}
        self.pump: StreamPump
        self.bulk_pump: QueuePump
        self.sales_handoffs_url = ""
        self.bulk_queue_url = ""
        self.webhook_dead_letters_url = ""
        self.lead_events_url = ""
        self._clients = itertools.count()
        self.event_source_key = os.environ.get("LEADFLOW_LOCAL_EVENT_SOURCE_KEY") or secrets.token_urlsafe(32)
        """The key of the local event source ``default`` (``POST /events/signed``)."""
        # a prefix: a key starting with "-" would read as an option on a command line (`--key KEY`)
        self.admin_key = os.environ.get("LEADFLOW_LOCAL_ADMIN_KEY") or "lf_" + secrets.token_urlsafe(24)
        self.ses_simulator = SesSimulator(self.ses_event, self.deliver_feedback)
        """SES's mailbox simulator addresses get SES's notifications through the feedback path."""
        """The local dev credential of admin routes (``Authorization: Bearer <key>``), IAM's stand-in."""

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalSystem:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setenv(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, config=Config(account_id_endpoint_mode="disabled"))

    def _start(self) -> None:
        # moto's interpreter logs an IsPresent test on a missing path as an error (AWS does not);
        # real failures are in the execution history, which /_local/executions shows
        logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
        self._setenv(AWS_ENV)
        self._setenv(settings_env(self.public_base_url, self.content_dir))
        self._stack.enter_context(
            mock_aws(
                config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
            )
        )
        self._stack.enter_context(limits.enforced())  # AWS's request limits, refused as AWS does
        # StopExecution keeps its error and cause, as AWS does (redrive skips stops on purpose)
        self._stack.enter_context(sfn_stop.keep_stop_reasons())
        # executions start on a journey's alias and keep the version they started on, as in AWS
        self._stack.enter_context(sfn_versions.versions_and_aliases())
        # a fresh process state for this system: settings, clients and cached secrets of an earlier one go
        get_settings.cache_clear()
        wiring.client.cache_clear()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        protection.refusals.clear()  # the dashboard's refusal figures are this system's
        domain_clock.set_source(self.clock.now)
        self._stack.callback(domain_clock.reset_source)
        ddb = self.client("dynamodb")
        tables = {spec.name: create_table(ddb, spec, resource_name(spec.name)) for spec in ALL_TABLES}
        ses = self.client("ses")
        ses.verify_email_identity(EmailAddress=SENDER)
        ses.create_configuration_set(ConfigurationSet={"Name": resource_name("email")})
        self.client("secretsmanager").create_secret(
            Name=resource_name("signing-key"),
            SecretString=KeyRing(current=secrets.token_urlsafe(48)).model_dump_json(),
        )
        self.client("secretsmanager").create_secret(
            Name=resource_name("webhook-keys"),
            SecretString=json.dumps(
                {"default": os.environ.get("LEADFLOW_LOCAL_WEBHOOK_KEY") or secrets.token_urlsafe(32)}
            ),
        )
        self.client("secretsmanager").create_secret(
            Name=resource_name("event-source-keys"),
            SecretString=json.dumps({"default": self.event_source_key}),
        )
        sqs = self.client("sqs")
        self.sales_handoffs_url = self._sales_handoffs(sqs)
        for consumer in ("trigger", "score", "report"):
            self.dlq_urls[consumer] = sqs.create_queue(QueueName=resource_name(f"{consumer}-failures"))[
                "QueueUrl"
            ]
        self.bulk_queue_url = sqs.create_queue(QueueName=resource_name("bulk-jobs"))["QueueUrl"]
        self.webhook_dead_letters_url = sqs.create_queue(QueueName=resource_name("webhook-dead-letters"))[
            "QueueUrl"
        ]
        self.lead_events_url = self._lead_event_bus(sqs)
        self.client("s3").create_bucket(Bucket=resource_name("template-archive"))
        self.archive_templates()
        self._create_state_machines()

        self.modules = {name: load_function(name) for name in FUNCTIONS}
        for name, module in self.modules.items():
            self.handlers[resource_name(name)] = self._serialized(module.handler, resource_name(name))
        self._stack.enter_context(patched_moto(self.clock, self.handlers))
        self._stack.callback(self.ses_simulator.install(wiring.client("ses")))
        # moto builds its Lambda URL router on first use, and concurrent first uses each build one
        # (seconds of CPU): build it now, before executions run in parallel
        self.client("lambda").list_functions()

        self.pump = StreamPump(
            streams=self.client("dynamodbstreams"),
            sqs=sqs,
            stream_arn=tables[EVENTS.name]["LatestStreamArn"],
            region=REGION,
        )
        for consumer in ("trigger", "score", "report"):
            self.pump.add_consumer(
                Consumer(
                    name=resource_name(consumer),
                    handler=self.handlers[resource_name(consumer)],
                    dlq_url=self.dlq_urls[consumer],
                )
            )
        self.bulk_pump = QueuePump(sqs=sqs, region=REGION)
        self.bulk_pump.add_consumer(
            QueueConsumer(
                name=resource_name("bulk"),
                handler=self.handlers[resource_name("bulk")],
                queue_url=self.bulk_queue_url,
                queue_arn=sqs.get_queue_attributes(QueueUrl=self.bulk_queue_url, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"],
            )
        )
        if self._background_pump:
            self.pump.start()
            self._stack.callback(self.pump.stop)
            self.bulk_pump.start()
            self._stack.callback(self.bulk_pump.stop)
            self.ses_simulator.start()
            self._stack.callback(self.ses_simulator.stop)

    def _sales_handoffs(self, sqs: Any) -> str:
        """The sales hand-off topic, with a queue subscribed so the local runtime can show what sales got."""
        sns = self.client("sns")
        topic = sns.create_topic(Name=resource_name("sales-handoff"))["TopicArn"]
        url: str = sqs.create_queue(QueueName=resource_name("sales-handoffs"))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        return url

    def _lead_event_bus(self, sqs: Any) -> str:
        """The EventBridge bus of hand-offs, with a rule that copies every event to a queue (what a
        CRM integration would subscribe), so the local runtime can show what went out."""
        events = self.client("events")
        bus = resource_name("leads")
        events.create_event_bus(Name=bus)
        url: str = sqs.create_queue(QueueName=resource_name("lead-events"))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name=resource_name("all-lead-events"), EventBusName=bus, EventPattern='{"source": ["leadflow"]}'
        )
        events.put_targets(
            Rule=resource_name("all-lead-events"), EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}]
        )
        return url

    def lead_events(self) -> list[dict[str, Any]]:
        """Every event put on the hand-off bus so far (EventBridge envelopes, kept in the queue)."""
        return self._peek(self.lead_events_url)

    def _peek(self, url: str) -> list[dict[str, Any]]:
        """Every message in the queue, left in it: received with a visibility timeout until none
        is left to receive, then made visible again."""
        sqs = self.client("sqs")
        found: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                found.setdefault(message["MessageId"], json.loads(message["Body"]))
                handles.append(message["ReceiptHandle"])
        for start in range(0, len(handles), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for n, handle in enumerate(handles[start : start + 10])
                ],
            )
        return list(found.values())

    def sales_handoffs(self) -> list[dict[str, Any]]:
        """Every hand-off document published to the sales topic so far (kept in the queue)."""
        return self._peek(self.sales_handoffs_url)

    def archive_templates(self) -> list[str]:
        """Put every template version of the content folder into the template archive, as a
        deploy does (``leadflow.messaging.template_versions``; never pruned): call it before
        (re)deploying journeys whose definitions name those versions. The keys written."""
        return upload_archive(
            self.client("s3"), resource_name("template-archive"), self.content_dir / "templates"
        )

    def _create_state_machines(self) -> None:
        for journey in load_journeys(self.content_dir / "journeys"):
            self._create_state_machine(journey.id, self._definition(journey))

    def _definition(self, journey: Any) -> str:
        """The journey's deployed definition: sends name their templates' versions."""
        return compile_journey(journey, templates_dir=self.content_dir / "templates").replace(
            "${SendFunctionArn}", function_arn("send")
        )

    def _create_state_machine(self, journey_id: str, definition: str) -> str:
        """The journey's state machine with its first version published and the alias on it."""
        sfn = self.client("stepfunctions")
        role = f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-journeys"
        created = sfn.create_state_machine(
            name=f"{PREFIX}-{journey_id}",
            definition=definition,
            roleArn=role,
            type="STANDARD",
            publish=True,
            versionDescription=version_description(journey_id, definition),
        )
        self.state_machines[journey_id] = created["stateMachineArn"]
        self.journey_aliases[journey_id] = sfn.create_state_machine_alias(
            name=JOURNEY_ALIAS,
            routingConfiguration=[
                {"stateMachineVersionArn": created["stateMachineVersionArn"], "weight": 100}
            ],
        )["stateMachineAliasArn"]
        return str(created["stateMachineVersionArn"])

    def deploy_journeys(self) -> dict[str, str]:
        """What ``cdk deploy`` does to the journeys, on this system: every journey file whose
        compiled definition changed is published as a new version and its alias moved to it (a new
        journey gets its state machine); running executions keep their version. The functions that
        read the journey files start afresh (a deployed Lambda gets new instances). Then, as the
        stack's CDK Trigger does, the ``journey_changes`` function carries out every journey's
        ``on_change`` for the contacts in flight on older versions (``leadflow.ops.changes``; the
        reports of the published journeys in ``change_reports``, failures in ``change_failures``;
        locally it runs on every deploy: it is idempotent). Returns, per
        journey, ``published <version ARN>``, ``created <version ARN>`` or ``unchanged``."""
        self.settle()
        self.archive_templates()  # a definition may only name archived template versions
        sfn = self.client("stepfunctions")
        outcome: dict[str, str] = {}
        journeys = load_journeys(self.content_dir / "journeys")
        for journey in journeys:
            definition = self._definition(journey)
            arn = self.state_machines.get(journey.id)
            if arn is None:
                outcome[journey.id] = f"created {self._create_state_machine(journey.id, definition)}"
                continue
            if sfn.describe_state_machine(stateMachineArn=arn)["definition"] == definition:
                outcome[journey.id] = "unchanged"
                continue
            version = sfn.update_state_machine(
                stateMachineArn=arn,
                definition=definition,
                publish=True,
                versionDescription=version_description(journey.id, definition),
            )["stateMachineVersionArn"]
            sfn.update_state_machine_alias(
                stateMachineAliasArn=self.journey_aliases[journey.id],
                routingConfiguration=[{"stateMachineVersionArn": version, "weight": 100}],
            )
            outcome[journey.id] = f"published {version}"
        with self._invoke_lock:
            for name in RELOADED_ON_DEPLOY:
                self._start_function(name)
        self.change_reports = self._apply_changes(
            [j for j in journeys if outcome[j.id].startswith("published")]
        )
        self.settle()
        return outcome

    def _apply_changes(self, journeys: list[Any]) -> list[Any]:
        """What the stack's CDK Trigger does after the aliases moved: the ``journey_changes``
        function, invoked as the Trigger's custom resource invokes it (no payload), carries out
        every deployed journey's ``on_change``. The reports of the journeys this deploy changed."""
        from leadflow.ops.changes import ChangeReport

        name = resource_name("journey_changes")
        answer = self.handlers[name]({}, lambda_context(name))
        changed = {journey.id for journey in journeys}
        self.change_failures = dict(answer["failed"])
        return [ChangeReport(**r) for r in answer["journeys"] if r["journey_id"] in changed]

    def _start_function(self, name: str) -> None:
        """Import the function anew (its cold start) and route its invocations to it."""
        module = load_function(name)
        self.modules[name] = module
        handler = self._serialized(module.handler, resource_name(name))
        self.handlers[resource_name(name)] = handler
        for consumer in self.pump.consumers:
            if consumer.name == resource_name(name):
                consumer.handler = handler

    def _serialized(self, handler: Handler, function: str = "") -> Handler:
        """Run handlers one at a time, as moto's backends are not built for concurrent writers;
        each call is marked as ``function``'s (``leadflow.local.recording``)."""

        def run(event: dict[str, Any], context: Any) -> Any:
            with self._invoke_lock, recording.invocation(function, event):
                try:
                    return handler(event, context)
                finally:
                    # metrics are disabled locally, but Powertools keeps buffering them and prints
                    # EMF after 100: drop them with each invocation, as a new Lambda invoke would
                    observability.metrics.clear_metrics()

        return run

    def close(self) -> None:
        self._stack.close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    # --- the public API, as API Gateway would call track ----------------------------------------

    def invoke_http(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        source_ip: str | None = None,
    ) -> dict[str, Any]:
        """Call the route's function with an HTTP API v2 event; returns its response (404 for no route,
        403 for an admin route without the local dev credential, as IAM authorization would).
        ``source_ip``: the caller's address; without one each call comes from a client of its own
        (its own /24 network, as the budgets of sign-up forms see sources); the HTTP server passes
        the real peer's address."""
        if source_ip is None:
            n = next(self._clients)
            source_ip = f"198.{18 + (n >> 8) % 2}.{n % 256}.1"  # RFC 2544 benchmarking range
        found = resolve(method.upper(), path)
        if found is None:
            return {
                "statusCode": 404,
                "headers": {"content-type": "application/json"},
                "body": '{"message":"Not Found"}',
            }
        route, params = found
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        authorizer: dict[str, Any] | None = None
        if route.auth == "iam":
            given = lower.pop("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.admin_key}".encode()):
                return dict(FORBIDDEN)
            authorizer = {
                "iam": {"accountId": ACCOUNT, "userArn": f"arn:aws:iam::{ACCOUNT}:user/local-admin"}
            }
        raw = body.encode() if isinstance(body, str) else (body or b"")
        try:
            text_body: str | None = raw.decode("utf-8") if raw else None
            is_b64 = False
        except UnicodeDecodeError:
            text_body, is_b64 = base64.b64encode(raw).decode(), True
        now = time.time()
        event = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": query,
            "cookies": [c.strip() for c in lower.pop("cookie", "").split(";") if c.strip()] or None,
            "headers": lower,
            "queryStringParameters": dict(parse_qsl(query, keep_blank_values=True)) or None,
            "pathParameters": params or None,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "local",
                "domainName": "127.0.0.1",
                "http": {
                    "method": method.upper(),
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": lower.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route.key,
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
                **({"authorizer": authorizer} if authorizer else {}),
            },
            "body": text_body,
            "isBase64Encoded": is_b64,
        }
        event = {k: v for k, v in event.items() if v is not None}
        function = resource_name(route.function)
        result: dict[str, Any] = self.handlers[function](event, lambda_context(function))
        return result

    # --- operator views ---------------------------------------------------------------------------

    def _running(self) -> int:
        """Running executions, read from moto's backend: ListExecutions per state machine and settle
        round costs more than the executions' own work once there are a few hundred of them."""
        from moto.stepfunctions.responses import get_backend

        backend = get_backend(ACCOUNT, REGION)
        return sum(1 for execution in sfn_versions.all_executions(backend) if execution.status == "RUNNING")

    def settle(self, timeout: float = 30.0) -> None:
        """Run the system until it is quiet: stream drained, every running execution parked on the clock."""
        self._until_quiet(
            lambda: self.pump.drain() + self.ses_simulator.drain(), timeout, "the local system did not settle"
        )

    def drain_bulk(self, timeout: float = 120.0) -> None:
        """Run the bulk queue (broadcasts, segment evaluations) and the events stream until both are
        idle and every running execution is parked on the clock."""
        self._until_quiet(
            lambda: self.bulk_pump.drain() + self.pump.drain(), timeout, "the bulk queue did not drain"
        )

    def _until_quiet(self, drain: Callable[[], int], timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        quiet_rounds = 0
        while time.monotonic() < deadline:
            moved = drain()
            if moved == 0 and self.pump.pending() == 0 and self._running() == self.clock.parked:
                quiet_rounds += 1
                if quiet_rounds >= 2:
                    return
            else:
                quiet_rounds = 0
            time.sleep(0.02)
        raise TimeoutError(failure)

    def advance(self, seconds: float) -> float:
        """Advance virtual time; due Wait states fire in order. Returns the new virtual time."""
        self.settle()
        return self.clock.advance(seconds, settle=self.settle)

    def outbox(self) -> list[dict[str, Any]]:
        """Every email (SES) and SMS (SNS) sent, oldest first."""
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends

        items: list[dict[str, Any]] = []
        for sent in ses_backends[ACCOUNT][REGION].sent_messages:
            raw = getattr(sent, "raw_data", None)
            if raw is None:
                continue
            msg = email.message_from_string(raw, policy=default_policy)
            text = msg.get_body(("plain",))
            html = msg.get_body(("html",))
            date = msg["Date"]
            items.append(
                {
                    "channel": "email",
                    "id": sent.id,
                    "to": list(dict.fromkeys(sent.destinations)),  # moto lists a To twice
                    "from": str(msg["From"]),
                    "subject": str(msg["Subject"]),
                    "text": text.get_content() if text else None,
                    "html": html.get_content() if html else None,
                    "headers": {k: str(v) for k, v in msg.items()},
                    "time": parsedate_to_datetime(str(date)).isoformat() if date else None,
                }
            )
        # moto keeps no time for an SMS: the send recorded it (virtual time) with SNS's message id
        sms_sent_at = {
            str(m["sns_message_id"]): str(m["sent_at"])
            for m in self._scan(MESSAGES.name)
            if m.get("sns_message_id") and m.get("sent_at")
        }
        for sms_id, sms in sns_backends[ACCOUNT][REGION].sms_messages.items():
            phone, text_msg = sms[0], sms[1]
            at = sms_sent_at.get(sms_id)
            items.append(
                {
                    "channel": "sms",
                    "id": sms_id,
                    "to": [phone],
                    "text": text_msg,
                    "time": datetime.fromisoformat(at.replace("Z", "+00:00")).isoformat() if at else None,
                }
            )
        return items

    def executions(self) -> list[dict[str, Any]]:
        """Journey executions with their status and current (or last) state."""
        sfn = self.client("stepfunctions")
        out = []
        for journey_id, arn in self.state_machines.items():
            for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
                events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                entered = [
                    e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
                ]
                state = entered[-1] if entered else None
                out.append(
                    {
                        "journey": journey_id,
                        "name": execution["name"],
                        "status": execution["status"],
                        "state": state,
                        "started": execution["startDate"].isoformat(),
                        "arn": execution["executionArn"],
                        "version": execution.get("stateMachineVersionArn"),
                    }
                )
        return out

    def history(self, execution_arn: str) -> Iterator[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        yield from sfn.get_execution_history(executionArn=execution_arn)["events"]

    def dead_letters(self, consumer: str) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        resp = sqs.receive_message(
            QueueUrl=self.dlq_urls[consumer], MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return [json.loads(m["Body"]) for m in resp.get("Messages", [])]

    def _scan(self, logical: str) -> Iterator[dict[str, Any]]:
        """Every item of a table, plain Python values (a local tool: a full scan is fine here)."""
        from leadflow.platform.dynamo import deserialize

        pages = self.client("dynamodb").get_paginator("scan").paginate(TableName=resource_name(logical))
        for page in pages:
            for item in page.get("Items", []):
                yield deserialize(item)

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact profile (keys left out), oldest first."""
        from leadflow.platform.tables import CONTACTS, keys

        profiles = [
            {k: v for k, v in item.items() if k not in ("pk", "sk")}
            for item in self._scan(CONTACTS.name)
            if item.get("sk") == keys.PROFILE
        ]
        return sorted(profiles, key=lambda c: (str(c.get("created_at", "")), str(c.get("contact_id", ""))))

    def figures(self) -> dict[str, Any]:
        """The dashboard figures: what the CloudWatch dashboard shows in AWS, counted from the data."""
        from collections import Counter

        from leadflow.platform.tables import CONTACTS, keys

        events = Counter(str(item.get("type")) for item in self._scan(EVENTS.name))
        contacts = sum(1 for item in self._scan(CONTACTS.name) if item.get("sk") == keys.PROFILE)
        sfn = self.client("stepfunctions")
        executions: dict[str, dict[str, int]] = {}
        for journey_id, arn in self.state_machines.items():
            statuses: Counter[str] = Counter()
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                statuses.update(e["status"] for e in page["executions"])
            executions[journey_id] = dict(sorted(statuses.items()))
        by_status: Counter[str] = Counter()
        by_reason: dict[str, Counter[str]] = {}
        for message in self._scan(MESSAGES.name):
            status = str(message.get("status"))
            by_status[status] += 1
            if message.get("reason") is not None:
                by_reason.setdefault(status, Counter())[str(message["reason"])] += 1
        sqs = self.client("sqs")
        depths: dict[str, int] = {}
        for consumer, url in self.dlq_urls.items():
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[consumer] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        return {
            "now": self.clock.now_datetime().isoformat(),
            "events": {"total": sum(events.values()), "by_type": dict(sorted(events.items()))},
            "contacts": contacts,
            "executions": executions,
            "messages": {
                "total": sum(by_status.values()),
                "by_status": dict(sorted(by_status.items())),
                "by_reason": {s: dict(sorted(r.items())) for s, r in sorted(by_reason.items())},
            },
            "consumers": {
                c.name.removeprefix(f"{PREFIX}-"): {
                    "function": c.name,
                    "delivered": c.delivered,
                    "dead_lettered": c.dead_lettered,
                    "pending": len(c.buffer),
                }
                for c in self.pump.consumers
            },
            "dead_letter_queues": depths,
            "refusals": dict(sorted(protection.refusals.items())),
        }

    # --- provider feedback: what SES event publishing and two-way SMS deliver through SNS ---------

    def ses_event(
        self,
        sent: Mapping[str, Any],
        event_type: str,
        *,
        bounce_type: str = "Permanent",
        at: str | None = None,
    ) -> dict[str, Any]:
        """The SES event publishing document (``Bounce``, ``Complaint``, ``Delivery``, ``Reject``)
        for an email of the outbox, as SES publishes it to the feedback topic."""
        when = at or self.clock.now_datetime().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        recipients = list(sent["to"])
        tags = {"ses:configuration-set": [resource_name("email")]}
        leadflow_id = sent.get("headers", {}).get("X-Leadflow-Message-Id")
        if leadflow_id:
            tags["leadflow_message_id"] = [leadflow_id]
        document: dict[str, Any] = {
            "eventType": event_type,
            "mail": {
                "timestamp": sent.get("time") or when,
                "source": SENDER,
                "sendingAccountId": ACCOUNT,
                "messageId": sent["id"],
                "destination": recipients,
                "headersTruncated": False,
                "tags": tags,
            },
        }
        if event_type == "Bounce":
            document["bounce"] = {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {"emailAddress": r, "action": "failed", "status": "5.1.1"} for r in recipients
                ],
                "timestamp": when,
                "feedbackId": f"feedback-{uuid.uuid4()}",
            }
        elif event_type == "Complaint":
            document["complaint"] = {
                "complainedRecipients": [{"emailAddress": r} for r in recipients],
                "timestamp": when,
                "feedbackId": f"feedback-{uuid.uuid4()}",
                "complaintFeedbackType": "abuse",
            }
        elif event_type == "Delivery":
            document["delivery"] = {
                "timestamp": when,
                "recipients": recipients,
                "processingTimeMillis": 120,
                "smtpResponse": "250 ok",
            }
        elif event_type == "Reject":
            document["reject"] = {"reason": "Bad content"}
        return document

    def deliver_feedback(
        self,
        message: Mapping[str, Any] | str,
        *,
        sns_message_id: str | None = None,
        timestamp: str | None = None,
    ) -> Any:
        """Invoke the feedback function with an SNS event carrying ``message`` (as the SES feedback
        or the inbound SMS topic delivers it); the same ``sns_message_id`` and ``timestamp`` (the
        publish time, default now) make a redelivery."""
        body = message if isinstance(message, str) else json.dumps(message)
        name = resource_name("feedback")
        record = {
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{resource_name('feedback')}:sub",
            "Sns": {
                "Type": "Notification",
                "MessageId": sns_message_id or str(uuid.uuid4()),
                "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{resource_name('feedback')}",
                "Subject": None,
                "Message": body,
                "Timestamp": timestamp
                or self.clock.now_datetime().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "MessageAttributes": {},
            },
        }
        return self.handlers[name]({"Records": [record]}, lambda_context(name))

    def sms_reply(
        self, from_number: str, body: str, *, inbound_id: str | None = None, timestamp: str | None = None
    ) -> Any:
        """A two-way SMS reply (e.g. ``STOP``) from ``from_number``, as End User Messaging publishes it."""
        return self.deliver_feedback(
            timestamp=timestamp,
            message={
                "originationNumber": from_number,
                "destinationNumber": "+18005550100",
                "messageKeyword": "KEYWORD_" + ACCOUNT,
                "messageBody": body,
                "inboundMessageId": inbound_id or str(uuid.uuid4()),
                "previousPublishedMessageId": None,
            },
        )


def version_description(journey_id: str, definition: str) -> str:
    """A version's description: the journey and the sha256 of its definition (as the stack's)."""
    import hashlib

    return f"{journey_id} sha256:{hashlib.sha256(definition.encode()).hexdigest()}"


def form_body(**fields: str) -> str:
    return urlencode(fields)
