"""Operations: one alarm topic, the alarms that say something is wrong, one dashboard that says what.

Concise CDK instead of a construct library: every alarm here maps to a runbook line in the README
("Operations"), and the thresholds come from the stage config."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from leadflow.kernel.observability import NAMESPACE, SERVICE

from .config import AlarmThresholds

FIVE_MINUTES = Duration.minutes(5)

APPLICATION_METRICS = {
    "Tracking": ("EventsRecorded", "FormsSubmitted", "Unsubscribes", "RejectedRequests", "InvalidTokens"),
    "Journeys": ("JourneysStarted", "JourneyAlreadyEntered", "ScorePointsApplied", "RejectedStreamRecords"),
    "Messages": (
        "EmailsSent",
        "SendsSkipped",
        "SendsRejected",
        "SendFailures",
        "SendThrottled",
        "DuplicateSendsPrevented",
    ),
}
"""Powertools (EMF) metrics the functions emit, graphed by area."""


def app_metric(name: str) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic="Sum",
        period=FIVE_MINUTES,
    )


class Monitoring(Construct):
    """Alarms (to an encrypted SNS topic with the ops email subscribed) and the stage's dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        alarm_email: str,
        thresholds: AlarmThresholds,
        topic_key: kms.IKey,
        functions: Mapping[str, lambda_.Function],
        stream_consumers: Mapping[str, tuple[lambda_.Function, sqs.IQueue]],
        state_machines: Mapping[str, sfn.StateMachine],
        api: apigw.HttpApi,
        dead_letter_queues: Mapping[str, sqs.IQueue],
    ):
        super().__init__(scope, construct_id)
        self._prefix = prefix
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{prefix} alarms", master_key=topic_key, enforce_ssl=True
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []

        for name, fn in functions.items():
            self._alarm(f"{name}-errors", fn.metric_errors(period=FIVE_MINUTES), 1, f"{name} raised errors")
            self._alarm(
                f"{name}-throttles", fn.metric_throttles(period=FIVE_MINUTES), 1, f"{name} was throttled"
            )
        for name, (fn, queue) in stream_consumers.items():
            self._alarm(
                f"{name}-dead-letters",
                queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                1,
                f"Stream records {name} gave up on are waiting in its failure queue: "
                "fix the cause, then `leadflow ops redrive --streams`.",
            )
            self._alarm(
                f"{name}-iterator-age",
                fn.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1)),
                thresholds.stream_iterator_age_seconds * 1000,
                f"{name} is behind the events stream (records expire after 24 h).",
                periods=5,
            )
        for name, queue in dead_letter_queues.items():
            self._alarm(
                f"{name}-dead-letters",
                queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                1,
                f"{name}: work that failed every retry is waiting in its dead-letter queue (README: Operate).",
            )
        for journey, machine in state_machines.items():
            # aborted executions are not counted: an operator (or an erasure) stopped them on purpose
            failed = cw.MathExpression(
                expression="failed + timedout",
                using_metrics={
                    "failed": machine.metric_failed(period=FIVE_MINUTES),
                    "timedout": machine.metric_timed_out(period=FIVE_MINUTES),
                },
                label=f"{journey} executions failed or timed out",
                period=FIVE_MINUTES,
            )
            self._alarm(
                f"journey-{journey}-failures",
                failed,
                1,
                f"Journey {journey}: executions failed or timed out; "
                "fix the cause, then `leadflow ops redrive --executions`.",
            )
        self._alarm(
            "api-5xx",
            api.metric_server_error(period=FIVE_MINUTES),
            1,
            "The tracking API answered with 5xx.",
        )
        for alarm_name, metric_name, what in (
            (
                "sends-rejected",
                "SendsRejected",
                "SES refused messages for good (MessageRejected): they were not sent; reports show "
                "them as skipped with reason rejected_by_provider.",
            ),
            (
                "send-outcomes-not-recorded",
                "SendOutcomesNotRecorded",
                "A message went to the provider but its outcome could not be recorded after retries: "
                "it stays handing_over (in doubt) and is not sent again.",
            ),
        ):
            self._alarm(alarm_name, app_metric(metric_name), 1, what)
        for metric_name, threshold, what in (
            ("Reputation.BounceRate", thresholds.ses_bounce_rate, "bounce"),
            ("Reputation.ComplaintRate", thresholds.ses_complaint_rate, "complaint"),
        ):
            self._alarm(
                f"ses-{what}-rate",
                cw.Metric(
                    namespace="AWS/SES",
                    metric_name=metric_name,
                    statistic="Maximum",
                    period=Duration.hours(1),
                ),
                threshold,
                f"SES {what} rate is approaching the level at which AWS reviews or pauses sending.",
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=prefix)
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24, height=4)
        )
        self.dashboard.add_widgets(
            *(
                cw.GraphWidget(title=area, left=[app_metric(n) for n in names], width=8)
                for area, names in APPLICATION_METRICS.items()
            )
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Public requests refused, by reason (honeypot, budgets, server event types...)",
                left=[
                    cw.MathExpression(
                        expression=f"SEARCH('{{{NAMESPACE},reason,service}} MetricName=\"PublicRefusals\"', 'Sum', 300)",
                        label="",
                        period=FIVE_MINUTES,
                    )
                ],
                width=24,
            )
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="API requests and errors",
                left=[api.metric_count(period=FIVE_MINUTES)],
                right=[
                    api.metric_client_error(period=FIVE_MINUTES),
                    api.metric_server_error(period=FIVE_MINUTES),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="API latency (p50, p99)",
                left=[
                    api.metric_latency(statistic="p50", period=FIVE_MINUTES),
                    api.metric_latency(statistic="p99", period=FIVE_MINUTES),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Journeys: started / succeeded / failed",
                left=[m.metric_started(period=FIVE_MINUTES) for m in state_machines.values()],
                right=[m.metric_succeeded(period=FIVE_MINUTES) for m in state_machines.values()]
                + [m.metric_failed(period=FIVE_MINUTES) for m in state_machines.values()],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="SES: sent, delivered, bounced, complained, rejected",
                left=[
                    cw.Metric(namespace="AWS/SES", metric_name=name, statistic="Sum", period=FIVE_MINUTES)
                    for name in ("Send", "Delivery", "Bounce", "Complaint", "Reject")
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="SES reputation (bounce and complaint rate)",
                left=[
                    cw.Metric(
                        namespace="AWS/SES", metric_name=name, statistic="Maximum", period=Duration.hours(1)
                    )
                    for name in ("Reputation.BounceRate", "Reputation.ComplaintRate")
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(value=thresholds.ses_bounce_rate, label="bounce alarm"),
                    cw.HorizontalAnnotation(value=thresholds.ses_complaint_rate, label="complaint alarm"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Stream iterator age (ms)",
                left=[
                    fn.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1))
                    for fn, _ in stream_consumers.values()
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Failure queues (DLQ depth)",
                left=[
                    queue.metric_approximate_number_of_messages_visible(statistic="Maximum")
                    for _, queue in stream_consumers.values()
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Skipped sends by reason",
                left=[
                    cw.MathExpression(
                        expression=f"SEARCH('{{{NAMESPACE},reason,service}} MetricName=\"SendsSkippedByReason\"', "
                        "'Sum', 300)",
                        label="",
                        period=FIVE_MINUTES,
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Lambda errors and throttles",
                left=[fn.metric_errors(period=FIVE_MINUTES) for fn in functions.values()],
                right=[fn.metric_throttles(period=FIVE_MINUTES) for fn in functions.values()],
                width=8,
            ),
        )

    def _alarm(
        self, name: str, metric: cw.IMetric, threshold: float, description: str, periods: int = 1
    ) -> None:
        alarm = cw.Alarm(
            self,
            name,
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
