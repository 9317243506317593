"""The journey language: what marketers write in ``journeys/*.yaml``, validated with pydantic.

A journey has an entry rule, re-entry and exit rules, settings (quiet hours, send window,
frequency cap, time zone, maximum duration) and a list of steps. Steps run in order; branching
steps hold step lists of their own. Every model forbids unknown keys, so a typo is an error that
names the file, the step and the key. The full reference is ``journeys/README.md``.

Cold start: the models are declared with ``defer_build``: their validators are built when a file
is first validated (``read_journey_files``), not when this module is imported. A Lambda function
restores the journeys its layer's build validated (``leadflow.precompiled``, through
``load_journeys``) and never builds them; Jinja2 and YAML are imported only to validate files.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
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

from leadflow.contacts.fields import BUILT_IN_FIELDS, INTERNAL_FIELDS, PROFILE_FIELDS
from leadflow.journeys.conditions import (
    EVENT_TYPE,
    NAME,
    SEGMENT,
    STEP_ID,
    Condition,
    Scalar,
    Span,
    engagement_refs,
    one_key_tag,
)
from leadflow.journeys.timing import FrequencyCap

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

JOURNEY_ID = r"^[a-z][a-z0-9-]{0,39}$"
TEMPLATE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
PROPERTY = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_WAIT_SECONDS = 365 * 86400
MAX_JOURNEY_SECONDS = 365 * 86400
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RESERVED_ATTRIBUTES = (BUILT_IN_FIELDS - set(PROFILE_FIELDS)) | {"phone"} | INTERNAL_FIELDS
"""Profile fields a journey's ``update_contact`` may not set: leadflow's own (``phone`` too: it is
normalized and indexed by the contacts service)."""


class JourneyError(ValueError):
    """A journey file is invalid; the message names the file, the step and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError("must be a time of day like 09:00 (24-hour HH:MM)")
    return value


def parse_clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# --- entry, re-entry, exit, settings ----------------------------------------------------------


TRIGGERS = ("event", "stage", "score_reaches", "segment", "manual")


class _TriggerFields(_Model):
    """The fields of one entry trigger: a ``Trigger`` has exactly one; an ``Entry`` has one inline
    or lists triggers under ``any``."""

    event: str | None = Field(default=None, pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    stage: str | None = Field(default=None, pattern=NAME)
    score_reaches: int | None = None
    segment: str | None = Field(default=None, pattern=SEGMENT)
    manual: Literal[True] | None = None

    @property
    def given(self) -> list[str]:
        """The trigger fields given (of ``TRIGGERS``)."""
        return [k for k in TRIGGERS if getattr(self, k) is not None]

    def _check_one_trigger(self, or_else: str = "") -> None:
        if len(self.given) != 1:
            raise ValueError(f"give exactly one of: event, stage, score_reaches, segment, manual{or_else}")
        if self.where and self.event is None:
            raise ValueError("'where' filters the properties of an 'event' entry")


class Trigger(_TriggerFields):
    """One entry trigger: exactly one of

    - ``event``: an event of this type (``where``: property filters, a value or a list of values)
    - ``stage``: the contact's lifecycle stage becomes this one
    - ``score_reaches``: the contact's score crosses this value upwards
    - ``segment``: the contact enters this segment
    - ``manual``: only through the admin API (``POST /admin/journeys/{id}/enrollments``)
    """

    @model_validator(mode="after")
    def _one_trigger(self) -> Trigger:
        self._check_one_trigger()
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
        """Whether an event is this ``event`` trigger (the ``if`` condition is checked separately)."""
        if self.event is None or event_type != self.event:
            return False
        for key, expected in self.where.items():
            allowed = expected if isinstance(expected, list) else [expected]
            if key not in properties or properties[key] not in allowed:
                return False
        return True


class Entry(_TriggerFields):
    """When a contact enters: one trigger (see ``Trigger``) or ``any`` of several
    (``{any: [{score_reaches: 40}, {stage: mql}]}``: whichever happens first enrols the contact,
    once), optionally narrowed by a condition on the contact (``if``, shared by all triggers)."""

    any_: list[Trigger] | None = Field(default=None, alias="any", min_length=1, max_length=10)
    if_: Condition | None = Field(default=None, alias="if")

    @model_validator(mode="after")
    def _one_trigger(self) -> Entry:
        if self.any_ is not None:
            if self.given or self.where:
                raise ValueError(
                    f"'any' lists the triggers; {', '.join(repr(k) for k in self.given or ['where'])} "
                    "belongs inside one of its items"
                )
            if any(t.manual for t in self.any_):
                raise ValueError("any: 'manual' cannot be combined with other triggers (use it alone)")
            seen: list[Trigger] = []
            for i, trigger in enumerate(self.any_):
                if trigger in seen:
                    raise ValueError(f"any[{i}]: the same trigger is listed twice")
                seen.append(trigger)
        else:
            self._check_one_trigger(" (or several under 'any')")
        if self.if_ is not None and engagement_refs(self.if_):
            raise ValueError("an entry condition cannot test the engagement of this journey's emails")
        return self

    @property
    def triggers(self) -> list[Trigger]:
        """The triggers, one for a single-trigger entry; an event matching any of them enters."""
        if self.any_ is not None:
            return list(self.any_)
        # fields of this validated entry: constructed, not validated again (the trigger function
        # asks this for every event; validating would build ``Trigger``'s validator for it)
        return [
            Trigger.model_construct(**{name: getattr(self, name) for name in _TriggerFields.model_fields})
        ]

    @property
    def kind(self) -> str:
        """``any`` for several triggers, else the one trigger's kind (event, stage, score...)."""
        return "any" if self.any_ is not None else self.triggers[0].kind

    @property
    def event_types(self) -> list[str]:
        """The event types of the ``event`` triggers (whose properties a template may read)."""
        return [t.event for t in self.triggers if t.event is not None]

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        """Whether an event is one of this entry's ``event`` triggers (``if`` is checked apart)."""
        return any(t.matches(event_type, properties) for t in self.triggers)


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


@cache
def _syntax() -> SandboxedEnvironment:
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=True)


