"""Conditions: what journeys branch, enter and exit on. One small language, one evaluator.

A condition is a mapping with exactly one key::

    {opened: welcome}                      # the contact opened the email of send step 'welcome'
    {clicked: welcome}  {opened_or_clicked: welcome}
    {clicked: [thanks_a, thanks_b]}        # any of these sends (one that did not run: not engaged)
    {score: {gte: 50}}                     # comparisons: eq, ne, gt, gte, lt, lte
    {stage: mql}  {stage: [mql, sql]}      # lifecycle stage is one of
    {tag: vip}                             # the contact has the tag
    {segment: hot-leads}                   # the contact is in the segment
    {consent: email}  {consent: sms}       # the contact granted consent on the channel
    {attribute: country, in: [DE, AT]}     # also: equals, exists, gt/gte/lt/lte, contains
    {did: purchase, within: {days: 30}, at_least: 1, where: {plan: pro}}
    {all: [...]}  {any: [...]}  {not: {...}}

Evaluation needs facts (``Facts``): the contact's profile, engagement of earlier sends and the
contact's recent events; the step executor gathers them with as few reads as the condition needs.
The lead engine passes the decayed score (``score``) and windowed counts from its activity
counters (``counts``), so it evaluates ``did`` without reading the contact's history.

Unlike the journey, lead and segment models, these are built when the module is imported (no
``defer_build``): request models of the admin API and the journey task contract embed
``Condition``, and a deferred model is built anew inside every model that embeds it (measured:
deferring them made ``send`` build the union twice and cost more than it saved elsewhere).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from leadflow.kernel.clock import parse_iso

STEP_ID = r"^[a-z][a-z0-9_]{0,39}$"
NAME = r"^[a-z][a-z0-9_]{0,39}$"
EVENT_TYPE = r"^[a-z][a-z0-9_]{0,63}$"
SEGMENT = r"^[a-z0-9][a-z0-9-]{0,63}$"
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Span(_Model):
    """A duration written as days/hours/minutes/seconds (any combination)."""

    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)
    seconds: int = Field(default=0, ge=0)

    @property
    def total_seconds(self) -> int:
        return ((self.days * 24 + self.hours) * 60 + self.minutes) * 60 + self.seconds

    def describe(self) -> str:
        parts = [(self.days, "day"), (self.hours, "hour"), (self.minutes, "minute"), (self.seconds, "second")]
        return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n) or "0 seconds"


COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "eq": ("=", operator.eq),
    "ne": ("≠", operator.ne),
    "gt": (">", operator.gt),
    "gte": ("≥", operator.ge),
    "lt": ("<", operator.lt),
    "lte": ("≤", operator.le),
}
"""Each numeric comparison a condition may give: its symbol and its test (value, bound)."""


class _Equality(_Model):
    eq: float | None = None
    ne: float | None = None


class _Bounds(_Model):
    """Numeric bounds (gt, gte, lt, lte); all comparisons given (``bounds``) must hold. A model
    with more fields lists ``_Bounds`` first among its bases: its fields come last, as written in
    the language (a compiled definition holds the dump of its conditions; its hash is their order)."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @property
    def bounds(self) -> dict[str, float]:
        """The comparisons given, in ``COMPARISONS`` order."""
        given = {name: getattr(self, name) for name in COMPARISONS if name in type(self).model_fields}
        return {name: bound for name, bound in given.items() if bound is not None}

    def within(self, value: float) -> bool:
        return all(COMPARISONS[name][1](value, bound) for name, bound in self.bounds.items())


class Compare(_Bounds, _Equality):
    """A number compared: eq, ne, gt, gte, lt, lte (at least one)."""

    @model_validator(mode="after")
    def _some(self) -> Compare:
        if not self.bounds:
            raise ValueError("give at least one of eq, ne, gt, gte, lt, lte")
        return self

    def describe(self) -> str:
        return " and ".join(f"{COMPARISONS[name][0]} {bound:g}" for name, bound in self.bounds.items())


StepRef = Annotated[str, Field(pattern=STEP_ID)]
StepRefs = StepRef | Annotated[list[StepRef], Field(min_length=1, max_length=20)]


class _OneOf(_Model):
    """A condition of one field holding a value or a list of them (any of them), described as
    ``says`` and its values joined by "or" ("stage is mql or sql")."""

    says: ClassVar[str]

    @property
    def values(self) -> list[str]:
        (field,) = type(self).model_fields  # the condition's one field
        value = getattr(self, field)
        return list(value) if isinstance(value, list) else [value]


class _Engagement(_OneOf):
    """Engagement with the email of send steps (a list: of any of them); ``signals``: the message
    item's times that count as engaged."""

    signals: ClassVar[tuple[str, ...]]

    @property
    def steps(self) -> list[str]:
        return self.values


class Opened(_Engagement):
    opened: StepRefs
    says, signals = "opened", ("first_opened_at",)


class Clicked(_Engagement):
    clicked: StepRefs
    says, signals = "clicked", ("first_clicked_at",)


