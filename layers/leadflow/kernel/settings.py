"""Configuration: one settings model, read from ``LEADFLOW_*`` environment variables and validated
at cold start. Every field is required: a missing or malformed value stops the function from
starting with a message naming the variable, instead of running on a silent default.

The model is a plain pydantic model fed from the environment (``Settings.from_environ``), as
pydantic-settings did before: variable names are matched without regard to case, structured
values (``LEADFLOW_FORMS``) are JSON, and a failure is a ``ValidationError`` whose locations are
the field names (``bulk_queue_url`` for ``LEADFLOW_BULK_QUEUE_URL``). pydantic-settings itself
cost every function ~15 ms of import (its sources pull in argparse, dotenv handling and more)
for one flat read of the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SignupBudget(BaseModel):
    """How many sign-ups that send email (double opt-in confirmations, forms a sending journey
    enters on) a form takes per hour from one source network (the IP truncated as stored: /24,
    /48) and to one recipient domain. Over budget the post is refused whole (or asks for the
    form's CAPTCHA): a form cannot be used to mail-bomb someone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_source_per_hour: int = Field(default=10, ge=1, le=100_000)
    per_recipient_domain_per_hour: int = Field(default=100, ge=1, le=1_000_000)


class CaptchaConfig(BaseModel):
    """Server-side CAPTCHA verification (siteverify) of a form; the secret lives in Secrets Manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["turnstile", "hcaptcha", "recaptcha"]
    site_key: str = Field(min_length=1, max_length=200, description="The public key the page's widget uses.")
    secret_id: str | None = Field(
        default=None,
        min_length=1,
        description="Secrets Manager id of the provider's secret key (the CDK app creates the secret "
        "and fills this in).",
    )
    when: Literal["always", "over_budget"] = Field(
        default="over_budget",
        description="Ask on every post, or only once the sign-up budget is spent.",
    )


class FormConfig(BaseModel):
    """A sign-up form the website posts to ``/forms/{form_id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thank_you_url: str = Field(description="Where a browser goes after a successful post.")
    error_url: str = Field(description="Where a browser goes back to when the post is invalid.")
    consent_required: bool = Field(description="The marketing-consent checkbox must be ticked.")
    consent_text: str = Field(
        min_length=10,
        max_length=2000,
        description="The consent wording the form shows; stored (with its version) in the consent log.",
    )
    double_opt_in: bool = Field(
        default=False,
        description="Consent given on this form stays pending until the contact clicks the link of "
        "the confirmation email (journeys/double-opt-in.yaml sends it).",
    )

    budget: SignupBudget = Field(default_factory=SignupBudget)
    min_fill_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Refuse posts sent sooner than this after the page rendered the form (the "
        "snippet's signed render stamp); 0: off.",
    )
    captcha: CaptchaConfig | None = Field(default=None, description="Off unless configured.")

    @field_validator("thank_you_url", "error_url")
    @classmethod
    def _absolute_or_root_relative(cls, value: str) -> str:
        if not (
            value.startswith(("https://", "http://"))
            or (value.startswith("/") and not value.startswith("//"))
        ):
            raise ValueError("must be an absolute http(s) URL or a path starting with a single '/'")
        return value


ENV_PREFIX = "LEADFLOW_"


class InContent:
    """A path in the settings' ``content_dir`` (what marketers write: journeys, templates...)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, settings: Settings, owner: type[Settings]) -> Path:
        return settings.content_dir / self.name


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    stage: str = Field(min_length=1, description="Deployment stage (local, dev, prod, ...).")
    contacts_table: str = Field(min_length=3)
    events_table: str = Field(min_length=3)
    messages_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    public_base_url: str = Field(description="Base URL of the public tracking API, no trailing slash.")
    signing_key_secret: str = Field(min_length=1, description="Secrets Manager id of the HMAC key.")
    sender_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    sender_name: str = Field(min_length=1)
    unsubscribe_mailto: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    ses_configuration_set: str = Field(min_length=1)
    content_dir: Path = Field(description="Folder holding journeys/ and templates/.")
    state_machine_arn_prefix: str = Field(
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:",
        description="ARN prefix of the journey state machines; the journey id completes it.",
    )
    journey_alias: str = Field(
        default="live",
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,79}$",
        description="Alias of each journey state machine that new executions start on.",
    )
    event_retention_days: int = Field(ge=1, le=3650)
    reports_table: str = Field(min_length=3, description="Reporting counters (the report consumer).")
    report_goals: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}(,[a-z][a-z0-9_]{0,63})*$",
        description="Conversion event types counted per journey and channel (comma-separated); "
        "the first is a journey report's default goal.",
    )
    sales_topic_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$",
        description="SNS topic that receives sales hand-offs (notify_sales steps).",
    )
    webhook_secrets_secret: str = Field(
        min_length=1, description="Secrets Manager id of the webhook signing keys (JSON name -> key)."
    )
    sms_sender_id: str = Field(
        pattern=r"^[A-Za-z0-9]{0,11}$", description="SNS SMS sender id; empty for none."
    )
    sms_origination_number: str = Field(
        pattern=r"^(\+[1-9]\d{6,14})?$", description="E.164 origination number; empty for the pool."
    )
    sms_type: Literal["Promotional", "Transactional"]
    forms: dict[str, FormConfig] = Field(min_length=1)
    bulk_queue_url: str = Field(
        pattern=r"^https?://", description="SQS queue of bulk jobs (broadcast pages, segment evaluations)."
    )
    event_bus_name: str = Field(
        pattern=r"^[A-Za-z0-9._/-]{1,256}$|^arn:aws",
        description="EventBridge bus that receives sales hand-offs.",
    )
    webhook_dead_letter_queue_url: str = Field(
        pattern=r"^https?://", description="SQS queue of webhook deliveries that failed every retry."
    )
    broadcast_send_rate: float = Field(
        gt=0, le=10000, description="Emails per second a broadcast may send, across all workers (SES limit)."
    )
    event_source_keys_secret: str = Field(
        min_length=1,
        description="Secrets Manager id of the signing keys of POST /events/signed (JSON name -> key).",
    )
    public_event_types: str = Field(
        pattern=r"^([a-z][a-z0-9_]{0,63}(,[a-z][a-z0-9_]{0,63})*)?$",
        description="Browser event types public POST /events accepts besides the snippet's own "
        "(identify), comma-separated; every other type must come from a server (POST /admin/events).",
    )
    template_archive_bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket of every deployed template version (leadflow.messaging.template_versions).",
    )

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// locally)")
        return value.rstrip("/")

    @classmethod
    def variables(cls) -> dict[str, str]:
        """The environment contract, declared once: each field's variable (``LEADFLOW_<FIELD>``).
        The stack builds every function's environment from it, and the local runtime its own
        (``environment``); ``from_environ`` reads it."""
        return {name: ENV_PREFIX + name.upper() for name in cls.model_fields}

    @classmethod
    def environment(cls, values: Mapping[str, str]) -> dict[str, str]:
        """The environment that carries ``values`` (field name -> the variable's text): a value for
        every field and for nothing else, or ``ValueError`` naming the variables missing or unknown."""
        variables = cls.variables()
        missing = [variables[name] for name in variables if name not in values]
        unknown = sorted(ENV_PREFIX + name.upper() for name in values if name not in variables)
        if missing or unknown:
            problems = [f"no value for {', '.join(missing)}"] if missing else []
            problems += [f"not a setting: {', '.join(unknown)}"] if unknown else []
            raise ValueError(f"the {ENV_PREFIX}* environment does not match Settings: {'; '.join(problems)}")
        return {variables[name]: values[name] for name in variables}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (the process environment by default): each field from its
        variable (``variables``, any case); raises ``pydantic.ValidationError`` naming the fields."""
        env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
        return cls.model_validate({name: env[var] for name, var in cls.variables().items() if var in env})

    @field_validator("forms", mode="before")
    @classmethod
    def _forms_json(cls, value: Any) -> Any:
        """The variable holds JSON (``{"form_id": {...}}``)."""
        if isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"must be a JSON object of form id -> form ({exc})") from exc
        return value

    journeys_dir: ClassVar = InContent("journeys")
    templates_dir: ClassVar = InContent("templates")
    leads_file: ClassVar = InContent("leads.yaml")
    """Scoring, fit, lifecycle, routing and custom attribute schema."""
    segments_dir: ClassVar = InContent("segments")

    @property
    def browser_event_types(self) -> frozenset[str]:
        """What public ``POST /events`` accepts: the snippet's own types and the stage's list."""
        return frozenset({"identify", *filter(None, self.public_event_types.split(","))})

    @property
    def goals(self) -> tuple[str, ...]:
        return tuple(self.report_goals.split(","))

    def state_machine_arn(self, journey_id: str) -> str:
        return f"{self.state_machine_arn_prefix}{journey_id}"

    def state_machine_alias_arn(self, journey_id: str) -> str:
        """The alias new executions start on: it points at the journey's newest published version,
        and an execution keeps the version it started on (``infra``: one version per deploy)."""
        return f"{self.state_machine_arn(journey_id)}:{self.journey_alias}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated once (at cold start)."""
    return Settings.from_environ()