def _jinja_syntax(value: str | None) -> str | None:
    if value is None:
        return None
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line")
    import jinja2

    try:
        _syntax().parse(value)  # syntax only: what a template may use is checked by ``checks``
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"is not a valid Jinja2 template: {exc.message}") from exc
    return value


class SendEmail(_Model):
    """Send a template's email. ``subject``/``preheader`` (one line, Jinja2 like ``subject.txt``)
    override the template's own: a ``random_split`` whose paths differ only by subject is an
    A/B subject test with one template folder."""

    id: str = Field(pattern=STEP_ID)
    template: str = Field(pattern=TEMPLATE)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    purpose: Literal["marketing", "transactional", "confirmation"] = "marketing"
    subject: str | None = Field(default=None, min_length=1, max_length=300)
    preheader: str | None = Field(default=None, min_length=1, max_length=300)

    _syntax = field_validator("subject", "preheader")(_jinja_syntax)


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
    """Until one of (exactly one form):

    - a time of day in the contact's time zone (``time``, optionally on ``weekdays``);
    - a date attribute of the contact (``attribute``, shifted by ``offset_days``/``offset_hours``,
      optionally at ``time`` on that day);
    - a fixed moment (``at``: an ISO 8601 date-time with its offset, e.g. a one-off webinar);
    - a date-time in the entry event's properties (``event_property``, shifted by
      ``offset_days``/``offset_hours``, e.g. ``offset_hours: -1`` for an hour before it starts).

    A moment already past (or a missing or unreadable date) continues at once."""

    time: str | None = None
    weekdays: list[Weekday] | None = None
    attribute: str | None = Field(default=None, pattern=NAME)
    at: AwareDatetime | None = None
    event_property: str | None = Field(default=None, pattern=PROPERTY)
    offset_days: int = Field(default=0, ge=-365, le=365)
    offset_hours: int = Field(default=0, ge=-8760, le=8760)

    _check = field_validator("time")(lambda v: v if v is None else _clock_time(v))

    @model_validator(mode="before")
    @classmethod
    def _aware(cls, data: Any) -> Any:
        at = data.get("at") if isinstance(data, dict) else None
        if isinstance(at, str) and not re.search(r"(Z|[+-]\d\d:?\d\d)$", at.strip()):
            raise ValueError(
                f"at: {at!r} needs its UTC offset, like 2026-03-12T17:00:00+01:00 or 2026-03-12T16:00:00Z"
            )
        if isinstance(at, datetime) and at.tzinfo is None:
            raise ValueError("at: needs its UTC offset, like 2026-03-12T17:00:00+01:00")
        return data

    @model_validator(mode="after")
    def _what(self) -> WaitUntil:
        forms = {
            "time": self.time is not None and self.attribute is None,
            "attribute": self.attribute is not None,
            "at": self.at is not None,
            "event_property": self.event_property is not None,
        }
        chosen = [k for k, v in forms.items() if v]
        if not chosen and self.time is None:
            raise ValueError(
                "give one of: a time of day ('time', optionally 'weekdays'), a date 'attribute', "
                "a fixed date-time 'at', or an entry 'event_property'"
            )
        if len(chosen) > 1:
            raise ValueError(f"give only one of {' / '.join(chosen)}: they are different kinds of wait_until")
        if self.weekdays is not None and (self.time is None or self.attribute is not None):
            raise ValueError("'weekdays' needs a 'time' (and no date)")
        if (self.offset_days or self.offset_hours) and self.attribute is None and self.event_property is None:
            raise ValueError("'offset_days'/'offset_hours' shift a date 'attribute' or an 'event_property'")
        if self.time is not None and self.attribute is not None and self.offset_hours:
            raise ValueError("'offset_hours' cannot be combined with a 'time' of day (use 'offset_days')")
        return self

    @property
    def offset_seconds(self) -> int:
        return (self.offset_days * 24 + self.offset_hours) * 3600

    def describe(self) -> str:
        """In words, for state names and diagrams ("starts_at -1 hours", "Tue 10:30")."""
        shift = ""
        if self.offset_days:
            shift += f" {self.offset_days:+d} days"
        if self.offset_hours:
            shift += f" {self.offset_hours:+d} hours"
        if self.at is not None:
            return self.at.isoformat()
        if self.event_property is not None:
            return f"{self.event_property}{shift}"
        if self.attribute is not None:
            return f"{self.attribute}{shift}" + (f" at {self.time}" if self.time else "")
        days = f" on {'/'.join(d.capitalize() for d in self.weekdays)}" if self.weekdays else ""
        return f"{self.time}{days}"