class OpenedOrClicked(_Engagement):
    opened_or_clicked: StepRefs
    says, signals = "opened or clicked", ("first_opened_at", "first_clicked_at")


class ScoreIs(_Model):
    score: Compare


class StageIs(_OneOf):
    stage: str | list[str]
    says = "stage is"

    @property
    def stages(self) -> list[str]:
        return self.values


class HasTag(_OneOf):
    tag: str = Field(min_length=1, max_length=64)
    says = "tagged"


class InSegment(_OneOf):
    segment: str = Field(pattern=SEGMENT)
    says = "in segment"


class HasConsent(_OneOf):
    consent: Literal["email", "sms"]
    says = "consented to"


class _AttributeTests(_Model):
    attribute: str = Field(pattern=NAME)
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    exists: bool | None = None
    contains: str | None = None


class AttributeIs(_Bounds, _AttributeTests):
    """A profile attribute tested: equals, in, exists, contains, gt, gte, lt, lte (at least one)."""

    @property
    def tests(self) -> dict[str, Any]:
        """The tests given, in the order of the fields."""
        given = {name: getattr(self, name) for name in type(self).model_fields if name != "attribute"}
        return {name: value for name, value in given.items() if value is not None}

    @model_validator(mode="after")
    def _one_test(self) -> AttributeIs:
        if not self.tests:
            raise ValueError("give a test: equals, in, exists, contains, gt, gte, lt or lte")
        return self


class Did(_Model):
    did: str = Field(pattern=EVENT_TYPE)
    within: Span | None = None
    at_least: int = Field(default=1, ge=1, le=1000)
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class All(_Model):
    all: list[Condition] = Field(min_length=1)


class Any_(_Model):
    any: list[Condition] = Field(min_length=1)


class Not(_Model):
    not_: Condition = Field(alias="not")


KINDS: dict[str, str] = {
    "opened": "opened",
    "clicked": "clicked",
    "opened_or_clicked": "opened_or_clicked",
    "score": "score",
    "stage": "stage",
    "tag": "tag",
    "segment": "segment",
    "consent": "consent",
    "attribute": "attribute",
    "did": "did",
    "all": "all",
    "any": "any",
    "not": "not",
    "not_": "not",
}


def one_key_tag(tags: Mapping[str, str]) -> Callable[[Any], str | None]:
    """The discriminator of a union of one-key models (conditions, journey steps): the tag of the
    one key of ``tags`` a mapping has (none or several: None, an error), or of a model's field."""

    def tag(value: Any) -> str | None:
        if isinstance(value, Mapping):
            found = [tags[k] for k in value if k in tags]
            return found[0] if len(found) == 1 else None
        return next((tag for field, tag in tags.items() if hasattr(value, field)), None)

    return tag


Condition = Annotated[
    Annotated[Opened, Tag("opened")]
    | Annotated[Clicked, Tag("clicked")]
    | Annotated[OpenedOrClicked, Tag("opened_or_clicked")]
    | Annotated[ScoreIs, Tag("score")]
    | Annotated[StageIs, Tag("stage")]
    | Annotated[HasTag, Tag("tag")]
    | Annotated[InSegment, Tag("segment")]
    | Annotated[HasConsent, Tag("consent")]
    | Annotated[AttributeIs, Tag("attribute")]
    | Annotated[Did, Tag("did")]
    | Annotated[All, Tag("all")]
    | Annotated[Any_, Tag("any")]
    | Annotated[Not, Tag("not")],
    Discriminator(
        one_key_tag(KINDS),
        custom_error_type="condition_kind",
        custom_error_message=(
            "a condition has exactly one of: opened, clicked, opened_or_clicked, score, stage, tag, "
            "segment, consent, attribute, did, all, any, not"
        ),
    ),
]
All.model_rebuild()
Any_.model_rebuild()
Not.model_rebuild()


def walk(condition: Condition) -> Iterator[Condition]:
    yield condition
    if isinstance(condition, All):
        for c in condition.all:
            yield from walk(c)
    elif isinstance(condition, Any_):
        for c in condition.any:
            yield from walk(c)
    elif isinstance(condition, Not):
        yield from walk(condition.not_)


def engagement_refs(condition: Condition) -> list[str]:
    """The send steps whose engagement the condition reads."""
    refs: list[str] = []
    for c in walk(condition):
        if isinstance(c, _Engagement):
            refs.extend(c.steps)
    return refs


def needs_events(condition: Condition) -> bool:
    return any(isinstance(c, Did) for c in walk(condition))


def describe(condition: Condition) -> str:
    """A short human description (state names, graphs)."""
    if isinstance(condition, _OneOf):
        return f"{condition.says} {' or '.join(condition.values)}"
    if isinstance(condition, ScoreIs):
        return f"score {condition.score.describe()}"
    if isinstance(condition, AttributeIs):
        tests = condition.tests.items()
        return f"{condition.attribute} " + " and ".join(f"{k.rstrip('_')} {v}" for k, v in tests)
    if isinstance(condition, Did):
        window = f" within {condition.within.describe()}" if condition.within else ""
        times = f" at least {condition.at_least} times" if condition.at_least > 1 else ""
        return f"did {condition.did}{times}{window}"
    if isinstance(condition, All):
        return " and ".join(f"({describe(c)})" for c in condition.all)
    if isinstance(condition, Any_):
        return " or ".join(f"({describe(c)})" for c in condition.any)
    assert isinstance(condition, Not)
    return f"not ({describe(condition.not_)})"


