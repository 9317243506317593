"""The leadflow CDK app: ``cdk synth --context stage=dev`` (see the Makefile's synth/deploy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "layers")]

from aws_cdk import App, Environment, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402
from leadflow_infra.config import StageConfigError, load_stage_config  # noqa: E402
from leadflow_infra.stack import LeadflowStack  # noqa: E402

from leadflow.journeys import JourneyError  # noqa: E402


def build(app: App) -> LeadflowStack:
    stage = str(app.node.try_get_context("stage") or "dev")
    config = load_stage_config(
        app.node.try_get_context("stages"), stage, app.node.try_get_context("stage_defaults")
    )
    stack = LeadflowStack(
        app,
        f"leadflow-{stage}",
        stage=stage,
        config=config,
        env=Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
        ),
        description=f"leadflow marketing automation ({stage})",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


def main() -> int:
    app = App(outdir=os.environ.get("CDK_OUTDIR", str(ROOT / "cdk.out")))
    try:
        build(app)
    except (StageConfigError, JourneyError) as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