class WaitFor(_Model):
    """Wait until the contact does something (an event) or the timeout passes; one path each.

    ``count_from``: ``wait`` (default) counts only events after the contact reached this step;
    ``entry`` also counts one since the contact entered the journey. The wait reacts as soon as
    the event arrives; ``check_every`` is obsolete (accepted for old files, without effect)."""

    id: str = Field(pattern=STEP_ID)
    name: str | None = Field(default=None, min_length=1, max_length=60)
    event: str = Field(pattern=EVENT_TYPE)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    timeout: Span
    count_from: Literal["wait", "entry"] = "wait"
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
    default: list[Step] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Branch:
        if (self.if_ is None) == (self.cases is None):
            raise ValueError("give either 'if' (with then/else) or 'cases' (with default)")
        if self.cases is not None and (self.then or self.else_):
            raise ValueError("'then'/'else' belong to an 'if' branch; cases use 'steps' and 'default'")
        if self.if_ is not None and self.default is not None:
            raise ValueError("'default' belongs to 'cases'; an 'if' branch uses 'else'")
        if self.cases is not None and self.default is None:
            raise ValueError(
                "a branch with 'cases' needs 'default': the steps for a contact no case matches "
                "('default: []' continues after the branch)"
            )
        return self

    def paths(self) -> list[tuple[str, list[Step]]]:
        if self.cases is None:
            return [("then", self.then), ("else", self.else_)]
        return [(f"case{i + 1}", case.steps) for i, case in enumerate(self.cases)] + [
            ("default", self.default or [])
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
        # one step is one DynamoDB write, which may name an attribute once ("two document paths
        # overlap" otherwise — moto lets it through, DynamoDB refuses it)
        if self.add_tags and self.remove_tags:
            raise ValueError("add_tags and remove_tags in one step: use two update_contact steps")
        both = sorted(set(self.set) & set(self.unset))
        if both:
            raise ValueError(f"attribute {both[0]!r} is both set and unset")
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


_step_kind = one_key_tag({kind: kind for kind in STEP_KINDS})


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


RESUMABLE_KINDS = ("send_email", "send_sms", "wait", "wait_until", "wait_for")
"""The steps ``on_change: move_to_new`` may move contacts to: their first state needs nothing but
the execution's input (no result of an earlier state), so an execution can begin there."""

StepIdText = Annotated[str, Field(pattern=STEP_ID)]


class MoveToNew(_Model):
    """``on_change: {move_to_new: {OLD_STEP: NEW_STEP, ...}}``: after a deploy, contacts waiting at
    OLD_STEP on an older version continue on the live version at NEW_STEP (a step id of this file,
    of a kind in ``RESUMABLE_KINDS``). OLD_STEP ids are the old version's (checked at the deploy)."""

    move_to_new: dict[StepIdText, StepIdText] = Field(min_length=1, max_length=200)


def _on_change_kind(value: Any) -> str:
    return "move_to_new" if isinstance(value, dict | MoveToNew) else "on_change"


OnChange = Annotated[
    Annotated[Literal["finish_on_old", "exit"], Tag("on_change")] | Annotated[MoveToNew, Tag("move_to_new")],
    Discriminator(_on_change_kind),
]
"""``on_change``: contacts in flight when a deploy changes the journey keep their version
(``finish_on_old``), leave the journey (``exit``, recorded as ``journey changed``) or continue on
the new version at a mapped step (``{move_to_new: {OLD_STEP: NEW_STEP}}``)."""


class Journey(_Model):
    id: str = Field(pattern=JOURNEY_ID)
    name: str = Field(min_length=1, max_length=120)
    description: str | None = None
    entry: Entry
    re_entry: ReEntry = "never"
    exit: Exit = Field(default_factory=Exit)
    settings: Settings = Field(default_factory=Settings)
    on_change: OnChange = Field(
        default="finish_on_old",
        description="What a deploy that changes this journey does to contacts in it: they finish on "
        "the version they entered (finish_on_old), leave the journey (exit), or continue on the new "
        "version at the mapped step ({move_to_new: {OLD_STEP: NEW_STEP}}).",
    )
    steps: list[Step] = Field(min_length=1)
    _ids: dict[int, str] = PrivateAttr(default_factory=dict)
    _order: list[Step] = PrivateAttr(default_factory=list)

    @field_validator("on_change", mode="before")
    @classmethod
    def _on_change_mode(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) != {"move_to_new"}:
            keys = ", ".join(repr(str(k)) for k in value)
            raise ValueError(
                f"{keys}: give 'finish_on_old' or 'exit', or {{move_to_new: {{OLD_STEP: NEW_STEP}}}}"
            )
        if not isinstance(value, dict | MoveToNew) and value not in ("finish_on_old", "exit"):
            raise ValueError(
                f"{value!r}: give 'finish_on_old' or 'exit', or {{move_to_new: {{OLD_STEP: NEW_STEP}}}}"
            )
        return value

    @property
    def on_change_mode(self) -> str:
        """``finish_on_old``, ``exit`` or ``move_to_new``."""
        return "move_to_new" if isinstance(self.on_change, MoveToNew) else self.on_change

    @property
    def move_to_new(self) -> dict[str, str]:
        """``on_change: move_to_new``'s mapping (old step id -> step id of this file); {} for the others."""
        return dict(self.on_change.move_to_new) if isinstance(self.on_change, MoveToNew) else {}

    def step_by_id(self, step_id: str) -> Step | None:
        return next((s for s in self._order if self._ids.get(id(s)) == step_id), None)

    @model_validator(mode="after")
    def _references(self) -> Journey:
        explicit = self._index_steps()
        problems: list[str] = []
        _check_steps(self.steps, "steps", sent_before=(), journey=self, explicit=explicit, problems=problems)
        problems += _move_problems(self, explicit)
        if problems:  # every one of them, not only the first
            raise ValueError("; ".join(dict.fromkeys(problems)))
        if self.settings.max_duration and not (
            0 < self.settings.max_duration.total_seconds <= MAX_JOURNEY_SECONDS
        ):
            raise ValueError("settings.max_duration: must be longer than 0 and at most 365 days")
        return self

    def _index_steps(self) -> dict[str, str]:
        """Fills the step index (``_order``: every step in walking order, ``_ids``: each step's id by
        object identity) from the fields; returns the ids written in the file (id -> where)."""
        explicit: dict[str, str] = {}
        _collect_ids(self.steps, "steps", explicit)
        self._order.clear()
        self._ids.clear()
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
        return explicit

    def __getstate__(self) -> dict[Any, Any]:
        """Pickled without the step index: it is keyed by object identity, which a pickle does not
        keep; ``__setstate__`` rebuilds it from the fields (``leadflow.precompiled``)."""
        return {**super().__getstate__(), "__pydantic_private__": None}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "__pydantic_private__": {"_ids": {}, "_order": []}})
        self._index_steps()

    def __eq__(self, other: object) -> bool:
        """Journeys with the same fields are equal: the private step index is derived from them
        (and keyed by object identity, so two loads of one file would otherwise differ)."""
        if not isinstance(other, Journey):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

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


