"""Reports as terminal text and as server-side inline SVG charts (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from leadflow.reporting.reports import AttributionReport, DayFigures, JourneyReport, MessageReport

BAR = "#2563eb"
COLORS = {"sent": "#94a3b8", "opened": "#2563eb", "clicked": "#16a34a"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def journey_text(r: JourneyReport) -> str:
    lines = [
        f"journey {r.journey_id}: entered {r.entered}, active {r.active}, completed {r.completed}, "
        f"exited {r.exited}, held out {r.held_out}",
    ]
    lines += [f"  exited ({reason}): {n}" for reason, n in r.exited_by_reason.items()]
    lines.append("  funnel:")
    lines += [f"    {s.stage:<24} {s.contacts:>7}  {_pct(s.rate_of_entered)}" for s in r.funnel]
    lines.append("  steps:")
    for s in r.steps:
        reasons = ", ".join(f"{k} {v}" for k, v in s.skipped_by_reason.items())
        lines.append(
            f"    {s.step_id:<24} reached {s.reached}, sent {s.sent}, skipped {s.skipped} {reasons}".rstrip()
        )
    lift = r.lift
    ci = lift.difference_ci95
    lines.append(
        f"  lift ({lift.goal}): treated {lift.treated_conversions}/{lift.treated} ({_pct(lift.treated_rate)}), "
        f"held out {lift.held_out_conversions}/{lift.held_out} ({_pct(lift.held_out_rate)}), "
        f"difference {_pct(lift.difference)}"
        + (f" [95% CI {_pct(ci[0])} .. {_pct(ci[1])}]" if ci else "")
        + (" significant" if lift.significant else "")
    )
    lines.append(f"  revenue ({r.goal}): {r.revenue:.2f}")
    return "\n".join(lines)


def message_text(r: MessageReport) -> str:
    lines = [
        f"template {r.template}: sent {r.sent}, delivered {r.delivered} ({_pct(r.delivery_rate)}), "
        f"bounced {r.bounced}, complained {r.complained}, unsubscribed {r.unsubscribed}",
        f"  opens: human {r.unique_opens_human} unique / {r.opens_human} ({_pct(r.open_rate)}), "
        f"privacy proxy {r.unique_opens_privacy_proxy} / {r.opens_privacy_proxy}, scanner {r.opens_scanner}",
        f"  clicks: human {r.unique_clicks_human} unique / {r.clicks_human} ({_pct(r.click_rate)}, "
        f"CTOR {_pct(r.click_to_open_rate)}), scanner {r.clicks_scanner}",
    ]
    lines += [f"    {link.unique_clicks:>5} / {link.clicks:<5} {link.url}" for link in r.links]
    return "\n".join(lines)


def attribution_text(r: AttributionReport) -> str:
    lines = ["channel     contacts(first)  conv first  revenue first  conv last  revenue last"]
    for c in r.channels:
        lines.append(
            f"{c.channel:<11} {c.contacts_first_touch:>15} {c.conversions_first_touch:>11} "
            f"{c.revenue_first_touch:>14.2f} {c.conversions_last_touch:>10} {c.revenue_last_touch:>13.2f}"
        )
    lines += [
        f"journey {j.journey_id}: {j.conversions} conversions, revenue {j.revenue:.2f}" for j in r.journeys
    ]
    return "\n".join(lines)


# --- SVG -------------------------------------------------------------------------------------------


def bars_svg(title: str, rows: Sequence[tuple[str, float]], *, width: int = 520, money: bool = False) -> str:
    """Horizontal bars, one per (label, value)."""
    top = max((v for _, v in rows), default=0) or 1
    height = 30 + 26 * len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><text x="0" y="16" font-weight="bold" font-size="13">{escape(title)}</text>'
    ]
    for i, (label, value) in enumerate(rows):
        y = 28 + 26 * i
        w = int((width - 230) * value / top)
        shown = f"{value:,.2f}" if money else f"{value:,.0f}"
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{escape(label)}</text>'
            f'<rect x="150" y="{y}" width="{w}" height="18" fill="{BAR}" rx="2"/>'
            f'<text x="{156 + w}" y="{y + 14}" font-size="12">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def funnel_svg(r: JourneyReport) -> str:
    return bars_svg(f"Funnel of journey {r.journey_id}", [(s.stage, s.contacts) for s in r.funnel])


def daily_svg(days: Sequence[DayFigures], *, width: int = 640, height: int = 200) -> str:
    """Grouped columns per day: email sends, human opens, human clicks."""
    top = max((max(d.email_sent, d.opened, d.clicked) for d in days), default=0) or 1
    plot = height - 50
    slot = (width - 40) / max(1, len(days))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="Daily sends, opens and clicks"><text x="0" y="14" font-weight="bold" font-size="13">'
        "Daily email sends, human opens, human clicks</text>"
    ]
    for i, d in enumerate(days):
        x0 = 30 + i * slot
        for j, (name, value) in enumerate(
            (("sent", d.email_sent), ("opened", d.opened), ("clicked", d.clicked))
        ):
            h = plot * value / top
            parts.append(
                f'<rect x="{x0 + j * slot / 4:.1f}" y="{20 + plot - h:.1f}" width="{slot / 4 - 1:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[name]}"><title>{d.day} {name}: {value}</title></rect>'
            )
        parts.append(f'<text x="{x0:.1f}" y="{height - 16}" font-size="9">{d.day[5:]}</text>')
    legend = "".join(
        f'<rect x="{30 + k * 90}" y="{height - 10}" width="10" height="8" fill="{c}"/>'
        f'<text x="{44 + k * 90}" y="{height - 2}" font-size="10">{n}</text>'
        for k, (n, c) in enumerate(COLORS.items())
    )
    parts.append(legend + "</svg>")
    return "".join(parts)


def attribution_svg(r: AttributionReport) -> str:
    return bars_svg(
        "Revenue by last-touch channel", [(c.channel, c.revenue_last_touch) for c in r.channels], money=True
    ) + bars_svg("Contacts by first-touch channel", [(c.channel, c.contacts_first_touch) for c in r.channels])
