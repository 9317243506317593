"""The journey language: what marketers write in ``journeys/*.yaml``, validated with pydantic.

A journey has an entry rule, re-entry and exit rules, settings (quiet hours, send window,
frequency cap, time zone, maximum duration) and a list of steps. Steps run in order; branching
steps hold step lists of their own. Every model forbids unknown keys, so a typo is an error that
names the file, the step and the key. The full reference is ``journeys/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from leadflow.journeys.conditions import (
    EVENT_TYPE,
    NAME,
    SEGMENT,
    STEP_ID,
    Condition,
    Scalar,
    Span,
    engagement_refs,
)

JOURNEY_ID = r"^[a-z][a-z0-9-]{0,39}$"
TEMPLATE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_WAIT_SECONDS = 365 * 86400
MAX_JOURNEY_SECONDS = 365 * 86400
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RESERVED_ATTRIBUTES = frozenset(
    {
        "pk",
        "sk",
        "contact_id",
        "email",
        "phone",
        "score",
        "stage",
        "tags",
        "segments",
        "created_at",
        "updated_at",
        "consent_email",
        "consent_sms",
        "consent_source",
        "consent_updated_at",
        "unsubscribed_at",
        "suppressed",
        "do_not_contact",
        # lead state: the lead engine, routing and sales feedback write these (with their events)
        "fit_score",
        "score_value",
        "score_at",
        "stage_at",
        "stage_hold_until",
        "lead_version",
        "rule_points",
        "activity",
        "owner",
        "visitor_ids",
        "merged_ids",
        "merged_into",
    }
)


class JourneyError(ValueError):
    """A journey file is invalid; the message names the file, the step and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError("must be a time of day like 09:00 (24-hour HH:MM)")
    return value


def parse_clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# --- entry, re-entry, exit, settings ----------------------------------------------------------


