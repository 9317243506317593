"""The lead model marketers configure in ``leads.yaml``: behaviour scoring (points per event and
property, caps, negative points, half-life decay), fit scoring from attributes, lifecycle stages
and the rules that move contacts between them, routing (assignment of an owner when a lead is
handed to sales) and the schema of custom contact attributes.

Conditions are the journey condition language (``leadflow.journeys.conditions``): the same
``{attribute: country, in: [DE, AT]}``, ``{score: {gte: 50}}``, ``{did: ..., within: ...}`` a
journey branch uses. Errors name the file, the field and the problem.

Cold start: the models are declared with ``defer_build`` (validators built at the first
validation, ``read_lead_file``); a Lambda function restores the model its layer's build validated
(``leadflow.precompiled``, through ``load_lead_model``) and never builds them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadflow.contacts.fields import BUILT_IN_FIELDS
from leadflow.journeys.conditions import EVENT_TYPE, NAME, Condition, Scalar, Span
from leadflow.kernel.errors import describe_validation

RULE_ID = r"^[a-z][a-z0-9_-]{0,63}$"
STAGE = r"^[a-z][a-z0-9_]{0,31}$"


class LeadModelError(ValueError):
    """``leads.yaml`` is invalid; the message names the file, the field and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# --- behaviour score ------------------------------------------------------------------------------


