"""The template archive: every template version ever deployed, content-addressed, never pruned.

At synth time every template of ``templates/`` is staged as one JSON document per version
(``leadflow.messaging.template_versions``: ``templates/<name>/<version>.json``) and a
``BucketDeployment`` copies them into a private, encrypted, SSL-only bucket without pruning, so
the versions of earlier deploys stay. Running executions name the versions they started with;
``send`` reads a version that is not its layer's from here (``grant_read``: ``send`` only).
The journeys' state machines depend on the deployment: a definition that names a new version goes
live only after that version is in the archive.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

from aws_cdk import RemovalPolicy, Stack, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from leadflow.messaging.template_versions import ARCHIVE_PREFIX, stage_archive

from .constructs import acknowledge, nag_env


class TemplateArchive(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, templates_dir: Path) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,  # keys are content hashes: an object never changes
            removal_policy=RemovalPolicy.RETAIN,  # running executions may still need any version
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Content-addressed template versions, written by the deploy and read by the send "
            "function only; no access worth a server access log.",
        )
        stage = Stage.of(self)
        assert stage is not None
        staged = Path(stage.outdir) / f"template-archive.{construct_id}"
        shutil.rmtree(staged, ignore_errors=True)
        self.versions = stage_archive(templates_dir, staged)
        """``{template: version}`` of this deploy."""
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Versions",
            sources=[s3deploy.Source.asset(str(staged))],
            destination_bucket=self.bucket,
            prune=False,  # the versions of earlier deploys stay
            retain_on_delete=True,
        )
        stack = Stack.of(self)
        region, account = nag_env(self)
        bucket_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        # CDK's deployment handler: one per stack, beside this construct
        handlers = [
            cast(Construct, c)
            for c in stack.node.children
            if c.node.id.startswith("Custom::CDKBucketDeployment")
        ]
        for handler in handlers:
            for rule, reason in (
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "CDK's BucketDeployment handler writes its logs with the basic execution role.",
                ),
                ("AwsSolutions-L1", "CDK's BucketDeployment handler: aws-cdk-lib chooses its runtime."),
                *(
                    (
                        f"AwsSolutions-IAM5[{finding}]",
                        "CDK's BucketDeployment handler copies this deploy's asset into the archive "
                        "bucket: object actions on the asset and on this bucket's objects only.",
                    )
                    for finding in (
                        "Action::s3:GetObject*",
                        "Action::s3:GetBucket*",
                        "Action::s3:List*",
                        "Action::s3:DeleteObject*",
                        "Action::s3:Abort*",
                        f"Resource::<{bucket_id}.Arn>/*",
                        f"Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}/*",
                    )
                ),
            ):
                acknowledge(handler, rule, reason)

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Read archived versions: ``s3:GetObject`` under ``templates/``, and ``s3:ListBucket`` so a
        version that is not there answers NoSuchKey (a template error), not AccessDenied."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject"],
            resource_arns=[self.bucket.arn_for_objects(f"{ARCHIVE_PREFIX}*")],
        )
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:ListBucket"], resource_arns=[self.bucket.bucket_arn]
        )
        if isinstance(grantee, Construct):
            bucket_id = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
            acknowledge(
                grantee,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{ARCHIVE_PREFIX}*]",
                "The '*' is the template versions' keys (content hashes): read-only, this bucket's "
                "archive only.",
            )