# --- evaluation --------------------------------------------------------------------------------


class Facts:
    """What a condition is evaluated against. ``engagement`` maps send step ids to the message
    item's first_opened_at/first_clicked_at; ``events`` yields the contact's events, newest first.

    ``score``: the contact's current (decayed) score; when given, ``score`` conditions use it
    instead of the profile's stored ``score``. ``counts``: how many events a ``did`` condition
    counts at ``now`` (the lead engine's activity counters); when given, ``did`` conditions use it
    instead of reading ``events``."""

    def __init__(
        self,
        *,
        profile: Mapping[str, Any],
        now: datetime,
        engagement: Callable[[str], Mapping[str, Any]] | None = None,
        events: Callable[[datetime | None], Sequence[Mapping[str, Any]]] | None = None,
        score: float | None = None,
        counts: Callable[[Did], int] | None = None,
    ) -> None:
        self.profile = profile
        self.now = now
        self.score = score
        self.counts = counts
        self._engagement = engagement or (lambda _step: {})
        self._events = events or (lambda _since: [])
        self._engagement_cache: dict[str, Mapping[str, Any]] = {}

    def engagement(self, step_id: str) -> Mapping[str, Any]:
        if step_id not in self._engagement_cache:
            self._engagement_cache[step_id] = self._engagement(step_id)
        return self._engagement_cache[step_id]

    def events_since(self, since: datetime | None) -> Sequence[Mapping[str, Any]]:
        return self._events(since)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, set | frozenset | list | tuple):
        return list(value)
    return [value]


def _attribute(condition: AttributeIs, profile: Mapping[str, Any]) -> bool:
    present = condition.attribute in profile and profile[condition.attribute] not in (None, "")
    value = profile.get(condition.attribute)
    if condition.exists is not None and present != condition.exists:
        return False
    if condition.equals is not None and not (present and _same(value, condition.equals)):
        return False
    if condition.in_ is not None and not (present and any(_same(value, v) for v in condition.in_)):
        return False
    if condition.contains is not None and not (
        present and any(condition.contains.lower() in str(v).lower() for v in _as_list(value))
    ):
        return False
    if condition.bounds:
        number = _number(value)
        if number is None or not condition.within(number):
            return False
    return True


def _same(value: Any, expected: Scalar) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected or str(value).lower() == str(expected).lower()
    if isinstance(expected, int | float):
        number = _number(value)
        return number is not None and number == float(expected)
    return str(value) == expected


def matches_where(properties: Mapping[str, Any], where: Mapping[str, Scalar | list[Scalar]]) -> bool:
    """Property equality filters: each key present and equal to the value (a list: any of them)."""
    for key, expected in where.items():
        allowed = expected if isinstance(expected, list) else [expected]
        if key not in properties or not any(_same(properties[key], a) for a in allowed):
            return False
    return True


def _before(value: Any, moment: datetime) -> bool:
    when = parse_iso(value)
    return when is not None and when < moment


def evaluate(condition: Condition, facts: Facts) -> bool:
    profile = facts.profile
    # a send step that did not run for this contact (another path) has no message: not engaged
    if isinstance(condition, _Engagement):
        return any(facts.engagement(step).get(time) for step in condition.steps for time in condition.signals)
    if isinstance(condition, ScoreIs):
        score = facts.score if facts.score is not None else _number(profile.get("score", 0))
        return score is not None and condition.score.within(score)
    if isinstance(condition, StageIs):
        return profile.get("stage") in condition.stages
    if isinstance(condition, HasTag):
        return condition.tag in _as_list(profile.get("tags"))
    if isinstance(condition, InSegment):
        return condition.segment in _as_list(profile.get("segments"))
    if isinstance(condition, HasConsent):
        return profile.get(f"consent_{condition.consent}") == "granted"
    if isinstance(condition, AttributeIs):
        return _attribute(condition, profile)
    if isinstance(condition, Did):
        if facts.counts is not None:
            return facts.counts(condition) >= condition.at_least
        since = facts.now - timedelta(seconds=condition.within.total_seconds) if condition.within else None
        count = sum(
            1
            for e in facts.events_since(since)
            if e.get("type") == condition.did
            and matches_where(e.get("properties") or {}, condition.where)
            and (since is None or not _before(e.get("occurred_at"), since))
        )
        return count >= condition.at_least
    if isinstance(condition, All):
        return all(evaluate(c, facts) for c in condition.all)
    if isinstance(condition, Any_):
        return any(evaluate(c, facts) for c in condition.any)
    assert isinstance(condition, Not)
    return not evaluate(condition.not_, facts)
