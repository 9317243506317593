"""When things may happen, in the contact's time zone: quiet hours, send windows, frequency caps
and ``wait_until``. Pure functions of "now" and the rules; all times are aware datetimes.

The frequency cap rule (``FrequencyCap``) is defined here, where it is applied: a journey's
settings and a broadcast both use it, and a broadcast must not load the journey model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadflow.kernel.errors import require_any

if TYPE_CHECKING:  # the rules come from the journey model, which callers of ``zone``/``week_key``
    # alone (broadcasts: the bulk and admin functions) do not load at cold start
    from leadflow.journeys.model import QuietHours, SendWindow, WaitUntil

UTC = ZoneInfo("UTC")
MAX_ADJUSTMENTS = 64


def zone(name: object, fallback: str) -> ZoneInfo:
    """The contact's time zone when it is a valid IANA name, else the journey's."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(fallback)


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def _in_quiet_hours(local: datetime, quiet: QuietHours) -> datetime | None:
    """The end of the quiet period ``local`` is in, or None."""
    from leadflow.journeys.model import parse_clock

    start, end = parse_clock(quiet.start), parse_clock(quiet.end)
    now = local.timetz().replace(tzinfo=None)
    if start <= end:  # e.g. 12:00-14:00
        return _at(local.date(), end, local.tzinfo) if start <= now < end else None  # type: ignore[arg-type]
    if now >= start:  # e.g. 21:00-08:00, evening part
        return _at(local.date() + timedelta(days=1), end, local.tzinfo)  # type: ignore[arg-type]
    if now < end:  # morning part
        return _at(local.date(), end, local.tzinfo)  # type: ignore[arg-type]
    return None


def _outside_window(local: datetime, window: SendWindow) -> datetime | None:
    """The next start of the window if ``local`` is outside it, or None."""
    from leadflow.journeys.model import WEEKDAYS, parse_clock

    start, end = parse_clock(window.start), parse_clock(window.end)
    tz = local.tzinfo
    now = local.timetz().replace(tzinfo=None)
    allowed = {WEEKDAYS.index(d) for d in window.weekdays}
    if local.weekday() in allowed and start <= now < end:
        return None
    day = local.date()
    if local.weekday() in allowed and now < start:
        return _at(day, start, tz)  # type: ignore[arg-type]
    for ahead in range(1, 8):
        candidate = day + timedelta(days=ahead)
        if candidate.weekday() in allowed:
            return _at(candidate, start, tz)  # type: ignore[arg-type]
    raise AssertionError("a send window has at least one weekday")


def week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


class FrequencyCap(BaseModel):
    """Marketing messages per contact across all journeys and broadcasts (per channel), counted per
    calendar day and ISO week in the contact's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_day: int | None = Field(default=None, ge=1, le=100)
    per_week: int | None = Field(default=None, ge=1, le=500)

    @model_validator(mode="after")
    def _some(self) -> FrequencyCap:
        return require_any(self, "per_day", "per_week", message="give per_day, per_week or both")


def next_send_time(
    now: datetime,
    tz: ZoneInfo,
    *,
    quiet: QuietHours | None,
    window: SendWindow | None,
    cap: FrequencyCap | None,
    sent_on_day: Callable[[str], int],
    sent_in_week: Callable[[str], int],
) -> datetime:
    """The earliest moment at or after ``now`` that is outside quiet hours, inside the send window
    and under the frequency cap (counted per calendar day and ISO week in the contact's zone)."""
    moment = now.astimezone(tz)
    for _ in range(MAX_ADJUSTMENTS):
        moved = False
        if window is not None and (later := _outside_window(moment, window)) is not None:
            moment, moved = later, True
        if quiet is not None and (later := _in_quiet_hours(moment, quiet)) is not None:
            moment, moved = later, True
        if cap is not None:
            day = moment.date()
            if cap.per_week is not None and sent_in_week(week_key(day)) >= cap.per_week:
                monday = day - timedelta(days=day.weekday()) + timedelta(days=7)
                moment, moved = _at(monday, time(0, 0), tz), True
            elif cap.per_day is not None and sent_on_day(day.isoformat()) >= cap.per_day:
                moment, moved = _at(day + timedelta(days=1), time(0, 0), tz), True
        if not moved:
            return moment.astimezone(UTC)
    return moment.astimezone(UTC)


def wait_until_time(now: datetime, tz: ZoneInfo, spec: WaitUntil, value: object) -> datetime:
    """When a ``wait_until`` step ends; never before ``now``. ``value``: the contact's
    ``attribute``, or the entry event's ``event_property`` (None for the other forms)."""
    from leadflow.journeys.model import WEEKDAYS, parse_clock

    local = now.astimezone(tz)
    if spec.at is not None:
        return max(spec.at, now).astimezone(UTC)
    if spec.attribute is not None or spec.event_property is not None:
        target = _parse_moment(value, tz)
        if target is None:
            return now.astimezone(UTC)  # no usable date: continue at once
        target = target + timedelta(seconds=spec.offset_seconds)
        if spec.time is not None:
            target = _at(target.astimezone(tz).date(), parse_clock(spec.time), tz)
        return max(target, now).astimezone(UTC)
    assert spec.time is not None
    clock = parse_clock(spec.time)
    allowed = {WEEKDAYS.index(d) for d in spec.weekdays} if spec.weekdays else set(range(7))
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        candidate = _at(day, clock, tz)
        if day.weekday() in allowed and candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("a weekday list is never empty")


def _parse_moment(value: object, tz: ZoneInfo) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            return _at(date.fromisoformat(text), time(0, 0), tz)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def rfc3339(moment: datetime) -> str:
    """The form Step Functions' TimestampPath accepts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
