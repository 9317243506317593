"""The journey language: what marketers write in ``journeys/*.yaml``, validated with pydantic.

A journey has an entry rule and a list of steps. Steps run in order; a ``branch`` holds two step
lists. Every model forbids unknown keys, so a typo is an error that names the step and the key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

JOURNEY_ID = r"^[a-z][a-z0-9-]{0,39}$"
STEP_ID = r"^[a-z][a-z0-9_]{0,39}$"
MAX_WAIT_SECONDS = 365 * 86400

Scalar = str | int | float | bool


class JourneyError(ValueError):
    """A journey file is invalid; the message names the file, the step and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(_Model):
    """Start the journey for a contact when an event of ``event`` type with matching properties arrives."""

    event: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        if event_type != self.event:
            return False
        for key, expected in self.where.items():
            allowed = expected if isinstance(expected, list) else [expected]
            if key not in properties or properties[key] not in allowed:
                return False
        return True


class SendEmail(_Model):
    id: str = Field(pattern=STEP_ID)
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str | None = Field(default=None, max_length=60)


class Duration(_Model):
    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)
    seconds: int = Field(default=0, ge=0)

    @property
    def total_seconds(self) -> int:
        return ((self.days * 24 + self.hours) * 60 + self.minutes) * 60 + self.seconds

    @model_validator(mode="after")
    def _bounds(self) -> Duration:
        if not 0 < self.total_seconds <= MAX_WAIT_SECONDS:
            raise ValueError("a wait must be longer than 0 and at most 365 days")
        return self

    def describe(self) -> str:
        parts = [(self.days, "day"), (self.hours, "hour"), (self.minutes, "minute"), (self.seconds, "second")]
        return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n)


class Engagement(_Model):
    """True when the contact opened and/or clicked the email sent by an earlier step."""

    opened: str | None = Field(default=None, pattern=STEP_ID)
    clicked: str | None = Field(default=None, pattern=STEP_ID)
    opened_or_clicked: str | None = Field(default=None, pattern=STEP_ID)

    @model_validator(mode="after")
    def _one(self) -> Engagement:
        if sum(v is not None for v in (self.opened, self.clicked, self.opened_or_clicked)) != 1:
            raise ValueError("give exactly one of opened, clicked, opened_or_clicked (a send_email step id)")
        return self

    @property
    def step(self) -> str:
        return self.opened or self.clicked or self.opened_or_clicked or ""

    @property
    def attributes(self) -> tuple[str, ...]:
        if self.opened:
            return ("first_opened_at",)
        if self.clicked:
            return ("first_clicked_at",)
        return ("first_opened_at", "first_clicked_at")


class Branch(_Model):
    name: str = Field(min_length=1, max_length=60)
    id: str | None = Field(default=None, pattern=STEP_ID)
    if_: Engagement = Field(alias="if")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class Wait(Duration):
    id: str | None = Field(default=None, pattern=STEP_ID)


class SendEmailStep(_Model):
    send_email: SendEmail


class WaitStep(_Model):
    wait: Wait


class BranchStep(_Model):
    branch: Branch


class EndStep(_Model):
    end: Literal[True] | None = True


STEP_KINDS = ("send_email", "wait", "branch", "end")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [kind for kind in STEP_KINDS if kind in value]
        return kinds[0] if len(kinds) == 1 else None
    for kind in STEP_KINDS:
        if hasattr(value, kind):
            return kind
    return None


Step = Annotated[
    Annotated[SendEmailStep, Tag("send_email")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[EndStep, Tag("end")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step is a mapping with exactly one of: send_email, wait, branch, end",
    ),
]
Branch.model_rebuild()


class Journey(_Model):
    id: str = Field(pattern=JOURNEY_ID)
    name: str = Field(min_length=1, max_length=120)
    description: str | None = None
    entry: Entry
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Journey:
        seen: set[str] = set()
        _check_steps(self.steps, "steps", seen, sent_before=())
        return self

    def walk(self) -> Iterator[Step]:
        yield from _walk(self.steps)

    @property
    def max_duration_seconds(self) -> int:
        return _longest_wait(self.steps)


def _walk(steps: list[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        if isinstance(step, BranchStep):
            yield from _walk(step.branch.then)
            yield from _walk(step.branch.else_)


def _longest_wait(steps: list[Step]) -> int:
    total = 0
    for step in steps:
        if isinstance(step, WaitStep):
            total += step.wait.total_seconds
        elif isinstance(step, BranchStep):
            total += max(_longest_wait(step.branch.then), _longest_wait(step.branch.else_))
    return total


def _check_steps(
    steps: list[Step], path: str, seen: set[str], sent_before: tuple[str, ...]
) -> tuple[str, ...]:
    sent = sent_before
    for i, step in enumerate(steps):
        where = f"{path}[{i}]"
        step_id = _step_id(step)
        if step_id is not None:
            if step_id in seen:
                raise ValueError(f"{where}: step id {step_id!r} is used twice")
            seen.add(step_id)
        if isinstance(step, SendEmailStep):
            sent = (*sent, step.send_email.id)
        elif isinstance(step, BranchStep):
            ref = step.branch.if_.step
            if ref not in sent:
                raise ValueError(
                    f"{where}.branch.if: {ref!r} is not a send_email step that runs before this branch"
                )
            _check_steps(step.branch.then, f"{where}.branch.then", seen, sent)
            _check_steps(step.branch.else_, f"{where}.branch.else", seen, sent)
        elif isinstance(step, EndStep) and i != len(steps) - 1:
            raise ValueError(f"{where}: 'end' must be the last step of its list")
    return sent


def _step_id(step: Step) -> str | None:
    if isinstance(step, SendEmailStep):
        return step.send_email.id
    if isinstance(step, WaitStep):
        return step.wait.id
    if isinstance(step, BranchStep):
        return step.branch.id
    return None


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts: list[str | int] = []
        for part in err["loc"]:
            if not parts or part != parts[-1]:  # a union tag repeats the step key: show it once
                parts.append(part)
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        lines.append(f"{loc or 'journey'}: {err['msg']}")
    return "; ".join(dict.fromkeys(lines))


def parse_journey(data: Any, source: str) -> Journey:
    if not isinstance(data, dict):
        raise JourneyError(f"{source}: a journey file must be a YAML mapping")
    try:
        return Journey.model_validate(data)
    except ValidationError as exc:
        raise JourneyError(f"{source}: {_format_errors(exc)}") from exc


def load_journey(path: Path) -> Journey:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise JourneyError(f"{path}: cannot read YAML: {exc}") from exc
    return parse_journey(data, str(path))


def load_journeys(directory: Path) -> list[Journey]:
    journeys = [load_journey(path) for path in sorted(Path(directory).glob("*.yaml"))]
    ids = [j.id for j in journeys]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise JourneyError(f"{directory}: journey ids used by more than one file: {', '.join(duplicates)}")
    return journeys
