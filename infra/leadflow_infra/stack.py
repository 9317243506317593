"""The leadflow stack: everything one stage needs, wired with least-privilege grants."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack, triggers
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from leadflow.journeys import JourneyError, load_journeys
from leadflow.journeys.checks import check_content
from leadflow.kernel.settings import Settings
from leadflow.platform.tables import ALL_TABLES, CONTACTS, EVENTS, IDEMPOTENCY, MESSAGES, REPORTS

from .config import StageConfig
from .constructs import (
    BulkJobs,
    EmailSending,
    JourneyStateMachines,
    LeadflowApi,
    LeadflowFunction,
    LeadflowTables,
    StreamConsumer,
    TopicKey,
    acknowledge,
    dead_letter_queue,
    nag_env,
)
from .layer import ROOT, SharedLayer
from .monitoring import Monitoring
from .template_archive import TemplateArchive

JOURNEY_ALIAS = "live"
"""The alias of every journey state machine that new executions start on (its newest version)."""
JOURNEY_CHANGES_TIMEOUT = Duration.minutes(10)
"""How long the deploy's ``journey_changes`` may take (its Lambda timeout and the Trigger's wait):
it stops starting journeys 30 s before (``leadflow.ops.changes.TIME_MARGIN_MS``)."""
BULK_WORKERS = 4
"""Concurrent bulk workers (SQS event source maximum concurrency): a broadcast's sending rate is
shared by them (``leadflow.broadcasts.service``)."""


class LeadflowStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, stage: str, config: StageConfig, **kwargs: object
    ):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        prefix = f"leadflow-{stage}"
        retention = _retention(config.log_retention_days)
        tables = LeadflowTables(self, "Tables", specs=ALL_TABLES, prefix=prefix, retain=config.retain_data)
        signing_key = secretsmanager.Secret(
            self,
            "SigningKey",
            description="HMAC key ring of leadflow's open, click and unsubscribe tokens (rotated by rotate)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"previous": []}),
                generate_string_key="current",
                password_length=64,
                exclude_punctuation=True,
            ),
        )
        topic_key = TopicKey(self, "TopicKey").key
        webhook_keys = _shared_keys(
            self,
            "WebhookKeys",
            "Signing keys of journey webhooks (JSON name -> key); add keys per endpoint",
            "Webhook keys are shared with the receiving systems: rotate by adding a key under a new "
            "name, pointing the journey's webhook step at it, then removing the old one (README).",
        )
        sales_handoff = sns.Topic(
            self,
            "SalesHandoff",
            display_name=f"{prefix} sales hand-off",
            master_key=topic_key,
            enforce_ssl=True,
        )
        # hand-offs to sales also go to an EventBridge bus (CRM integrations subscribe with rules)
        lead_bus = events.EventBus(self, "LeadEvents", event_bus_name=f"{prefix}-leads")
        # journey webhooks (CRM deliveries) that failed every retry wait here for an operator
        webhook_dead_letters = dead_letter_queue(self, "WebhookDeadLetters", "webhook deliveries")
        email = EmailSending(
            self, "Email", name=prefix, domain=config.ses_identity_domain, topic_key=topic_key
        )
        layer = SharedLayer(self, "SharedLayer").layer

        event_source_keys = _shared_keys(
            self,
            "EventSourceKeys",
            "Keys of systems posting signed server events to POST /events/signed (JSON name -> key)",
            "Event source keys are shared with the sending systems: rotate by adding a key under a new "
            "source name, switching the sender, then removing the old one.",
        )
        # a form with a CAPTCHA gets a secret for the provider's secret key (put the provider's key
        # in it after the deploy); track reads it for siteverify
        captcha_secrets: list[secretsmanager.Secret] = []
        forms_setting: dict[str, object] = {}
        for form_id, form in config.forms.items():
            if form.captcha is not None and form.captcha.secret_id is None:
                secret = secretsmanager.Secret(
                    self,
                    f"Captcha{form_id.title().replace('-', '').replace('_', '')}",
                    description=f"The {form.captcha.provider} secret key of form {form_id} (siteverify)",
                )
                acknowledge(
                    secret,
                    "AwsSolutions-SMG4",
                    "The CAPTCHA provider issues this key; rotate it in the provider's console, then here.",
                )
                captcha_secrets.append(secret)
                form = form.model_copy(
                    update={"captcha": form.captcha.model_copy(update={"secret_id": secret.secret_arn})}
                )
            forms_setting[form_id] = form.model_dump()

        # The API URL is the public base of every tracking link; the functions get it through the
        # environment, so the API is created first with the track function added afterwards.
        values: dict[str, str] = {  # every Settings field: its variable's text (``_complete_environment``)
            "stage": stage,
            "contacts_table": tables[CONTACTS.name].table_name,
            "events_table": tables[EVENTS.name].table_name,
            "messages_table": tables[MESSAGES.name].table_name,
            "idempotency_table": tables[IDEMPOTENCY.name].table_name,
            "signing_key_secret": signing_key.secret_arn,
            "sender_email": config.sender_email,
            "sender_name": config.sender_name,
            "unsubscribe_mailto": config.unsubscribe_mailto,
            "ses_configuration_set": email.configuration_set.configuration_set_name,
            "content_dir": "/opt/content",
            "state_machine_arn_prefix": _states_arn(self, "stateMachine", f"{prefix}-"),
            "journey_alias": JOURNEY_ALIAS,
            "event_retention_days": str(config.event_retention_days),
            "reports_table": tables[REPORTS.name].table_name,
            "report_goals": ",".join(config.report_goals),
            "sales_topic_arn": sales_handoff.topic_arn,
            "webhook_secrets_secret": webhook_keys.secret_arn,
            "sms_sender_id": config.sms.sender_id or "",
            "sms_origination_number": config.sms.origination_number or "",
            "sms_type": config.sms.message_type,
            "forms": json.dumps(forms_setting),  # a CAPTCHA secret ARN is a string token
            "event_bus_name": lead_bus.event_bus_name,
            "webhook_dead_letter_queue_url": webhook_dead_letters.queue_url,
            "broadcast_send_rate": str(config.broadcast_send_rate),
            "public_event_types": ",".join(config.public_event_types),
            "event_source_keys_secret": event_source_keys.secret_arn,
        }

        # every function of the stage, in creation order: the environment is completed on all of
        # them at the end (``_complete_environment``), so none can miss a variable added later
        created: list[LeadflowFunction] = []

        def function(name: str, memory_mb: int = 512, timeout: int = 30) -> LeadflowFunction:
            created.append(
                LeadflowFunction(
                    self,
                    name.capitalize(),
                    name=name,
                    prefix=prefix,
                    layer=layer,
                    environment={},  # the stage's settings: ``_complete_environment``
                    log_retention=retention,
                    memory_mb=memory_mb,
                    timeout=Duration.seconds(timeout),
                    snap_start=config.snap_start,
                )
            )
            return created[-1]

        track = function("track", memory_mb=1024, timeout=10)
        admin = function("admin")
        api = LeadflowApi(
            self,
            "Api",
            handlers={"track": track.target, "admin": admin.target},
            allowed_origins=config.allowed_origins,
            rate_limit=config.throttling_rate_limit,
            burst_limit=config.throttling_burst_limit,
            log_retention=retention,
            custom_domain=config.custom_domain,
        )
        values["public_base_url"] = api.url
        trigger = function("trigger")
        score = function("score")
        send = function("send", timeout=60)
        rotate = function("rotate")
        # bulk jobs (broadcast pages, segment re-evaluations) run on SQS-fed workers
        bulk = function("bulk", memory_mb=1024, timeout=300)
        bulk_jobs = BulkJobs(self, "BulkJobs", function=bulk, max_concurrency=BULK_WORKERS)
        values["bulk_queue_url"] = bulk_jobs.queue.queue_url
        signing_key.add_rotation_schedule(
            "Rotation",
            rotation_lambda=rotate.target,
            automatically_after=Duration.days(config.signing_key_rotation_days),
        )

        problems = check_content(ROOT)  # the journeys, their templates and template variables
        if problems:
            raise JourneyError("; ".join(problems))
        journey_files = load_journeys(ROOT / "journeys")
        journeys = JourneyStateMachines(
            self,
            "Journeys",
            journeys=journey_files,
            prefix=prefix,
            send=send.target,
            send_function=send.function,
            log_retention=retention,
            alias=JOURNEY_ALIAS,
        )
        # every template version ever deployed: running executions render the versions they started with
        template_archive = TemplateArchive(self, "TemplateArchive", templates_dir=ROOT / "templates")
        values["template_archive_bucket"] = template_archive.bucket.bucket_name
        template_archive.grant_read(send.function)
        journeys.node.add_dependency(template_archive.deployment)  # versions archived before they are named
        consumers = {
            "trigger": StreamConsumer(self, "TriggerStream", function=trigger, table=tables[EVENTS.name]),
            "score": StreamConsumer(self, "ScoreStream", function=score, table=tables[EVENTS.name]),
        }

        # least privilege, one function at a time
        tables[EVENTS.name].grant_write_data(track.function)
        tables[CONTACTS.name].grant_read_write_data(track.function)
        tables[IDEMPOTENCY.name].grant_write_data(track.function)
        signing_key.grant_read(track.function)  # + the forms' render stamps
        for secret in (*captcha_secrets, event_source_keys):
            secret.grant_read(track.function)

        tables[CONTACTS.name].grant_read_data(admin.function)
        tables[EVENTS.name].grant_read_data(admin.function)

        tables[MESSAGES.name].grant_read_write_data(trigger.function)
        tables[CONTACTS.name].grant_read_write_data(trigger.function)  # enrollments
        # entry conditions on event history; journey_entered is recorded with each entry
        tables[EVENTS.name].grant_read_write_data(trigger.function)
        # executions start on each journey's alias only: Step Functions authorizes a start on an
        # alias against the state machine's ARN, with the alias name as states:StateMachineQualifier
        for machine in journeys.machines.values():
            iam.Grant.add_to_principal(
                grantee=trigger.function,
                actions=["states:StartExecution"],
                resource_arns=[machine.state_machine_arn],
                conditions={"StringEquals": {"states:StateMachineQualifier": JOURNEY_ALIAS}},
            )
        # is an earlier entry's execution still running? (at most one active per contact and journey)
        self._grant_on_executions(trigger.function, "states:DescribeExecution", prefix, journeys.machines)
        # an erasure stops the contact's running executions
        self._grant_on_executions(admin.function, "states:StopExecution", prefix, journeys.machines)
        # wait_for: trigger answers a waiting task's token (SendTaskSuccess, or SendTaskFailure when
        # the contact exits); an exit stops an execution that sits in a Wait; the step function
        # answers its own token when the event came before the wait
        self._grant_task_response(trigger.function, prefix, journeys.machines)
        self._grant_task_response(send.function, prefix, journeys.machines)
        self._grant_on_executions(trigger.function, "states:StopExecution", prefix, journeys.machines)

        # the lead engine: profile lead state, segment memberships, derived events (score, stage,
        # segment changes), the visitor's earlier events when a visitor is identified
        tables[CONTACTS.name].grant_read_write_data(score.function)
        tables[IDEMPOTENCY.name].grant_read_write_data(score.function)
        tables[EVENTS.name].grant_read_write_data(score.function)

        # send runs every journey task: sends, decisions, contact updates, hand-offs, webhooks
        tables[CONTACTS.name].grant_read_write_data(send.function)
        tables[MESSAGES.name].grant_read_write_data(send.function)
        tables[EVENTS.name].grant_read_write_data(send.function)
        tables[IDEMPOTENCY.name].grant_read_write_data(send.function)
        signing_key.grant_read(send.function)
        webhook_keys.grant_read(send.function)
        sales_handoff.grant_publish(send.function)
        acknowledge(
            send.function,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Publishing to the KMS-encrypted sales hand-off topic needs GenerateDataKey* on the topic key "
            "(grant_publish scopes it to that key).",
        )
        email.grant_send(send.function)
        lead_bus.grant_put_events_to(send.function)  # hand-offs
        webhook_dead_letters.grant_send_messages(send.function)
        send.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="SmsToPhoneNumbersOnly",
                actions=["sns:Publish"],
                not_resources=["arn:aws:sns:*:*:*"],  # direct SMS only, never a topic
            )
        )

        # bulk: broadcast sends (the send path's reads and writes) and segment re-evaluation (a
        # parallel scan of the profiles, the lead engine's writes); continues its own jobs
        for spec in (CONTACTS, MESSAGES, EVENTS, IDEMPOTENCY):
            tables[spec.name].grant_read_write_data(bulk.function)
        signing_key.grant_read(bulk.function)
        email.grant_send(bulk.function)
        bulk_jobs.queue.grant_send_messages(bulk.function)
        bulk_jobs.queue.grant_send_messages(admin.function)  # starts broadcasts and re-evaluations
        events.Rule(
            self,
            "SegmentRefresh",
            description="Re-evaluate every segment daily: time windows and score decay move members "
            "without an event",
            schedule=events.Schedule.cron(minute="15", hour="3"),
            targets=[
                targets.SqsQueue(
                    bulk_jobs.queue,
                    # no segment_id: every segment
                    message=events.RuleTargetInput.from_object({"kind": "segment_scan_start"}),
                )
            ],
        )

        functions = {
            "track": track,
            "admin": admin,
            "trigger": trigger,
            "score": score,
            "send": send,
            "rotate": rotate,
            "bulk": bulk,
        }
        # --- provider feedback: SES events (bounces, complaints, ...) and inbound SMS (STOP) ----------
        feedback = function("feedback")
        inbound_sms = sns.Topic(
            self,
            "InboundSms",
            display_name=f"{prefix} inbound SMS",
            master_key=topic_key,
            enforce_ssl=True,
        )
        # AWS End User Messaging SMS publishes two-way replies; only on behalf of this account
        sms_voice = iam.ServicePrincipal(
            "sms-voice.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": self.account}}
        )
        inbound_sms.grant_publish(sms_voice)
        topic_key.grant(sms_voice, "kms:Decrypt", "kms:GenerateDataKey*")
        for topic in (email.feedback, inbound_sms):
            topic.add_subscription(sns_subscriptions.LambdaSubscription(feedback.target))
        if isinstance(feedback.target, lambda_.Alias):
            acknowledge(
                feedback.target,
                "CloudFormation-Validate::W3694",
                "SNS delivers to a Lambda alias ARN as to a function ARN: the SnapStart alias is what runs.",
            )
        tables[CONTACTS.name].grant_read_write_data(feedback.function)  # suppression, SMS consent
        tables[EVENTS.name].grant_write_data(feedback.function)
        tables[MESSAGES.name].grant_read_write_data(feedback.function)  # link + bounced_at etc.
        functions["feedback"] = feedback
        # admin: do-not-contact writes the profile and its event
        tables[CONTACTS.name].grant_write_data(admin.function)  # + contacts API, import, merge, segments
        tables[IDEMPOTENCY.name].grant_read_write_data(admin.function)  # sales feedback request ids
        # right of access and erasure: the contact's events and messages are read and deleted
        tables[EVENTS.name].grant_read_write_data(admin.function)
        tables[MESSAGES.name].grant_read_write_data(admin.function)
        CfnOutput(
            self,
            "InboundSmsTopicArn",
            value=inbound_sms.topic_arn,
            description="Set as the two-way SMS destination of your origination number (STOP opt-outs)",
        )

        # --- reporting: a stream consumer of its own (own failure queue), so counting never delays
        # or fails scoring and journey entry; admin reads the counters for /admin/reports/*
        report = function("report")
        consumers["report"] = StreamConsumer(self, "ReportStream", function=report, table=tables[EVENTS.name])
        tables[REPORTS.name].grant_read_write_data(report.function)
        tables[IDEMPOTENCY.name].grant_read_write_data(report.function)  # REPORT#<event id> markers
        # admin reads the reports; an erasure deletes the contact's per-contact reporting state
        tables[REPORTS.name].grant_read_write_data(admin.function)
        functions["report"] = report

        # --- cdk deploy carries out each journey's on_change (after every alias moved) ------------
        journey_changes = function("journey_changes", timeout=int(JOURNEY_CHANGES_TIMEOUT.to_seconds()))
        self._journey_changes_on_deploy(
            journey_changes,
            journeys,
            journey_files,
            contacts=tables[CONTACTS.name],
            events_table=tables[EVENTS.name],
        )
        functions["journey_changes"] = journey_changes

        _complete_environment(created, values)

        monitoring = Monitoring(
            self,
            "Monitoring",
            prefix=prefix,
            alarm_email=config.alarm_email,
            thresholds=config.alarms,
            topic_key=topic_key,
            functions={name: fn.function for name, fn in functions.items()},
            stream_consumers={
                name: (functions[name].function, consumer.failures) for name, consumer in consumers.items()
            },
            state_machines=journeys.machines,
            api=api.api,
            dead_letter_queues={
                "bulk-jobs": bulk_jobs.dead_letters,
                "webhooks": webhook_dead_letters,
            },
        )

        CfnOutput(self, "ApiUrl", value=api.url, description="Public tracking API base URL")
        CfnOutput(
            self,
            "AdminPolicyArn",
            value=api.admin_policy.managed_policy_arn,
            description="Attach to the IAM roles that may call the admin API (SigV4)",
        )
        redrive = self._redrive_policy(
            queues=[c.failures for c in consumers.values()],
            stream_arn=tables[EVENTS.name].table_stream_arn,
            consumers=[functions[name].function for name in consumers],
            machines=list(journeys.machines.values()),
        )
        CfnOutput(
            self,
            "OpsRedrivePolicyArn",
            value=redrive.managed_policy_arn,
            description="Attach to the operator role that runs `leadflow ops redrive`",
        )
        journey_ops = self._journey_versions_policy(
            machines=list(journeys.machines.values()),
            contacts=tables[CONTACTS.name],
            events_table=tables[EVENTS.name],
        )
        CfnOutput(
            self,
            "OpsJourneyVersionsPolicyArn",
            value=journey_ops.managed_policy_arn,
            description="Attach to the role that runs `make deploy` (journeys apply-changes) and "
            "`leadflow journeys versions`",
        )
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "SalesHandoffTopicArn",
            value=sales_handoff.topic_arn,
            description="Subscribe your CRM integration: one message per hand-off (dedupe on handoff_id)",
        )
        CfnOutput(self, "WebhookKeysSecretArn", value=webhook_keys.secret_arn)
        CfnOutput(
            self,
            "LeadEventBusName",
            value=lead_bus.event_bus_name,
            description="EventBridge bus of sales hand-offs (source leadflow): add rules for your CRM",
        )
        CfnOutput(self, "WebhookDeadLettersQueue", value=webhook_dead_letters.queue_url)
        CfnOutput(self, "BulkJobsQueue", value=bulk_jobs.queue.queue_url)
        CfnOutput(self, "BulkJobsDeadLettersQueue", value=bulk_jobs.dead_letters.queue_url)
        CfnOutput(self, "DashboardName", value=prefix)
        if api.domain:
            CfnOutput(
                self,
                "ApiDomainTarget",
                value=api.domain.regional_domain_name,
                description=f"Point {api.url.removeprefix('https://')} at this (CNAME or alias)",
            )
        for name, table in tables.tables.items():
            CfnOutput(self, f"{name.capitalize()}Table", value=table.table_name)
        for name, consumer in consumers.items():
            CfnOutput(self, f"{name.capitalize()}FailuresQueue", value=consumer.failures.queue_url)
        for journey_id, machine in journeys.machines.items():
            CfnOutput(
                self, f"Journey{journey_id.replace('-', '').capitalize()}Arn", value=machine.state_machine_arn
            )
        CfnOutput(self, "SesConfigurationSet", value=email.configuration_set.configuration_set_name)
        for i, record in enumerate(email.identity.dkim_records):
            CfnOutput(
                self,
                f"DkimCname{i + 1}",
                value=f"{record.name} CNAME {record.value}",
                description="Add to DNS",
            )

    def _grant_task_response(
        self, function: lambda_.Function, prefix: str, machines: Mapping[str, sfn.StateMachine]
    ) -> None:
        """``grant_task_response`` by name: the journey state machines invoke ``send``, so a grant
        that referenced them from ``send``'s policy would be a dependency cycle."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
                resources=[
                    _states_arn(self, "stateMachine", f"{prefix}-{journey_id}") for journey_id in machines
                ],
            )
        )

    def _grant_on_executions(
        self, function: lambda_.Function, action: str, prefix: str, machines: Mapping[str, sfn.StateMachine]
    ) -> None:
        """``action`` on the executions of each journey state machine (execution names are not
        known in advance: the resource ends in ``:*``, one statement per journey)."""
        region, account = nag_env(self)
        for journey_id in machines:
            name = f"{prefix}-{journey_id}"
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=[action],
                    resources=[_states_arn(self, "execution", f"{name}:*")],
                )
            )
            acknowledge(
                function,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:{region}:{account}:execution:{name}:*]",
                f"{action} on the executions of journey {journey_id} only: the '*' is the execution name.",
            )

    def _journey_change_statements(
        self, *, machines: list[sfn.StateMachine], contacts: Any, events_table: Any
    ) -> list[iam.PolicyStatement]:
        """What ``leadflow.ops.changes.apply_on_change`` does: the versions and aliases read
        (authorized against the state machine's ARN), executions listed, described and, for
        ``on_change: exit``, stopped with their enrollment closed and ``journey_exited`` recorded;
        for ``on_change: move_to_new`` their history read (where they wait), the moved contact
        started on the alias and its enrollment handed over. The deploy's ``journey_changes``
        function and the operators' ``OpsJourneyVersions`` policy both get exactly these."""
        return [
            iam.PolicyStatement(
                actions=[
                    "states:ListStateMachineVersions",
                    "states:DescribeStateMachine",
                    "states:DescribeStateMachineAlias",
                    "states:ListExecutions",
                ],
                resources=[m.state_machine_arn for m in machines],
            ),
            iam.PolicyStatement(
                actions=[
                    "states:DescribeExecution",
                    "states:StopExecution",
                    "states:GetExecutionHistory",
                ],
                resources=_executions_of(self, machines),
            ),
            # on_change: move_to_new starts the moved contacts on the alias (authorized against
            # the state machine's ARN with the alias as qualifier) and hands them their enrollment
            iam.PolicyStatement(
                actions=["states:StartExecution"],
                resources=[m.state_machine_arn for m in machines],
                conditions={"StringEquals": {"states:StateMachineQualifier": JOURNEY_ALIAS}},
            ),
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem", "dynamodb:GetItem"], resources=[contacts.table_arn]
            ),
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[events_table.table_arn]),
        ]

    def _acknowledge_executions(self, construct: Construct, machines: list[sfn.StateMachine]) -> None:
        region, account = nag_env(self)
        for machine in machines:
            logical_id = self.get_logical_id(machine.node.default_child)  # type: ignore[arg-type]
            acknowledge(
                construct,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:{region}:{account}:"
                f"execution:<{logical_id}.Name>:*]",
                "The '*' is the execution name: this journey's executions only (on_change: exit).",
            )

    def _journey_versions_policy(
        self, *, machines: list[sfn.StateMachine], contacts: Any, events_table: Any
    ) -> iam.ManagedPolicy:
        """What ``leadflow journeys versions --stage`` reads and ``leadflow journeys apply-changes``
        (a re-run of the deploy's ``journey_changes``) does: the stack's outputs, then
        ``_journey_change_statements``."""
        policy = iam.ManagedPolicy(
            self,
            "OpsJourneyVersions",
            description="leadflow journeys versions / apply-changes against this stage",
            statements=[
                iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[self.stack_id]),
                *self._journey_change_statements(
                    machines=machines, contacts=contacts, events_table=events_table
                ),
            ],
        )
        self._acknowledge_executions(policy, machines)
        return policy

    def _journey_changes_on_deploy(
        self,
        function: LeadflowFunction,
        journeys: JourneyStateMachines,
        journey_files: list[Any],
        *,
        contacts: Any,
        events_table: Any,
    ) -> triggers.Trigger:
        """``cdk deploy`` carries out each journey's ``on_change``: a CDK Trigger invokes the
        ``journey_changes`` function once every journey's version and alias are in place. A Trigger
        re-runs only when its function's version changes, so the version is made to change with
        every journey's definition hash and ``on_change`` (a deploy that changes a journey, or only
        its ``on_change``, runs it; one that changes none need not, though a re-run is harmless)."""
        machines = list(journeys.machines.values())
        for statement in self._journey_change_statements(
            machines=machines, contacts=contacts, events_table=events_table
        ):
            function.function.add_to_role_policy(statement)
        self._acknowledge_executions(function.function, machines)
        return journey_changes_trigger(self, function.function, journeys, journey_files)

    def _redrive_policy(
        self,
        *,
        queues: list[sqs.IQueue],
        stream_arn: str | None,
        consumers: list[lambda_.IFunction],
        machines: list[sfn.StateMachine],
    ) -> iam.ManagedPolicy:
        """What ``leadflow ops redrive`` needs, on this stage's resources only."""
        assert stream_arn is not None
        executions = _executions_of(self, machines)
        policy = iam.ManagedPolicy(
            self,
            "OpsRedrive",
            description="Run `leadflow ops redrive` against this stage",
            statements=[
                iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[self.stack_id]),
                iam.PolicyStatement(
                    actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
                    resources=[q.queue_arn for q in queues],
                ),
                iam.PolicyStatement(
                    actions=["dynamodb:GetShardIterator", "dynamodb:GetRecords"],
                    resources=[stream_arn],
                ),
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[f.function_arn for f in consumers]
                ),
                iam.PolicyStatement(
                    actions=["states:ListExecutions"], resources=[m.state_machine_arn for m in machines]
                ),
                # DescribeExecution: an ABORTED execution stopped on purpose (leadflow.journeys.runtime.stops) is skipped
                iam.PolicyStatement(
                    actions=["states:RedriveExecution", "states:DescribeExecution"], resources=executions
                ),
            ],
        )
        region, account = nag_env(self)
        for machine in machines:
            logical_id = self.get_logical_id(machine.node.default_child)  # type: ignore[arg-type]
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:{region}:{account}:"
                f"execution:<{logical_id}.Name>:*]",
                "The '*' is the execution name: RedriveExecution on this journey's executions only.",
            )
        return policy