class ScoreRule(_Model):
    """Points for an event: ``event`` type, optional property equality filters (``where``) and a
    case-insensitive substring of the event's ``url`` property (``url_contains``, for page views).

    ``cap``: at most this many points (absolute) from this rule per contact — in total, or per
    ``cap_window`` when given (the window restarts with the first points after it ended)."""

    id: str = Field(pattern=RULE_ID)
    event: str = Field(pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    url_contains: str | None = Field(default=None, min_length=1, max_length=256)
    points: int = Field(ge=-1000, le=1000)
    cap: int | None = Field(default=None, ge=1, le=100000)
    cap_window: Span | None = None

    @model_validator(mode="after")
    def _check(self) -> ScoreRule:
        if self.points == 0:
            raise ValueError("points must not be 0")
        if self.cap_window is not None and self.cap is None:
            raise ValueError("cap_window needs a cap")
        if self.cap_window is not None and self.cap_window.total_seconds <= 0:
            raise ValueError("cap_window must be longer than 0 seconds")
        return self


class Scoring(_Model):
    """Behaviour score. ``half_life``: after this time a point counts half (no decay if omitted)."""

    half_life: Span | None = None
    rules: list[ScoreRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Scoring:
        _unique_ids([r.id for r in self.rules], "rules")
        if self.half_life is not None and self.half_life.total_seconds <= 0:
            raise ValueError("half_life must be longer than 0 seconds")
        return self


# --- fit score ----------------------------------------------------------------------------------


class FitRule(_Model):
    """Points when the contact's attributes match (``when``: a condition on attributes, tags...)."""

    id: str = Field(pattern=RULE_ID)
    when: Condition
    points: int = Field(ge=-1000, le=1000)


class Fit(_Model):
    rules: list[FitRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Fit:
        _unique_ids([r.id for r in self.rules], "rules")
        return self


# --- lifecycle ----------------------------------------------------------------------------------


class StageRule(_Model):
    """Move a contact to ``to`` when ``when`` holds. Rules only move a contact forward (to a later
    stage in ``stages``); sales feedback may move it anywhere."""

    id: str = Field(pattern=RULE_ID)
    to: str = Field(pattern=STAGE)
    when: Condition


class Lifecycle(_Model):
    stages: list[str] = Field(
        default_factory=lambda: ["subscriber", "lead", "mql", "sql", "customer"], min_length=2
    )
    rules: list[StageRule] = Field(default_factory=list)
    recycle_after: Span = Field(
        default_factory=lambda: Span(days=30),
        description="After sales rejects a lead, rules do not promote it again for this long.",
    )

    @model_validator(mode="after")
    def _check(self) -> Lifecycle:
        for stage in self.stages:
            if not re.fullmatch(STAGE, stage):
                raise ValueError(f"stages: {stage!r} is not a stage name (a-z, 0-9, _)")
        _unique_ids(self.stages, "stages")
        _unique_ids([r.id for r in self.rules], "rules")
        for rule in self.rules:
            if rule.to not in self.stages:
                raise ValueError(f"rules.{rule.id}.to: {rule.to!r} is not one of the stages")
        return self

    def rank(self, stage: str | None) -> int:
        """Position of a stage (-1 for none or an unknown stage)."""
        return self.stages.index(stage) if stage in self.stages else -1


# --- routing ------------------------------------------------------------------------------------


class AssignmentRule(_Model):
    """Who gets a lead handed to sales: the first rule whose ``when`` holds (no ``when``: always)
    picks an owner from ``owners`` — in turn (``round_robin``) or the first (``fixed``)."""

    id: str = Field(pattern=RULE_ID)
    when: Condition | None = None
    owners: list[str] = Field(min_length=1, max_length=100)
    strategy: Literal["round_robin", "fixed"] = "round_robin"


class Routing(_Model):
    hand_off_stage: str = Field(default="mql", pattern=STAGE)
    assignment: list[AssignmentRule] = Field(default_factory=list)
    default_owner: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _unique(self) -> Routing:
        _unique_ids([r.id for r in self.assignment], "assignment")
        return self


# --- custom attributes ----------------------------------------------------------------------------

AttributeType = Literal["string", "integer", "number", "boolean", "date", "enum", "country"]


class AttributeSpec(_Model):
    """A custom contact attribute: its type, and for ``enum`` the allowed values."""

    type: AttributeType
    values: list[str] | None = None
    max_length: int = Field(default=256, ge=1, le=2048)
    min: float | None = None
    max: float | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AttributeSpec:
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("values are given for (and only for) type enum")
        return self


# --- the whole file -------------------------------------------------------------------------------


class LeadModel(_Model):
    scoring: Scoring = Field(default_factory=Scoring)
    fit: Fit = Field(default_factory=Fit)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    routing: Routing = Field(default_factory=Routing)
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> LeadModel:
        for name in self.attributes:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"attributes.{name}: not an attribute name (a-z, 0-9, _; 40 at most)")
            if name in BUILT_IN_FIELDS:
                raise ValueError(f"attributes.{name}: a built-in field; pick another name")
        if self.routing.hand_off_stage not in self.lifecycle.stages:
            raise ValueError(
                f"routing.hand_off_stage: {self.routing.hand_off_stage!r} is not a lifecycle stage"
            )
        return self


def _unique_ids(ids: list[str], where: str) -> None:
    seen = sorted({i for i in ids if ids.count(i) > 1})
    if seen:
        raise ValueError(f"{where}: ids used more than once: {', '.join(seen)}")


def parse_lead_model(data: Any, source: str) -> LeadModel:
    if data is None:
        return LeadModel()
    if not isinstance(data, dict):
        raise LeadModelError(f"{source}: must be a YAML mapping")
    try:
        return LeadModel.model_validate(data)
    except ValidationError as exc:
        raise LeadModelError(f"{source}: {describe_validation(exc)}") from exc


def load_lead_model(path: Path) -> LeadModel:
    """The lead model in ``path``: restored from its precompiled artifact when one was made from
    exactly this file (the layer's, ``leadflow.precompiled``), else read and validated
    (``read_lead_file``)."""
    from leadflow import precompiled

    restored = precompiled.load(path, LeadModel)
    return restored if restored is not None else read_lead_file(path)


def read_lead_file(path: Path) -> LeadModel:
    """The lead model in ``path``, validated; the defaults (no rules, the five standard stages) if
    the file does not exist."""
    import yaml

    from leadflow.kernel import yaml_files

    if not path.exists():
        return LeadModel()
    try:
        data = yaml_files.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LeadModelError(f"{path}: cannot read YAML: {exc}") from exc
    return parse_lead_model(data, str(path))
