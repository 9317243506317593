"""One construct per concern: tables, a leadflow function, a stream consumer, the HTTP API,
journey state machines, email sending (monitoring lives in ``monitoring``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment as Ack
from aws_cdk import Duration, RemovalPolicy, Stack, Token, Validations
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from leadflow.journeys import Journey, compile_journey
from leadflow.platform.routes import ADMIN_ROUTES, ALL_ROUTES
from leadflow.platform.tables import TableSpec

from .config import CustomDomain
from .layer import ROOT


def acknowledge(construct: Construct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Ack(id=rule, reason=reason))


def nag_env(scope: Construct) -> tuple[str, str]:
    """Region and account as cdk-nag writes them in finding ids: the value when the stack's
    environment is concrete, the pseudo parameter (``<AWS::Region>``) when it is not."""
    stack = Stack.of(scope)
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    return region, account


def dead_letter_queue(scope: Construct, construct_id: str, what: str) -> sqs.Queue:
    """A queue where ``what`` (failed stream batches, bulk jobs, webhook deliveries...) waits for an
    operator: encrypted, TLS only, kept 14 days. It is a dead-letter queue itself (cdk-nag is told)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is the {what}' dead-letter queue.")
    return queue


class LeadflowTables(Construct):
    """Every table of ``leadflow.platform.tables``: on-demand, PITR, encrypted, stream, TTL and global
    secondary indexes (all attributes projected) per spec."""

    def __init__(
        self, scope: Construct, construct_id: str, *, specs: Sequence[TableSpec], prefix: str, retain: bool
    ):
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in specs:
            self.tables[spec.name] = dynamodb.Table(
                self,
                spec.name.capitalize(),
                table_name=f"{prefix}-{spec.name}",
                partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                stream=dynamodb.StreamViewType[spec.stream] if spec.stream else None,
                time_to_live_attribute=spec.ttl_attribute,
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            )
            if spec.indexes:
                logical_id = Stack.of(self).get_logical_id(self.tables[spec.name].node.default_child)  # type: ignore[arg-type]
                acknowledge(
                    Stack.of(self),
                    f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/index/*]",
                    f"Reads of the {spec.name} table include its own global secondary indexes "
                    f"({', '.join(i.name for i in spec.indexes)}): the '*' is an index of that one table.",
                )
            for index in spec.indexes:
                self.tables[spec.name].add_global_secondary_index(
                    index_name=index.name,
                    partition_key=dynamodb.Attribute(
                        name=index.partition_key, type=dynamodb.AttributeType.STRING
                    ),
                    sort_key=dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.ALL,
                )

    def __getitem__(self, name: str) -> dynamodb.Table:
        return self.tables[name]


class LeadflowFunction(Construct):
    """A thin handler from ``functions/<name>/``: Python 3.13 on arm64 with the shared layer.

    With ``snap_start``, Lambda initializes the function when a version is published and starts
    new execution environments from that snapshot: the imports, the validated content and the
    clients are in the snapshot, and a cold start runs only the after-restore hooks
    (``leadflow.kernel.snapshot``). Every invocation path must then target ``target`` — the
    ``live`` alias of the published version — because ``$LATEST`` never runs from a snapshot
    (``tests/infra/test_stack.py`` and the parity tier check each path). Old versions are deleted on
    deploy: a version's snapshot is billed while it exists."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        prefix: str,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
        log_retention: logs.RetentionDays,
        memory_mb: int = 512,
        timeout: Duration | None = None,
        snap_start: bool = False,
    ):
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{prefix}-{name}",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            code=lambda_.Code.from_asset(str(ROOT / "functions" / name), exclude=["__pycache__"]),
            handler="app.handler",
            layers=[layer],
            memory_size=memory_mb,
            timeout=timeout or Duration.seconds(30),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": "leadflow",
                "POWERTOOLS_METRICS_NAMESPACE": "Leadflow",
            },
        )
        self.target: lambda_.IFunction = self.function
        """What every invocation path calls: the ``live`` alias with SnapStart, else the function."""
        if snap_start:
            self.target = lambda_.Alias(
                self, "Live", alias_name="live", version=self.function.current_version
            )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "AWSLambdaBasicExecutionRole only allows writing this function's own CloudWatch logs.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5[Resource::*]",
            "Only X-Ray PutTraceSegments/PutTelemetryRecords (no resource-level permissions exist) use '*'.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.13: the shared layer's binary wheels are built for cp313 on arm64.",
        )


class StreamConsumer(Construct):
    """A function fed by a table's stream with the delivery guarantees leadflow relies on."""

    def __init__(
        self, scope: Construct, construct_id: str, *, function: LeadflowFunction, table: dynamodb.Table
    ):
        super().__init__(scope, construct_id)
        self.failures = dead_letter_queue(self, "Failures", "failed stream batches")
        function.target.add_event_source(
            sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                max_batching_window=Duration.seconds(1),
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                retry_attempts=10,
                max_record_age=Duration.hours(24),
                on_failure=sources.SqsDlq(self.failures),
                filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})],
            )
        )


class BulkJobs(Construct):
    """Bulk work over many contacts (broadcast pages, segment re-evaluation pages): an SQS queue
    feeding ``function`` with at most ``max_concurrency`` workers (the SES sending rate is shared
    by them), a job that fails ``max_receive_count`` times moves to ``dead_letters``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: LeadflowFunction,
        max_concurrency: int,
        max_receive_count: int = 5,
    ):
        super().__init__(scope, construct_id)
        self.dead_letters = dead_letter_queue(self, "DeadLetters", "bulk jobs")
        timeout = function.function.timeout or Duration.minutes(5)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS: at least six times the function timeout, so a job is not redelivered while it runs
            visibility_timeout=Duration.seconds(timeout.to_seconds() * 6),
            retention_period=Duration.days(14),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=max_receive_count
            ),
        )
        function.target.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=1,
                max_concurrency=max_concurrency,
                report_batch_item_failures=True,
            )
        )


class LeadflowApi(Construct):
    """The HTTP API: every route of ``leadflow.platform.routes`` to its function. Public routes take no
    credentials; admin routes require IAM (SigV4) authorization — ``admin_policy`` allows calling them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handlers: Mapping[str, lambda_.IFunction],
        allowed_origins: Sequence[str],
        rate_limit: int,
        burst_limit: int,
        log_retention: logs.RetentionDays,
        custom_domain: CustomDomain | None,
    ):
        super().__init__(scope, construct_id)
        self._domain_name = custom_domain.domain_name if custom_domain else None
        self.domain = (
            apigw.DomainName(
                self,
                "Domain",
                domain_name=custom_domain.domain_name,
                certificate=acm.Certificate.from_certificate_arn(
                    self, "Certificate", custom_domain.certificate_arn
                ),
                security_policy=apigw.SecurityPolicy.TLS_1_2,
            )
            if custom_domain
            else None
        )
        self.api = apigw.HttpApi(
            self,
            "Api",
            description="leadflow HTTP API: public tracking routes and IAM-authorized admin routes",
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=list(allowed_origins),
                allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST],
                allow_headers=["content-type"],
                max_age=Duration.hours(1),
            ),
            default_domain_mapping=apigw.DomainMappingOptions(domain_name=self.domain)
            if self.domain
            else None,
        )
        integrations_by_function = {
            name: integrations.HttpLambdaIntegration(name.capitalize(), fn) for name, fn in handlers.items()
        }
        iam_auth = authorizers.HttpIamAuthorizer()
        admin_arns: list[str] = []
        for route in ALL_ROUTES:
            [created] = self.api.add_routes(
                path=route.path,
                methods=[apigw.HttpMethod(route.method)],
                integration=integrations_by_function[route.function],
                authorizer=iam_auth if route.auth == "iam" else None,
            )
            if route.auth == "iam":
                admin_arns.append(
                    self.api.arn_for_execute_api(
                        route.method, re.sub(r"\{\w+\}", "*", route.path), "$default"
                    )
                )
            else:
                acknowledge(
                    created,
                    "AwsSolutions-APIG4",
                    "Public tracking routes (pixels, clicks, forms, unsubscribe) are called by browsers and "
                    "mail clients without credentials; requests are validated and tokens are HMAC-signed.",
                )
        self.admin_policy = iam.ManagedPolicy(
            self,
            "AdminAccess",
            description="Call leadflow's admin API routes (attach to integration and ops roles)",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=admin_arns)],
        )
        api_id = Stack.of(self).get_logical_id(self.api.node.default_child)  # type: ignore[arg-type]
        for route in ADMIN_ROUTES:
            if "{" in route.path:
                pattern = re.sub(r"\{\w+\}", "*", route.path)
                region, account = nag_env(self)
                acknowledge(
                    self.admin_policy,
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:{region}:"
                    f"{account}:<{api_id}>/$default/{route.method}{pattern}]",
                    f"{route.key}: the '*' is the route's path parameter (any contact) on this API's admin "
                    "route only.",
                )
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention)
        stage = self.api.default_stage
        assert stage is not None
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn,
            format='{"requestId":"$context.requestId","routeKey":"$context.routeKey","status":"$context.status",'
            '"latency":"$context.responseLatency","integrationError":"$context.integrationErrorMessage",'
            '"caller":"$context.identity.caller"}',
        )
        cfn_stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
            throttling_rate_limit=rate_limit, throttling_burst_limit=burst_limit
        )

    @property
    def url(self) -> str:
        """The public base URL of every tracking link: the custom domain when there is one."""
        if self._domain_name:
            return f"https://{self._domain_name}"
        url = self.api.url
        assert url is not None
        return url.rstrip("/")


class JourneyStateMachines(Construct):
    """One Standard state machine per journey file; the definition is the compiler's output verbatim.

    Every deploy publishes the definition as a state machine version and points the journey's alias
    (``alias``, e.g. ``live``) at it; new executions start on the alias, a running execution keeps
    the version it started on. The version's logical id carries the definition's hash, so a changed
    journey makes CloudFormation create a new version, and versions are retained (never deleted by
    a deploy): an execution waiting for weeks on an old version still has it."""

    SEND_FUNCTION_ARN = "SendFunctionArn"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        journeys: Sequence[Journey],
        prefix: str,
        send: lambda_.IFunction,
        log_retention: logs.RetentionDays,
        alias: str = "live",
        send_function: lambda_.Function | None = None,
    ):
        """``send``: what the tasks invoke (the function, or its SnapStart alias); ``send_function``:
        the function behind an alias, which the machines may invoke too — a retained version
        published before the alias existed names the function itself, and an execution waiting on
        it must still reach it."""
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        self.alias_name = alias
        self.machines: dict[str, sfn.StateMachine] = {}
        self.versions: dict[str, sfn.CfnStateMachineVersion] = {}
        self.aliases: dict[str, sfn.CfnStateMachineAlias] = {}
        for journey in journeys:
            definition = compile_journey(journey, templates_dir=ROOT / "templates")
            machine = sfn.StateMachine(
                self,
                f"Journey-{journey.id}",
                state_machine_name=f"{prefix}-{journey.id}",
                state_machine_type=sfn.StateMachineType.STANDARD,
                definition_body=sfn.DefinitionBody.from_string(definition),
                definition_substitutions={self.SEND_FUNCTION_ARN: send.function_arn},
                logs=sfn.LogOptions(
                    destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
                ),
                tracing_enabled=True,
            )
            acknowledge(
                machine,
                "AwsSolutions-IAM5[Resource::*]",
                "CloudWatch Logs delivery and X-Ray actions have no resource-level permissions.",
            )
            for function in [send] if send_function in (None, send) else [send, send_function]:
                function.grant_invoke(machine)
                if isinstance(function, lambda_.Function):
                    acknowledge(
                        machine,
                        f"AwsSolutions-IAM5[Resource::<{Stack.of(self).get_logical_id(function.node.default_child)}.Arn>:*]",  # type: ignore[arg-type]
                        "grant_invoke covers the send function's versions and aliases (':*') — that function only.",
                    )
            self.machines[journey.id] = machine
            self._publish(journey.id, machine, definition)

    def _publish(self, journey_id: str, machine: sfn.StateMachine, definition: str) -> None:
        """The definition as a new version (a new logical id per definition: CloudFormation creates
        it and keeps the old one, retained) and the alias routing every new execution to it."""
        digest = definition_hash(definition)
        version = sfn.CfnStateMachineVersion(
            self,
            f"Version-{journey_id}-{digest[:12]}",
            state_machine_arn=machine.state_machine_arn,
            state_machine_revision_id=machine.state_machine_revision_id,
            description=f"{journey_id} sha256:{digest}",
        )
        # UpdateReplacePolicy/DeletionPolicy Retain: executions running on it keep their version
        version.apply_removal_policy(RemovalPolicy.RETAIN)
        self.versions[journey_id] = version
        self.aliases[journey_id] = sfn.CfnStateMachineAlias(
            self,
            f"Alias-{journey_id}",
            name=self.alias_name,
            description=f"New executions of journey {journey_id}: its newest version",
            routing_configuration=[
                sfn.CfnStateMachineAlias.RoutingConfigurationVersionProperty(
                    state_machine_version_arn=version.attr_arn, weight=100
                )
            ],
        )

    def alias_arn(self, journey_id: str) -> str:
        return self.aliases[journey_id].attr_arn


def definition_hash(definition: str) -> str:
    """The journey definition's identity (sha256 of the compiled ASL): it names the version."""
    return hashlib.sha256(definition.encode()).hexdigest()


class EmailSending(Construct):
    """SES configuration set and domain identity, feedback (bounces, complaints) to an SNS topic."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, domain: str, topic_key: kms.IKey):
        super().__init__(scope, construct_id)
        self.feedback = sns.Topic(
            self, "Feedback", enforce_ssl=True, display_name="leadflow SES feedback", master_key=topic_key
        )
        self.configuration_set = ses.ConfigurationSet(self, "ConfigurationSet", configuration_set_name=name)
        self.configuration_set.add_event_destination(
            "Feedback",
            destination=ses.EventDestination.sns_topic(self.feedback),
            events=[
                ses.EmailSendingEvent.BOUNCE,
                ses.EmailSendingEvent.COMPLAINT,
                ses.EmailSendingEvent.DELIVERY,
                ses.EmailSendingEvent.REJECT,
            ],
        )
        self.identity = ses.EmailIdentity(
            self, "Identity", identity=ses.Identity.domain(domain), configuration_set=self.configuration_set
        )

    def grant_send(self, grantee: iam.IGrantable) -> None:
        stack = Stack.of(self)
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["ses:SendRawEmail", "ses:SendEmail"],
            resource_arns=[
                stack.format_arn(
                    service="ses", resource="identity", resource_name=self.identity.email_identity_name
                ),
                stack.format_arn(
                    service="ses",
                    resource="configuration-set",
                    resource_name=self.configuration_set.configuration_set_name,
                ),
            ],
        )


class TopicKey(Construct):
    """The customer-managed KMS key of leadflow's SNS topics (alarms, SES feedback).

    The services that publish to those topics — CloudWatch alarms and SES event destinations —
    get exactly the key actions publishing to an encrypted topic needs."""

    PUBLISHERS = ("cloudwatch.amazonaws.com", "ses.amazonaws.com")

    def __init__(self, scope: Construct, construct_id: str):
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="leadflow SNS topics (alarms, SES feedback)",
            enable_key_rotation=True,
        )
        for service in self.PUBLISHERS:
            self.key.grant(iam.ServicePrincipal(service), "kms:Decrypt", "kms:GenerateDataKey*")