def journey_changes_trigger(
    stack: Stack, function: lambda_.Function, journeys: JourneyStateMachines, journey_files: list[Any]
) -> triggers.Trigger:
    """The CDK Trigger that invokes ``function`` (synchronously: the deploy waits for it) after
    every journey's version and alias. Its ``HandlerArn`` is the function's current version, which
    CDK re-creates when the function's code or configuration changes; the journeys' definition
    hashes and ``on_change`` are mixed into that version's hash, so a deploy that changes a journey
    (or only its ``on_change``) re-runs the trigger."""
    function.invalidate_version_based_on(
        json.dumps(
            {
                j.id: [journeys.versions[j.id].description, j.on_change_mode, j.move_to_new]
                for j in journey_files
            },
            sort_keys=True,
        )
    )
    trigger = triggers.Trigger(
        stack,
        "JourneyChangesOnDeploy",
        handler=function,
        invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
        timeout=JOURNEY_CHANGES_TIMEOUT,
        execute_after=[*journeys.versions.values(), *journeys.aliases.values()],
    )
    [provider] = [
        c for c in stack.node.children if c.node.id.startswith("AWSCDK.TriggerCustomResourceProvider")
    ]
    logical_id = stack.get_logical_id(function.node.default_child)  # type: ignore[arg-type]
    acknowledge(
        provider,  # type: ignore[arg-type]  # CDK's provider singleton, a Construct
        f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
        "CDK's Trigger provider may invoke the journey_changes function's versions only.",
    )
    return trigger