class Entry(_Model):
    """When a contact enters: exactly one trigger, optionally narrowed by a condition on the contact.

    - ``event``: an event of this type (``where``: property filters, a value or a list of values)
    - ``stage``: the contact's lifecycle stage becomes this one
    - ``score_reaches``: the contact's score crosses this value upwards
    - ``segment``: the contact enters this segment
    - ``manual``: only through the admin API (``POST /admin/journeys/{id}/enrollments``)
    """

    event: str | None = Field(default=None, pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    stage: str | None = Field(default=None, pattern=NAME)
    score_reaches: int | None = None
    segment: str | None = Field(default=None, pattern=SEGMENT)
    manual: Literal[True] | None = None
    if_: Condition | None = Field(default=None, alias="if")

    @model_validator(mode="after")
    def _one_trigger(self) -> Entry:
        given = [
            k
            for k in ("event", "stage", "score_reaches", "segment", "manual")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of: event, stage, score_reaches, segment, manual")
        if self.where and self.event is None:
            raise ValueError("'where' filters the properties of an 'event' entry")
        if self.if_ is not None and engagement_refs(self.if_):
            raise ValueError("an entry condition cannot test the engagement of this journey's emails")
        return self

    @property
    def kind(self) -> str:
        if self.event is not None:
            return "event"
        if self.stage is not None:
            return "stage"
        if self.score_reaches is not None:
            return "score"
        if self.segment is not None:
            return "segment"
        return "manual"

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        """Whether an event is this entry's trigger (the ``if`` condition is checked separately)."""
        if self.event is None or event_type != self.event:
            return False
        for key, expected in self.where.items():
            allowed = expected if isinstance(expected, list) else [expected]
            if key not in properties or properties[key] not in allowed:
                return False
        return True


class ReEntryAfter(_Model):
    after: Span


ReEntry = Literal["never", "always"] | ReEntryAfter


class ExitOnEvent(_Model):
    event: str = Field(pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class Exit(_Model):
    """A contact leaves the journey (no further step) as soon as any of these holds. They are
    checked before every step, and events (an unsubscribe, a purchase) end waits early."""

    unsubscribed: bool = True
    events: list[ExitOnEvent] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)
    if_: Condition | None = Field(default=None, alias="if")

    @model_validator(mode="after")
    def _no_engagement(self) -> Exit:
        if self.if_ is not None and engagement_refs(self.if_):
            raise ValueError("an exit condition cannot test the engagement of this journey's emails")
        return self


class QuietHours(_Model):
    """No sends between ``start`` and ``end`` in the contact's time zone; sends are deferred."""

    start: str
    end: str

    _check = field_validator("start", "end")(_clock_time)


class SendWindow(_Model):
    """Sends only on these weekdays, between ``start`` and ``end`` (contact's time zone)."""

    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: str = "00:00"
    end: str = "23:59"

    _check = field_validator("start", "end")(_clock_time)


class FrequencyCap(_Model):
    """Marketing messages per contact across all journeys (per channel)."""

    per_day: int | None = Field(default=None, ge=1, le=100)
    per_week: int | None = Field(default=None, ge=1, le=500)

    @model_validator(mode="after")
    def _some(self) -> FrequencyCap:
        if self.per_day is None and self.per_week is None:
            raise ValueError("give per_day and/or per_week")
        return self


class Settings(_Model):
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    send_window: SendWindow | None = None
    frequency_cap: FrequencyCap | None = None
    max_duration: Span | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
        return value

    @property
    def schedules_sends(self) -> bool:
        return bool(self.quiet_hours or self.send_window or self.frequency_cap)


# --- steps ----------------------------------------------------------------------------------


class _Step(_Model):
    id: str | None = Field(default=None, pattern=STEP_ID)
    name: str | None = Field(default=None, min_length=1, max_length=60)


class SendEmail(_Model):
    id: str = Field(pattern=STEP_ID)
    template: str = Field(pattern=TEMPLATE)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    purpose: Literal["marketing", "transactional", "confirmation"] = "marketing"


class SendSms(_Model):
    id: str = Field(pattern=STEP_ID)
    template: str = Field(pattern=TEMPLATE)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    purpose: Literal["marketing", "transactional"] = "marketing"


class Wait(_Step, Span):
    @model_validator(mode="after")
    def _bounds(self) -> Wait:
        if not 0 < self.total_seconds <= MAX_WAIT_SECONDS:
            raise ValueError("a wait must be longer than 0 and at most 365 days")
        return self


class WaitUntil(_Step):
    """Until a time of day in the contact's time zone (optionally on given weekdays), or until a
    date attribute of the contact (plus ``offset``; a past date continues at once)."""

    time: str | None = None
    weekdays: list[Weekday] | None = None
    attribute: str | None = Field(default=None, pattern=NAME)
    offset_days: int = Field(default=0, ge=-365, le=365)

    _check = field_validator("time")(lambda v: v if v is None else _clock_time(v))

    @model_validator(mode="after")
    def _what(self) -> WaitUntil:
        if self.time is None and self.attribute is None:
            raise ValueError("give a time of day ('time', optionally 'weekdays') or a date 'attribute'")
        if self.weekdays is not None and self.time is None:
            raise ValueError("'weekdays' needs a 'time'")
        if self.attribute is None and self.offset_days:
            raise ValueError("'offset_days' shifts a date 'attribute'")
        return self


class WaitFor(_Model):
    """Wait until the contact does something (an event) or the timeout passes; one path each."""

    id: str = Field(pattern=STEP_ID)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    event: str = Field(pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    timeout: Span
    check_every: Span = Field(default_factory=lambda: Span(hours=1))
    on_event: list[Step] = Field(default_factory=list)
    on_timeout: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounds(self) -> WaitFor:
        if not 0 < self.timeout.total_seconds <= MAX_WAIT_SECONDS:
            raise ValueError("timeout: must be longer than 0 and at most 365 days")
        if not 60 <= self.check_every.total_seconds <= self.timeout.total_seconds:
            raise ValueError("check_every: must be at least 1 minute and at most the timeout")
        return self


class Case(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=60)
    if_: Condition = Field(alias="if")
    steps: list[Step] = Field(default_factory=list)


class Branch(_Step):
    """Yes/no (``if``/``then``/``else``) or multi-way (``cases``, first match wins, ``default``)."""

    name: str = Field(min_length=1, max_length=60)
    if_: Condition | None = Field(default=None, alias="if")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")
    cases: list[Case] | None = Field(default=None, min_length=1, max_length=10)
    default: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> Branch:
        if (self.if_ is None) == (self.cases is None):
            raise ValueError("give either 'if' (with then/else) or 'cases' (with default)")
        if self.cases is not None and (self.then or self.else_):
            raise ValueError("'then'/'else' belong to an 'if' branch; cases use 'steps' and 'default'")
        if self.if_ is not None and self.default:
            raise ValueError("'default' belongs to 'cases'; an 'if' branch uses 'else'")
        return self

    def paths(self) -> list[tuple[str, list[Step]]]:
        if self.cases is None:
            return [("then", self.then), ("else", self.else_)]
        return [(f"case{i + 1}", case.steps) for i, case in enumerate(self.cases)] + [
            ("default", self.default)
        ]


class SplitPath(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=40)
    weight: int = Field(ge=1, le=10_000)
    steps: list[Step] = Field(default_factory=list)


class RandomSplit(_Step):
    """Weighted random paths, the same path for a contact every time (deterministic per contact)."""

    name: str = Field(min_length=1, max_length=60)
    paths: list[SplitPath] = Field(min_length=2, max_length=10)


class Holdout(_Step):
    """A deterministic share of contacts receives nothing more (lift measurement): they leave here."""

    percent: float = Field(gt=0, lt=100)


class UpdateContact(_Step):
    set: dict[str, Scalar] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    stage: str | None = Field(default=None, pattern=NAME)
    add_points: int | None = Field(default=None, ge=-1000, le=1000)

    @model_validator(mode="after")
    def _something(self) -> UpdateContact:
        if not (self.set or self.unset or self.add_tags or self.remove_tags or self.stage or self.add_points):
            raise ValueError("give at least one of set, unset, add_tags, remove_tags, stage, add_points")
        for name in [*self.set, *self.unset]:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"attribute {name!r}: use lower_snake_case names")
            if name in RESERVED_ATTRIBUTES:
                raise ValueError(f"attribute {name!r} is managed by leadflow and cannot be set by a journey")
        for tag in [*self.add_tags, *self.remove_tags]:
            if not 1 <= len(tag) <= 64:
                raise ValueError("tags are 1 to 64 characters")
        return self


class NotifySales(_Step):
    """Hand the contact to sales: routing (``leads.yaml``) assigns an owner and the hand-off
    document — the complete profile, the owner and the interaction history — goes to the sales
    hand-off topic and the EventBridge bus."""

    reason: str = Field(min_length=1, max_length=200)


class Webhook(_Step):
    """POST a signed JSON document (the contact id, journey and step, ``payload``) to a URL, with
    retries. ``secret`` names the key in the webhook secrets (HMAC-SHA256 over the body).
    ``include_handoff``: the document carries the hand-off document (``handoff``: profile, owner,
    interaction history), as a CRM integration needs it. A delivery that fails every retry, or
    that the endpoint refuses, goes to the webhook dead-letter queue and the journey continues."""

    url: str = Field(max_length=2048)
    secret: str = Field(pattern=NAME)
    payload: dict[str, Scalar] = Field(default_factory=dict)
    include_handoff: bool = False

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        local = re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?/", value)
        if not (value.startswith("https://") or local):
            raise ValueError("must be an https:// URL")
        return value


class SendEmailStep(_Model):
    send_email: SendEmail


class SendSmsStep(_Model):
    send_sms: SendSms


class WaitStep(_Model):
    wait: Wait


class WaitUntilStep(_Model):
    wait_until: WaitUntil


class WaitForStep(_Model):
    wait_for: WaitFor


class BranchStep(_Model):
    branch: Branch


class RandomSplitStep(_Model):
    random_split: RandomSplit


class HoldoutStep(_Model):
    holdout: Holdout


class UpdateContactStep(_Model):
    update_contact: UpdateContact


class NotifySalesStep(_Model):
    notify_sales: NotifySales


class WebhookStep(_Model):
    webhook: Webhook


class GotoStep(_Model):
    goto: str = Field(pattern=STEP_ID)


class EndStep(_Model):
    end: Literal[True] | None = True


STEP_KINDS = (
    "send_email",
    "send_sms",
    "wait",
    "wait_until",
    "wait_for",
    "branch",
    "random_split",
    "holdout",
    "update_contact",
    "notify_sales",
    "webhook",
    "goto",
    "end",
)


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
    | Annotated[SendSmsStep, Tag("send_sms")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitUntilStep, Tag("wait_until")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[RandomSplitStep, Tag("random_split")]
    | Annotated[HoldoutStep, Tag("holdout")]
    | Annotated[UpdateContactStep, Tag("update_contact")]
    | Annotated[NotifySalesStep, Tag("notify_sales")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[EndStep, Tag("end")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step is a mapping with exactly one of: " + ", ".join(STEP_KINDS),
    ),
]
for _model in (WaitFor, Case, Branch, SplitPath, RandomSplit):
    _model.model_rebuild()

WAITING_KINDS = ("wait", "wait_until", "wait_for")


def step_kind(step: Step) -> str:
    kind = _step_kind(step)
    assert kind is not None
    return kind


def step_body(step: Step) -> Any:
    """The step's own model (``SendEmail`` of a ``SendEmailStep``...)."""
    return getattr(step, step_kind(step))


def children(step: Step) -> list[tuple[str, list[Step]]]:
    """The step lists a step holds, with their path names."""
    if isinstance(step, BranchStep):
        return step.branch.paths()
    if isinstance(step, WaitForStep):
        return [("on_event", step.wait_for.on_event), ("on_timeout", step.wait_for.on_timeout)]
    if isinstance(step, RandomSplitStep):
        return [(f"path{i + 1}", p.steps) for i, p in enumerate(step.random_split.paths)]
    return []


class Journey(_Model):
    id: str = Field(pattern=JOURNEY_ID)
    name: str = Field(min_length=1, max_length=120)
    description: str | None = None
    entry: Entry
    re_entry: ReEntry = "never"
    exit: Exit = Field(default_factory=Exit)
    settings: Settings = Field(default_factory=Settings)
    steps: list[Step] = Field(min_length=1)
    _ids: dict[int, str] = PrivateAttr(default_factory=dict)
    _order: list[Step] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Journey:
        explicit: dict[str, str] = {}
        _collect_ids(self.steps, "steps", explicit)
        counters: dict[str, int] = {}
        for step in _walk(self.steps):
            self._order.append(step)
            body = step_body(step)
            given = getattr(body, "id", None) if not isinstance(step, GotoStep | EndStep) else None
            if given:
                self._ids[id(step)] = given
                continue
            kind = step_kind(step)
            n = counters[kind] = counters.get(kind, 0) + 1
            auto = f"{kind}_{n}"
            while auto in explicit:
                n = counters[kind] = n + 1
                auto = f"{kind}_{n}"
            self._ids[id(step)] = auto
        _check_steps(self.steps, "steps", sent_before=(), journey=self, explicit=explicit)
        if self.settings.max_duration and not (
            0 < self.settings.max_duration.total_seconds <= MAX_JOURNEY_SECONDS
        ):
            raise ValueError("settings.max_duration: must be longer than 0 and at most 365 days")
        return self

    def walk(self) -> Iterator[Step]:
        yield from _walk(self.steps)

    def step_id(self, step: Step) -> str:
        """The step's id: the one written in the file, or a stable one made from its kind and order."""
        return self._ids[id(step)]

    def position(self, step: Step) -> int:
        return next(i for i, s in enumerate(self._order) if s is step)

    @property
    def timeout_seconds(self) -> int:
        return self.settings.max_duration.total_seconds if self.settings.max_duration else MAX_JOURNEY_SECONDS


def _walk(steps: list[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        for _, path in children(step):
            yield from _walk(path)


def _collect_ids(steps: list[Step], path: str, seen: dict[str, str]) -> None:
    for i, step in enumerate(steps):
        where = f"{path}[{i}]"
        step_id = None if isinstance(step, GotoStep | EndStep) else getattr(step_body(step), "id", None)
        if step_id is not None:
            if step_id in seen:
                raise ValueError(f"{where}: step id {step_id!r} is used twice (also at {seen[step_id]})")
            seen[step_id] = where
        for name, child in children(step):
            _collect_ids(child, f"{where}.{step_kind(step)}.{name}", seen)


def _conditions(step: Step) -> list[tuple[str, Condition]]:
    if isinstance(step, BranchStep):
        branch = step.branch
        if branch.if_ is not None:
            return [("if", branch.if_)]
        return [(f"cases[{i}].if", case.if_) for i, case in enumerate(branch.cases or [])]
    return []


def _check_steps(
    steps: list[Step],
    path: str,
    sent_before: tuple[str, ...],
    journey: Journey,
    explicit: Mapping[str, str],
) -> tuple[str, ...]:
    sent = sent_before
    for i, step in enumerate(steps):
        where = f"{path}[{i}]"
        kind = step_kind(step)
        for cpath, condition in _conditions(step):
            for ref in engagement_refs(condition):
                if ref not in sent:
                    raise ValueError(
                        f"{where}.{kind}.{cpath}: {ref!r} is not a send step that runs before this branch"
                    )
        if isinstance(step, SendEmailStep):
            sent = (*sent, step.send_email.id)
        elif isinstance(step, SendSmsStep):
            sent = (*sent, step.send_sms.id)
        elif isinstance(step, GotoStep):
            _check_goto(step, where, journey, explicit)
        for name, child in children(step):
            _check_steps(child, f"{where}.{kind}.{name}", sent, journey, explicit)
        if isinstance(step, EndStep | GotoStep) and i != len(steps) - 1:
            raise ValueError(f"{where}: '{kind}' must be the last step of its list")
    return sent


def _check_goto(step: GotoStep, where: str, journey: Journey, explicit: Mapping[str, str]) -> None:
    if step.goto not in explicit:
        raise ValueError(f"{where}.goto: no step has the id {step.goto!r}")
    order = journey._order
    target = next(i for i, s in enumerate(order) if journey._ids.get(id(s)) == step.goto)
    here = next(i for i, s in enumerate(order) if s is step)
    if target < here and not any(step_kind(s) in WAITING_KINDS for s in order[target:here]):
        raise ValueError(
            f"{where}.goto: going back to {step.goto!r} needs a wait, wait_until or wait_for on the way "
            "(a loop without one would run without pause)"
        )


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts: list[str | int] = []
        for part in err["loc"]:
            if not parts or part != parts[-1]:  # a union tag repeats the step key: show it once
                parts.append(part)
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{loc or 'journey'}: {message}" if not message.startswith("steps") else message)
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
