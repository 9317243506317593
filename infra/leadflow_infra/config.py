"""Typed stage configuration, read from ``cdk.json`` context: ``stage_defaults`` merged with
``stages.<stage>`` (the stage's values win).

A missing or invalid value stops synth with a message naming the stage and the field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from leadflow.kernel.settings import FormConfig

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
DOMAIN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"


class StageConfigError(ValueError):
    """The stage configuration in cdk.json is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomDomain(_Strict):
    """A custom domain for the public tracking API (links in emails use it)."""

    domain_name: str = Field(pattern=DOMAIN, description="e.g. t.example.com")
    certificate_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
        description="ACM certificate for domain_name, in the stack's region.",
    )


class SmsConfig(_Strict):
    """SMS through SNS: who the message comes from and what it may cost."""

    sender_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]{1,11}$",
        description="Alphanumeric sender id (with at least one letter) where countries allow one; null for none.",
    )
    origination_number: str | None = Field(
        default=None,
        pattern=r"^\+[1-9]\d{6,14}$",
        description="E.164 origination number; null for the account's pool.",
    )
    message_type: str = Field(pattern=r"^(Promotional|Transactional)$")

    @field_validator("sender_id")
    @classmethod
    def _has_a_letter(cls, value: str | None) -> str | None:
        if value is not None and value.isdigit():
            raise ValueError("must contain at least one letter")
        return value


class AlarmThresholds(_Strict):
    """Where the alarms fire. SES reviews an account at 5% bounces / 0.1% complaints."""

    ses_bounce_rate: float = Field(gt=0, lt=0.1)
    ses_complaint_rate: float = Field(gt=0, lt=0.005)
    stream_iterator_age_seconds: int = Field(ge=60, le=86_400)


class StageConfig(_Strict):
    sender_email: str = Field(pattern=EMAIL)
    sender_name: str = Field(min_length=1, max_length=100)
    unsubscribe_mailto: str = Field(pattern=EMAIL)
    ses_identity_domain: str = Field(pattern=DOMAIN)
    event_retention_days: int = Field(ge=1, le=3650)
    log_retention_days: int = Field(ge=1, le=3653)
    retain_data: bool
    allowed_origins: list[str] = Field(min_length=1)
    throttling_rate_limit: int = Field(ge=1, le=10_000)
    throttling_burst_limit: int = Field(ge=1, le=5_000)
    alarm_email: str = Field(pattern=EMAIL)
    alarms: AlarmThresholds
    custom_domain: CustomDomain | None = None  # CDK context drops JSON nulls: absent means none
    sms: SmsConfig
    signing_key_rotation_days: int = Field(ge=1, le=365)
    report_goals: list[str] = Field(min_length=1, description="Conversion event types reports count.")
    forms: dict[str, FormConfig] = Field(min_length=1)
    broadcast_send_rate: float = Field(
        gt=0,
        le=10_000,
        description="Emails per second broadcasts may send: the SES account's maximum send rate.",
    )
    public_event_types: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list,
        description="Browser event types public POST /events accepts besides identify (e.g. video_played); "
        "every other type must come from a server through POST /admin/events.",
    )
    snap_start: bool = Field(
        default=True,
        description="Lambda SnapStart for every function: a cold start restores the function initialized "
        "at deploy instead of importing it. Costs a snapshot cache per function (about 1.95 USD a month "
        "per 512 MB in us-east-1) and a restore fee per cold start; false starts every environment by "
        "importing (a cold start 2-4x an `import boto3`).",
    )

    @model_validator(mode="after")
    def _origins_are_https(self) -> StageConfig:
        for origin in self.allowed_origins:
            if origin == "*" or not origin.startswith("https://") or origin.count("/") != 2:
                raise ValueError(
                    f"allowed_origins: {origin!r} must be an https origin like https://www.example.com"
                )
        return self


def load_stage_config(context: Any, stage: str, defaults: Any = None) -> StageConfig:
    stages = context if isinstance(context, dict) else {}
    if stage not in stages:
        known = ", ".join(sorted(stages)) or "none"
        raise StageConfigError(f"cdk.json has no stage {stage!r} under context.stages (known: {known})")
    values = {**(defaults if isinstance(defaults, dict) else {}), **stages[stage]}
    try:
        return StageConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(stage)'}: {err['msg']}" for err in exc.errors()
        )
        raise StageConfigError(f"invalid configuration for stage {stage!r}: {problems}") from exc