def _states_arn(stack: Stack, resource: str, name: str) -> str:
    """The ARN of a Step Functions ``stateMachine`` or ``execution`` of this stack's account and
    region (``name`` may end in ``:*``, any execution; or in ``-``, a prefix)."""
    return stack.format_arn(
        service="states", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


def _executions_of(stack: Stack, machines: list[sfn.StateMachine]) -> list[str]:
    """Every execution of each of ``machines``."""
    return [_states_arn(stack, "execution", f"{machine.state_machine_name}:*") for machine in machines]


def _shared_keys(
    scope: Construct, construct_id: str, description: str, rotation: str
) -> secretsmanager.Secret:
    """A secret of keys shared with other systems (JSON name -> key), a generated ``default`` key to
    start with. Such keys are rotated by hand, by name (``rotation`` says how; cdk-nag is told)."""
    secret = secretsmanager.Secret(
        scope,
        construct_id,
        description=description,
        generate_secret_string=secretsmanager.SecretStringGenerator(
            secret_string_template=json.dumps({}),
            generate_string_key="default",
            password_length=48,
            exclude_punctuation=True,
        ),
    )
    acknowledge(secret, "AwsSolutions-SMG4", rotation)
    return secret


def _complete_environment(functions: list[LeadflowFunction], values: Mapping[str, str]) -> None:
    """Give every function the whole stage environment, built from ``Settings``'s own declaration
    of its variables (``Settings.environment``: a field without a value here stops the synth, naming
    the variable). Some values exist only after functions were created (the API URL needs the track
    and admin functions, the bulk queue the bulk function); each function gets them here, not in a
    hand-kept list, so every function starts with a complete ``leadflow.kernel.settings.Settings``
    (tests/parity/test_environment.py)."""
    environment = Settings.environment(values)
    for fn in functions:
        for key, value in environment.items():
            fn.function.add_environment(key, value)


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def _retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention that keeps logs at least ``days``."""
    return next(value for limit, value in _RETENTION.items() if limit >= days)