def bucket(*parts: str) -> float:
    """A stable number in [0, 1) for the parts: the same contact always lands in the same place."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def buckets(journey: Journey, contact_id: str) -> dict[str, float]:
    """The execution input's ``buckets``: the contact's place per ``random_split``/``holdout`` step
    (the same numbers the journey step function used to draw, so assignments do not change)."""
    found: dict[str, float] = {}
    for step in journey.walk():
        if isinstance(step, RandomSplitStep | HoldoutStep):
            step_id = journey.step_id(step)
            kind = "split" if isinstance(step, RandomSplitStep) else "holdout"
            found[step_id] = bucket(kind, journey.id, step_id, contact_id)
    return found


def _move_problems(journey: Journey, explicit: Mapping[str, str]) -> list[str]:
    """Each ``move_to_new`` target must be a step of this file (by its written id) where an
    execution can begin with only its input (``RESUMABLE_KINDS``)."""
    problems = []
    for old, new in journey.move_to_new.items():
        where = f"on_change.move_to_new.{old}"
        step = journey.step_by_id(new) if new in explicit else None
        if step is None and journey.step_by_id(new) is not None:
            problems.append(f"{where}: {new!r} is not an id written in this file: give the step an id")
        elif step is None:
            close = difflib.get_close_matches(new, list(explicit), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: no step of this journey has the id {new!r}{hint}")
        elif step_kind(step) not in RESUMABLE_KINDS:
            problems.append(
                f"{where}: {new!r} is a {step_kind(step)} step; contacts can be moved to a "
                f"{', '.join(RESUMABLE_KINDS[:-1])} or {RESUMABLE_KINDS[-1]} step"
            )
    return problems


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


def _sends(steps: list[Step]) -> list[Step]:
    return [s for s in _walk(steps) if isinstance(s, SendEmailStep | SendSmsStep)]


def _check_steps(
    steps: list[Step],
    path: str,
    sent_before: tuple[str, ...],
    journey: Journey,
    explicit: Mapping[str, str],
    problems: list[str],
) -> tuple[str, ...]:
    """Checks step order rules, adding what breaks them to ``problems``; returns the email send steps
    that may have run after ``steps`` (a send inside a branch, split or wait_for path may have run:
    a later condition may test it, and a contact who took another path simply did not engage)."""
    sent = sent_before
    for i, step in enumerate(steps):
        where = f"{path}[{i}]"
        kind = step_kind(step)
        for cpath, condition in _conditions(step):
            for ref in engagement_refs(condition):
                if ref not in sent:
                    problem = _engagement_problem(ref, journey, explicit)
                    problems.append(f"{where}.{kind}.{cpath}: {problem}")
        if (
            isinstance(step, WaitUntilStep)
            and step.wait_until.event_property
            and not journey.entry.event_types
        ):
            problems.append(
                f"{where}.wait_until.event_property: this journey is not entered by an event "
                f"({journey.entry.kind} entry): there is no entry event to read "
                f"{step.wait_until.event_property!r} from"
            )
        if isinstance(step, SendEmailStep):
            sent = (*sent, step.send_email.id)
        elif isinstance(step, GotoStep):
            goto_problem = _goto_problem(step, where, journey, explicit)
            if goto_problem:
                problems.append(goto_problem)
        before = sent
        for name, child in children(step):
            sent = _merge(
                sent, _check_steps(child, f"{where}.{kind}.{name}", before, journey, explicit, problems)
            )
        if isinstance(step, EndStep | GotoStep) and i != len(steps) - 1:
            problems.append(f"{where}: '{kind}' must be the last step of its list")
    return sent


def _merge(first: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return (*first, *(s for s in more if s not in first))


def _engagement_problem(ref: str, journey: Journey, explicit: Mapping[str, str]) -> str:
    """Why an opened/clicked condition cannot test ``ref`` (it is not an email sent before it)."""
    step = next((s for s in journey._order if journey._ids.get(id(s)) == ref), None)
    if step is None or ref not in explicit:
        emails = sorted(s.send_email.id for s in _sends(journey.steps) if isinstance(s, SendEmailStep))
        close = difflib.get_close_matches(ref, emails, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"no send_email step has the id {ref!r}{hint}"
    if isinstance(step, SendSmsStep):
        return f"{ref!r} sends an SMS: only emails are opened or clicked"
    if not isinstance(step, SendEmailStep):
        return f"{ref!r} is a {step_kind(step)} step, not a send_email step"
    return (
        f"send_email {ref!r} does not run before this branch (it comes later or on another path): "
        "a condition can test only emails sent before it"
    )


def _goto_problem(step: GotoStep, where: str, journey: Journey, explicit: Mapping[str, str]) -> str | None:
    if step.goto not in explicit:
        return f"{where}.goto: no step has the id {step.goto!r}"
    order = journey._order
    target = next(i for i, s in enumerate(order) if journey._ids.get(id(s)) == step.goto)
    here = next(i for i, s in enumerate(order) if s is step)
    if target < here and not any(step_kind(s) in WAITING_KINDS for s in order[target:here]):
        return (
            f"{where}.goto: going back to {step.goto!r} needs a wait, wait_until or wait_for on the way "
            "(a loop without one would run without pause)"
        )
    return None


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts: list[str | int] = []
        for part in err["loc"]:
            if not parts or part != parts[-1]:  # a union tag repeats the step key: show it once
                parts.append(part)
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "step_kind":
            message = _step_kind_problem(err["input"])
        own_path = message.startswith(("steps", "on_change."))
        lines.append(f"{loc or 'journey'}: {message}" if not own_path else message)
    return "; ".join(dict.fromkeys(lines))


def _step_kind_problem(value: Any) -> str:
    """What is wrong with a step that is not one step kind: the bad key named, the closest kind."""
    if not isinstance(value, dict):
        return f"a step is a mapping with one step type as its key ({', '.join(STEP_KINDS)})"
    kinds = [k for k in value if k in STEP_KINDS]
    if len(kinds) > 1:
        return f"a step has exactly one step type, this one has {' and '.join(kinds)} (indentation?)"
    unknown = [str(k) for k in value if k not in STEP_KINDS]
    if not unknown:
        return f"a step is a mapping with one step type as its key ({', '.join(STEP_KINDS)})"
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, STEP_KINDS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"step types: {', '.join(STEP_KINDS)}"
        problems.append(f"unknown step type {key!r} ({hint})")
    return "; ".join(problems)


def parse_journey(data: Any, source: str) -> Journey:
    if not isinstance(data, dict):
        raise JourneyError(f"{source}: a journey file must be a YAML mapping")
    try:
        return Journey.model_validate(data)
    except ValidationError as exc:
        raise JourneyError(f"{source}: {_format_errors(exc)}") from exc


def load_journey(path: Path) -> Journey:
    import yaml

    from leadflow.kernel import yaml_files

    try:
        data = yaml_files.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise JourneyError(f"{path}: cannot read YAML: {exc}") from exc
    return parse_journey(data, str(path))


def load_journeys(directory: Path) -> list[Journey]:
    """The journeys of ``directory``: restored from its precompiled artifact when one was made from
    exactly these files (the layer's, ``leadflow.precompiled``), else read and validated
    (``read_journey_files``: the local runtime, the CLI, edited files)."""
    from leadflow import precompiled

    restored = precompiled.load(Path(directory), list)
    return restored if restored is not None else read_journey_files(directory)


def read_journey_files(directory: Path) -> list[Journey]:
    """Every ``*.yaml`` journey of ``directory``, validated; journey ids unique."""
    journeys = [load_journey(path) for path in sorted(Path(directory).glob("*.yaml"))]
    ids = [j.id for j in journeys]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise JourneyError(f"{directory}: journey ids used by more than one file: {', '.join(duplicates)}")
    return journeys
