"""Typed stage configuration, read from ``cdk.json`` context ``stages.<stage>``.

A missing or invalid value stops synth with a message naming the stage and the field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.settings import FormConfig

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class StageConfigError(ValueError):
    """The stage configuration in cdk.json is missing or invalid."""


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender_email: str = Field(pattern=EMAIL)
    sender_name: str = Field(min_length=1, max_length=100)
    unsubscribe_mailto: str = Field(pattern=EMAIL)
    ses_identity_domain: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
    )
    event_retention_days: int = Field(ge=1, le=3650)
    log_retention_days: int = Field(ge=1, le=3653)
    retain_data: bool
    allowed_origins: list[str] = Field(min_length=1)
    throttling_rate_limit: int = Field(ge=1, le=10_000)
    throttling_burst_limit: int = Field(ge=1, le=5_000)
    forms: dict[str, FormConfig] = Field(min_length=1)


def load_stage_config(context: Any, stage: str) -> StageConfig:
    stages = context if isinstance(context, dict) else {}
    if stage not in stages:
        known = ", ".join(sorted(stages)) or "none"
        raise StageConfigError(f"cdk.json has no stage {stage!r} under context.stages (known: {known})")
    try:
        return StageConfig.model_validate(stages[stage])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(stage)'}: {err['msg']}" for err in exc.errors()
        )
        raise StageConfigError(f"invalid configuration for stage {stage!r}: {problems}") from exc
