"""Reports built from the counter items: typed models (the admin API's responses) and the reader.

Every report reads a fixed number of items — one per journey, template or the attribution item,
plus one BatchGetItem for a day series — whatever the number of contacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, Field

from leadflow.reporting.classify import CHANNELS
from leadflow.reporting.stats import newcombe, wilson
from leadflow.reporting.store import COUNTS, ReportTable, rkeys


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _int(counts: Mapping[str, Any], name: str) -> int:
    return int(counts.get(name, 0) or 0)


def _prefixed(counts: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}


class StepFigures(BaseModel):
    step_id: str
    reached: int
    sent: int
    skipped: int
    skipped_by_reason: dict[str, int]


class FunnelStage(BaseModel):
    stage: str
    contacts: int
    rate_of_entered: float | None


class Lift(BaseModel):
    """Conversion of treated vs held-out contacts: difference of proportions with a 95% interval
    (Newcombe's hybrid score method from Wilson intervals)."""

    goal: str
    treated: int
    treated_conversions: int
    treated_rate: float | None
    treated_ci95: tuple[float, float] | None
    held_out: int
    held_out_conversions: int
    held_out_rate: float | None
    held_out_ci95: tuple[float, float] | None
    difference: float | None
    difference_ci95: tuple[float, float] | None
    relative_lift: float | None
    significant: bool


class JourneyReport(BaseModel):
    journey_id: str
    goal: str
    entered: int
    active: int
    completed: int
    exited: int
    exited_by_reason: dict[str, int]
    held_out: int
    steps: list[StepFigures]
    funnel: list[FunnelStage]
    conversions: int
    revenue: float
    delivered: int
    bounced: int
    complained: int
    unsubscribed: int
    lift: Lift


class LinkFigures(BaseModel):
    url: str
    clicks: int
    unique_clicks: int
    scanner_clicks: int


class MessageReport(BaseModel):
    template: str
    sent: int
    skipped: int
    delivered: int
    bounced: int
    complained: int
    unsubscribed: int
    opens_human: int = Field(description="Opens by people, incl. Gmail's image proxy.")
    unique_opens_human: int
    opens_privacy_proxy: int = Field(description="Apple Mail Privacy Protection prefetches.")
    unique_opens_privacy_proxy: int
    opens_scanner: int
    clicks_human: int
    unique_clicks_human: int
    clicks_scanner: int
    unique_clicks_scanner: int
    links: list[LinkFigures]
    delivery_rate: float | None
    open_rate: float | None = Field(description="Unique human opens / delivered (sent if no delivery data).")
    click_rate: float | None
    click_to_open_rate: float | None
    bounce_rate: float | None
    complaint_rate: float | None
    unsubscribe_rate: float | None


class ChannelFigures(BaseModel):
    channel: str
    contacts_first_touch: int
    conversions_first_touch: int
    revenue_first_touch: float
    conversions_last_touch: int
    revenue_last_touch: float


class JourneyRevenue(BaseModel):
    journey_id: str
    conversions: int
    revenue: float


class AttributionReport(BaseModel):
    channels: list[ChannelFigures]
    journeys: list[JourneyRevenue]
    conversions_by_goal: dict[str, int]
    revenue_by_goal: dict[str, float]


class DayFigures(BaseModel):
    day: str
    email_sent: int
    sms_sent: int
    opened: int
    clicked: int


def lift(goal: str, counts: Mapping[str, Any]) -> Lift:
    held = _int(counts, "held_out")
    treated = max(0, _int(counts, "entered") - held)
    x1, x2 = _int(counts, f"goal.{goal}.treated"), _int(counts, f"goal.{goal}.held_out")
    p1, p2 = _rate(x1, treated), _rate(x2, held)
    both = treated > 0 and held > 0
    interval = newcombe(x1, treated, x2, held) if both else None
    return Lift(
        goal=goal,
        treated=treated,
        treated_conversions=x1,
        treated_rate=p1,
        treated_ci95=_round2(wilson(x1, treated)) if treated else None,
        held_out=held,
        held_out_conversions=x2,
        held_out_rate=p2,
        held_out_ci95=_round2(wilson(x2, held)) if held else None,
        difference=round(x1 / treated - x2 / held, 4) if both else None,
        difference_ci95=_round2(interval) if interval else None,
        relative_lift=round((x1 / treated) / (x2 / held) - 1, 4) if both and x2 else None,
        significant=bool(interval and (interval[0] > 0 or interval[1] < 0)),
    )


def _round2(pair: tuple[float, float]) -> tuple[float, float]:
    return round(pair[0], 4), round(pair[1], 4)


def journey_report(journey_id: str, counts: Mapping[str, Any], goal: str) -> JourneyReport:
    entered, held = _int(counts, "entered"), _int(counts, "held_out")
    completed, exited = _int(counts, "completed"), _int(counts, "exited")
    steps: dict[str, dict[str, Any]] = {}
    for name, value in _prefixed(counts, "step.").items():
        step, _, rest = name.partition(".")
        figures = steps.setdefault(step, {"sent": 0, "skipped": 0, "reasons": {}})
        if rest in ("sent", "skipped"):
            figures[rest] = int(value)
        elif rest.startswith("skip."):
            figures["reasons"][rest[5:]] = int(value)
    converted = _int(counts, f"goal.{goal}.treated") + _int(counts, f"goal.{goal}.held_out")
    funnel = [
        ("entered", entered),
        ("sent", _int(counts, "funnel.sent")),
        ("opened", _int(counts, "funnel.opened")),
        ("clicked", _int(counts, "funnel.clicked")),
        (f"converted ({goal})", converted),
    ]
    return JourneyReport(
        journey_id=journey_id,
        goal=goal,
        entered=entered,
        active=max(0, entered - completed - exited - held),
        completed=completed,
        exited=exited,
        exited_by_reason={k: int(v) for k, v in sorted(_prefixed(counts, "exit.").items())},
        held_out=held,
        steps=[
            StepFigures(
                step_id=step,
                reached=f["sent"] + f["skipped"],
                sent=f["sent"],
                skipped=f["skipped"],
                skipped_by_reason=dict(sorted(f["reasons"].items())),
            )
            for step, f in sorted(steps.items())
        ],
        funnel=[FunnelStage(stage=s, contacts=n, rate_of_entered=_rate(n, entered)) for s, n in funnel],
        conversions=converted,
        revenue=round(float(counts.get(f"goal.{goal}.revenue", 0) or 0), 2),
        delivered=_int(counts, "delivered"),
        bounced=_int(counts, "bounced"),
        complained=_int(counts, "complained"),
        unsubscribed=_int(counts, "unsubscribed"),
        lift=lift(goal, counts),
    )


def message_report(template: str, counts: Mapping[str, Any]) -> MessageReport:
    sent, delivered = _int(counts, "sent"), _int(counts, "delivered")
    base = delivered or sent
    unique_opens = _int(counts, "open.human.unique")
    unique_clicks = _int(counts, "click.human.unique")
    links = []
    for name, url in sorted(_prefixed(counts, "linkurl.").items(), key=lambda kv: str(kv[1])):
        links.append(
            LinkFigures(
                url=str(url),
                clicks=_int(counts, f"link.{name}.human"),
                unique_clicks=_int(counts, f"link.{name}.unique"),
                scanner_clicks=_int(counts, f"link.{name}.scanner"),
            )
        )
    return MessageReport(
        template=template,
        sent=sent,
        skipped=_int(counts, "skipped"),
        delivered=delivered,
        bounced=_int(counts, "bounced"),
        complained=_int(counts, "complained"),
        unsubscribed=_int(counts, "unsubscribed"),
        opens_human=_int(counts, "open.human.total"),
        unique_opens_human=unique_opens,
        opens_privacy_proxy=_int(counts, "open.privacy_proxy.total"),
        unique_opens_privacy_proxy=_int(counts, "open.privacy_proxy.unique"),
        opens_scanner=_int(counts, "open.scanner.total"),
        clicks_human=_int(counts, "click.human.total"),
        unique_clicks_human=unique_clicks,
        clicks_scanner=_int(counts, "click.scanner.total"),
        unique_clicks_scanner=_int(counts, "click.scanner.unique"),
        links=links,
        delivery_rate=_rate(delivered, sent) if delivered else None,
        open_rate=_rate(unique_opens, base),
        click_rate=_rate(unique_clicks, base),
        click_to_open_rate=_rate(unique_clicks, unique_opens),
        bounce_rate=_rate(_int(counts, "bounced"), sent),
        complaint_rate=_rate(_int(counts, "complained"), base),
        unsubscribe_rate=_rate(_int(counts, "unsubscribed"), base),
    )


def attribution_report(counts: Mapping[str, Any]) -> AttributionReport:
    channels = []
    for channel in CHANNELS:
        channels.append(
            ChannelFigures(
                channel=channel,
                contacts_first_touch=_int(counts, f"first.{channel}.contacts"),
                conversions_first_touch=_int(counts, f"first.{channel}.conversions"),
                revenue_first_touch=round(float(counts.get(f"first.{channel}.revenue", 0) or 0), 2),
                conversions_last_touch=_int(counts, f"last.{channel}.conversions"),
                revenue_last_touch=round(float(counts.get(f"last.{channel}.revenue", 0) or 0), 2),
            )
        )
    journeys: dict[str, dict[str, float]] = {}
    for name, value in _prefixed(counts, "journey.").items():
        journey_id, _, what = name.rpartition(".")
        journeys.setdefault(journey_id, {"conversions": 0, "revenue": 0.0})[what] = float(value)
    goals = _prefixed(counts, "goal.")
    return AttributionReport(
        channels=channels,
        journeys=[
            JourneyRevenue(journey_id=j, conversions=int(v["conversions"]), revenue=round(v["revenue"], 2))
            for j, v in sorted(journeys.items())
        ],
        conversions_by_goal={
            k[: -len(".conversions")]: int(v) for k, v in goals.items() if k.endswith(".conversions")
        },
        revenue_by_goal={
            k[: -len(".revenue")]: round(float(v), 2) for k, v in goals.items() if k.endswith(".revenue")
        },
    )


class ReportReader:
    """Builds reports: one read per report (a BatchGetItem for a day series)."""

    def __init__(self, table: ReportTable, goals: Sequence[str]) -> None:
        self._table = table
        self.goals = tuple(goals)

    def journey(self, journey_id: str, goal: str | None = None) -> JourneyReport:
        counts = self._table.get(rkeys.journey(journey_id)) or {}
        return journey_report(journey_id, counts, goal or self.goals[0])

    def message(self, template: str) -> MessageReport:
        return message_report(template, self._table.get(rkeys.template(template)) or {})

    def attribution(self) -> AttributionReport:
        return attribution_report(self._table.get(rkeys.ATTRIBUTION) or {})

    def days(self, last: date, n: int = 14) -> list[DayFigures]:
        wanted = [(last - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]
        found = self._table.get_many((rkeys.day(d), COUNTS) for d in wanted)
        out = []
        for d in wanted:
            c = found.get((rkeys.day(d), COUNTS), {})
            out.append(
                DayFigures(
                    day=d,
                    email_sent=_int(c, "email.sent"),
                    sms_sent=_int(c, "sms.sent"),
                    opened=_int(c, "email.opened"),
                    clicked=_int(c, "email.clicked"),
                )
            )
        return out
