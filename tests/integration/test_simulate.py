"""``leadflow journeys simulate`` over the shipped journeys: a generated, realistic history per
journey (trial users at odd times, some of whom use the awaited feature a day later, some buy,
some unsubscribe through their email's link, one is our own employee, one starts a second trial),
and the exact entries, paths and emails that history implies, worked out here from the history
itself: who does what when, and the contact's stable bucket for splits and holdouts (the
``bucket`` the runtime draws with, computed apart from the simulator).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadflow.journeys.compiler import bucket
from leadflow.local.simulate import SimulationError, read_events, simulate
from leadflow.local.system import ROOT
from leadflow.ops.cli import main

JOURNEYS = ROOT / "journeys"
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class History:
    events: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, at: datetime, kind: str, email: str, **properties: Any) -> None:
        self.events.append({"type": kind, "email": email, "properties": properties, "at": iso(at)})

    def consenting(self, email: str, source: str, **fields: Any) -> None:
        """A contact who granted email consent through ``source`` (with these other fields)."""
        self.contacts.append({"email": email, "consent_email": "granted", "consent_source": source, **fields})

    def write(self, folder: Path) -> tuple[Path, Path]:
        events = folder / "events.jsonl"
        # the file is not in time order: the simulator orders by "at"
        events.write_text("\n".join(json.dumps(e) for e in reversed(self.events)) + "\n")
        contacts = folder / "contacts.jsonl"
        contacts.write_text("\n".join(json.dumps(c) for c in self.contacts) + "\n")
        return events, contacts


# --- trial-nurture ---------------------------------------------------------------------------------

TRIAL_STARTS = [  # odd times, Monday to Thursday (UTC): inside and outside Berlin's quiet hours
    MONDAY + timedelta(hours=6, minutes=13, seconds=7.123),
    MONDAY + timedelta(hours=9, minutes=59, seconds=59.999),
    MONDAY + timedelta(hours=17, minutes=59, seconds=59.999),
    MONDAY + timedelta(days=1, hours=0, minutes=0, seconds=0.001),
    MONDAY + timedelta(days=1, hours=11, minutes=41),
    MONDAY + timedelta(days=1, hours=20, minutes=30, seconds=30),
    MONDAY + timedelta(days=2, hours=7, minutes=7, seconds=7.7),
    MONDAY + timedelta(days=2, hours=13, minutes=2),
    MONDAY + timedelta(days=3, hours=5, minutes=55, seconds=55.5),
    MONDAY + timedelta(days=3, hours=16, minutes=16, seconds=16.16),
]
EMPLOYEE = {0}
USES_REPORTS = {1, 2, 3, 4}  # a day and six hours after starting: the wait_for's event path
USES_DASHBOARDS = {5}  # uses the product, but not the awaited feature
PURCHASES = {2: 3 * DAY, 7: 2 * DAY}  # 2 after the reports (in the 4-day wait), 7 while waiting
UNSUBSCRIBES = {8: 26 * HOUR}  # through the unsubscribe link of the welcome email
PRICING = {3: 4 * DAY, 6: 5 * DAY}  # hot leads at the branch
OPENS_WELCOME = {1, 9}
SECOND_TRIAL = {4: 2 * DAY}  # still in the journey: not entered again


BERLIN = ZoneInfo("Europe/Berlin")


def trial_send(at: datetime) -> tuple[datetime, str | None]:
    """When a trial-nurture email due at ``at`` goes out (Berlin: quiet 21:00-08:00, window Mon-Fri
    08:00-19:00) and what held it back: quiet hours are checked first."""
    local = at.astimezone(BERLIN)
    if local.weekday() < 5 and 8 <= local.hour < 19:
        return at, None
    reason = "quiet hours" if local.hour >= 21 or local.hour < 8 else "send window"
    day = local.date() + timedelta(days=0 if local.hour < 8 else 1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 8, tzinfo=BERLIN).astimezone(UTC), reason


def trial_deferrals(timed_out: list[int], last_call: list[int]) -> Counter[str]:
    """The deferrals of the welcome, tips and last-call emails, from the history's times."""
    found: Counter[str] = Counter()
    for n, start in enumerate(TRIAL_STARTS):
        if n in EMPLOYEE:
            continue
        welcome, reason = trial_send(start)
        found[reason] += 1
        branch_at = start + 30 * HOUR + 4 * DAY
        if n in timed_out:
            tips, reason = trial_send(welcome + 3 * DAY)
            found[reason] += 1
            branch_at = tips + 4 * DAY
        if n in last_call:
            found[trial_send(branch_at)[1]] += 1
    return Counter({f"deferred: {reason}": k for reason, k in found.items() if reason})


def trial_history() -> History:
    history = History()
    for n, start in enumerate(TRIAL_STARTS):
        email = f"trial-{n}@example.com"
        history.consenting(
            email,
            "trial sign-up form",
            first_name=f"Trial{n}",
            timezone="Europe/Berlin",
            tags=["employee"] if n in EMPLOYEE else [],
        )
        history.add(start, "trial_started", email, plan="trial")
        history.add(start + 2 * HOUR, "page_visit_noise", email, path="/docs")
        if n in USES_REPORTS:
            history.add(start + 30 * HOUR, "product_used", email, feature="reports")
        if n in USES_DASHBOARDS:
            history.add(start + 30 * HOUR, "product_used", email, feature="dashboards")
        if n in OPENS_WELCOME:
            history.add(start + 20 * HOUR, "email_opened", email, template="trial-welcome")
        if n in PURCHASES:
            history.add(start + PURCHASES[n], "purchase", email, plan="pro")
        if n in UNSUBSCRIBES:
            history.add(start + UNSUBSCRIBES[n], "unsubscribed", email)
        if n in PRICING:
            history.add(start + PRICING[n], "pricing_viewed", email)
        if n in SECOND_TRIAL:
            history.add(start + SECOND_TRIAL[n], "trial_started", email, plan="trial")
    # unsubscribed long ago: the exit rule ends the execution before its first step
    history.contacts.append(
        {"email": "gone@example.com", "consent_email": "revoked", "timezone": "Europe/Berlin"}
    )
    history.add(MONDAY + timedelta(hours=12, minutes=34, seconds=56.789), "trial_started", "gone@example.com")
    return history


def test_trial_nurture_replays_to_exactly_what_the_history_implies(tmp_path: Path) -> None:
    events, contacts = trial_history().write(tmp_path)
    result = simulate(JOURNEYS / "trial-nurture.yaml", read_events(events), contacts.read_text())

    entered = [n for n in range(len(TRIAL_STARTS)) if n not in EMPLOYEE]
    assert result.entered == len(entered)
    assert result.not_entered == {
        "entry condition": len(EMPLOYEE),
        "exit rule": 1,
        "re-entry rule (already in the journey)": len(SECOND_TRIAL),
    }

    ids = {n: result.contacts[f"trial-{n}@example.com"].contact_id for n in entered}
    exited_waiting = {n for n in entered if n in UNSUBSCRIBES or (n in PURCHASES and n not in USES_REPORTS)}
    timed_out = [n for n in entered if n not in USES_REPORTS and n not in exited_waiting]
    split = {
        n: "reports tips"
        if bucket("split", "trial-nurture", "random_split_1", ids[n]) < 0.5
        else "snippet tips"
        for n in timed_out
    }
    at_branch = [n for n in entered if n not in exited_waiting and n not in PURCHASES]
    branch = {n: "hot" if n in PRICING else "engaged" if n in OPENS_WELCOME else "default" for n in at_branch}
    held = {n: bucket("holdout", "trial-nurture", "holdout_1", ids[n]) < 0.1 for n in at_branch}
    subject = {
        n: "discount subject"
        if bucket("split", "trial-nurture", "random_split_2", ids[n]) < 0.5
        else "personal subject"
        for n in at_branch
        if not held[n]
    }

    assert result.paths["first_report"]["counts"] == {
        "event": len(USES_REPORTS),
        "timeout": len(timed_out),
    }
    assert result.paths["random_split_1"]["counts"] == {
        "reports tips": sum(1 for p in split.values() if p == "reports tips"),
        "snippet tips": sum(1 for p in split.values() if p == "snippet tips"),
    }
    assert result.paths["branch_1"]["counts"] == {
        "hot": sum(1 for p in branch.values() if p == "hot"),
        "engaged": sum(1 for p in branch.values() if p == "engaged"),
        "default": sum(1 for p in branch.values() if p == "default"),
    }
    assert result.paths["holdout_1"]["counts"] == {
        "held out": sum(held.values()),
        "continued": len(held) - sum(held.values()),
    }
    assert result.paths["random_split_2"]["counts"] == {
        "discount subject": sum(1 for p in subject.values() if p == "discount subject"),
        "personal subject": sum(1 for p in subject.values() if p == "personal subject"),
    }
    expected_emails = Counter({"trial-welcome": len(entered)})
    expected_emails.update("trial-tips-a" if p == "reports tips" else "trial-tips-b" for p in split.values())
    expected_emails.update("trial-last-call" for p in branch.values() if p == "default")
    expected_emails.update("trial-offer" for n in at_branch if not held[n])
    assert result.emails == dict(sorted(expected_emails.items()))
    assert result.sms == {}
    assert result.exited == {"converted: purchase": len(PURCHASES), "unsubscribed": len(UNSUBSCRIBES)}

    # per contact: the path each one took, in order, and what each one received
    for n in entered:
        outcome = result.contacts[f"trial-{n}@example.com"]
        paths: list[tuple[str, str]] = []
        if n in USES_REPORTS:
            paths.append(("first_report", "event"))
        elif n in split:
            paths += [("first_report", "timeout"), ("random_split_1", split[n])]
        if n in branch:
            paths += [("branch_1", branch[n]), ("holdout_1", "held out" if held[n] else "continued")]
        if n in subject:
            paths.append(("random_split_2", subject[n]))
        assert outcome.paths == paths, n
        assert outcome.emails[0] == "trial-welcome"
        assert ("trial-offer" in outcome.emails) == (n in branch and not held[n]), n
    last_call = [n for n, path in branch.items() if path == "default"]
    assert result.skipped == dict(sorted(trial_deferrals(timed_out, last_call).items()))
    # sends happen in Berlin's send window (Mon-Fri 08:00-19:00): 07:00-17:59 UTC in January
    for day, hours in result.timing.items():
        assert day.split()[1] in {"Mon", "Tue", "Wed", "Thu", "Fri"}, day
        assert all(7 <= int(hour) <= 17 for hour in hours), (day, hours)
    assert sum(n for hours in result.timing.values() for n in hours.values()) == sum(expected_emails.values())
    assert result.state_transitions_per_contact > 0
    assert 0 < result.cost_usd_per_contact < 0.01
    assert result.ignored == []


# --- welcome ---------------------------------------------------------------------------------------


def test_welcome_branches_on_opens_of_the_welcome_email(tmp_path: Path) -> None:
    history = History()
    opened = {1, 3}
    clicked = {4}
    for n in range(6):
        email = f"reader-{n}@example.com"
        at = MONDAY + timedelta(hours=3 + 5 * n, minutes=n * 7, seconds=n + 0.25)
        history.events.append(
            {
                "type": "form_submitted",
                "email": email,
                "properties": {"form_id": "newsletter", "first_name": f"Reader{n}"},
                "at": iso(at),
            }
        )
        if n in opened:
            history.add(at + 23 * HOUR + 59 * timedelta(minutes=1), "email_opened", email, template="welcome")
        if n in clicked:
            history.add(at + 47 * HOUR, "email_clicked", email, template="welcome")
    # a form post for another form: not this journey's entry
    history.events.append(
        {
            "type": "form_submitted",
            "email": "paper@example.com",
            "properties": {"form_id": "whitepaper"},
            "at": iso(MONDAY + 2 * HOUR),
        }
    )
    events, _ = history.write(tmp_path)
    result = simulate(JOURNEYS / "welcome.yaml", read_events(events))
    engaged = len(opened | clicked)
    assert result.entered == 6
    assert result.not_entered == {}
    assert result.paths["branch_1"]["counts"] == {"then": engaged, "else": 6 - engaged}
    assert result.emails == {
        "welcome": 6,
        "welcome-followup-engaged": engaged,
        "welcome-followup-nudge": 6 - engaged,
    }
    for n in range(6):
        outcome = result.contacts[f"reader-{n}@example.com"]
        follow_up = "welcome-followup-engaged" if n in opened | clicked else "welcome-followup-nudge"
        assert outcome.emails == ["welcome", follow_up]
    assert result.exited == {}
    assert result.skipped == {}


# --- the command line ------------------------------------------------------------------------------


def test_cli_compare_names_the_contacts_whose_path_changes(tmp_path: Path, capsys: Any) -> None:
    history = History()
    for n, hours in enumerate((30, 40)):  # uses reports after 30 h and after 40 h
        email = f"cmp-{n}@example.com"
        start = MONDAY + timedelta(hours=8, minutes=17 * n)
        history.consenting(email, "form", timezone="Europe/Berlin")
        history.add(start, "trial_started", email)
        history.add(start + hours * HOUR, "product_used", email, feature="reports")
    events, contacts = history.write(tmp_path)
    old = tmp_path / "old.yaml"
    old.write_text(
        (JOURNEYS / "trial-nurture.yaml").read_text().replace("timeout: {days: 3}", "timeout: {days: 2}")
    )
    new = tmp_path / "new.yaml"
    new.write_text(
        (JOURNEYS / "trial-nurture.yaml").read_text().replace("timeout: {days: 3}", "timeout: {hours: 36}")
    )
    status = main(
        [
            "journeys",
            "simulate",
            str(new),
            "--events",
            str(events),
            "--contacts",
            str(contacts),
            "--compare",
            str(old),
            "--json",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out.strip().splitlines()
    document = json.loads(out[-1])
    # the 40-hour user reaches the event path with a 2-day timeout only
    assert document["old"]["paths"]["first_report"]["counts"] == {"event": 2, "timeout": 0}
    assert document["new"]["paths"]["first_report"]["counts"] == {"event": 1, "timeout": 1}
    assert list(document["changed"]) == ["cmp-1@example.com"]
    assert "contacts whose path or messages change: 1" in out


def test_a_history_line_that_cannot_be_replayed_is_named(tmp_path: Path, capsys: Any) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "trial_started", "email": "a@example.com", "at": "2026-01-05T10:00:00Z"}\n'
        '{"type": "stage_changed", "email": "a@example.com", "at": "2026-01-05T11:00:00Z"}\n'
    )
    with pytest.raises(SimulationError, match=r"events.jsonl:2: 'stage_changed' is recorded by leadflow"):
        read_events(events)
    events.write_text('{"type": "trial_started", "email": "a@example.com", "at": "2026-01-05T10:00:00"}\n')
    assert main(["journeys", "simulate", str(JOURNEYS / "welcome.yaml"), "--events", str(events)]) == 1
    assert "events.jsonl:1: 'at' needs a zone" in capsys.readouterr().err


# --- webinar ---------------------------------------------------------------------------------------

WEBINAR_STARTS = datetime(2026, 1, 8, 16, 0, tzinfo=UTC)  # Thursday, 17:00 in Berlin


def test_webinar_reminds_by_sms_and_follows_up_by_attendance(tmp_path: Path) -> None:
    history = History()
    attended = {0: timedelta(minutes=3, seconds=17), 2: timedelta(minutes=1), 3: timedelta(minutes=44)}
    attended[5] = -timedelta(hours=1, milliseconds=1)  # joined the lobby before the reminder went out
    unsubscribed = {7}
    clicks = {2: "webinar-thanks", 6: "webinar-missed"}
    registered_twice = {1}
    for n in range(8):
        email = f"guest-{n}@example.com"
        history.consenting(
            email, "webinar registration", first_name=f"Guest{n}", phone=f"+49151123456{n:02d}"
        )
        registered = MONDAY + timedelta(hours=7 + 9 * n, minutes=n * 11, seconds=n * 3.5)
        properties = {
            "webinar_title": "Attribution in 30 minutes",
            "starts_at": iso(WEBINAR_STARTS),
            "join_url": "https://example.com/webinars/attribution",
        }
        history.add(registered, "webinar_registered", email, **properties)
        if n in registered_twice:
            history.add(registered + 5 * HOUR, "webinar_registered", email, **properties)
        if n in unsubscribed:
            history.add(registered + 2 * HOUR, "unsubscribed", email)
        if n in attended:
            history.add(WEBINAR_STARTS + attended[n], "webinar_attended", email)
        if n in clicks:
            history.add(WEBINAR_STARTS + DAY + timedelta(hours=n), "email_clicked", email, template=clicks[n])
    events, contacts = history.write(tmp_path)
    result = simulate(JOURNEYS / "webinar.yaml", read_events(events), contacts.read_text())

    stayed = 8 - len(unsubscribed)
    assert result.entered == 8
    assert result.not_entered == {"re-entry rule (already in the journey)": len(registered_twice)}
    assert result.sms == {"webinar-reminder": stayed}
    assert result.emails == {
        "webinar-missed": stayed - len(attended),
        "webinar-registered": 8,
        "webinar-thanks": len(attended),
    }
    assert result.paths["attended"]["counts"] == {"event": len(attended), "timeout": stayed - len(attended)}
    assert result.paths["branch_1"]["counts"] == {"then": len(clicks), "else": stayed - len(clicks)}
    assert result.exited == {"unsubscribed": len(unsubscribed)}
    for n in range(8):
        outcome = result.contacts[f"guest-{n}@example.com"]
        if n in unsubscribed:
            assert (outcome.emails, outcome.sms, outcome.paths) == (["webinar-registered"], [], [])
            continue
        follow_up = "webinar-thanks" if n in attended else "webinar-missed"
        assert outcome.emails == ["webinar-registered", follow_up]
        assert outcome.sms == ["webinar-reminder"]
        assert outcome.paths == [
            ("attended", "event" if n in attended else "timeout"),
            ("branch_1", "then" if n in clicks else "else"),
        ]
    # the reminders an hour before (Thursday 15:00 UTC), with them the thanks of the guest who had
    # already joined; the other thanks when they join (16:xx), the recordings 4 hours on (19:xx)
    assert result.timing["2026-01-08 Thu"] == {
        "15": stayed + 1,
        "16": len(attended) - 1,
        "19": stayed - len(attended),
    }


# --- double opt-in -------------------------------------------------------------------------------


def test_double_opt_in_reminds_only_who_did_not_confirm_in_two_days(tmp_path: Path, capsys: Any) -> None:
    history = History()
    confirms = {0: timedelta(hours=3, minutes=2), 2: timedelta(hours=30, seconds=0.5), 3: timedelta(hours=50)}
    for n in range(5):
        email = f"paper-{n}@example.com"
        at = MONDAY + timedelta(hours=21 + 4 * n, minutes=59, seconds=59.999)
        history.events.append(
            {"type": "form_submitted", "email": email, "properties": {"form_id": "whitepaper"}, "at": iso(at)}
        )
        if n in confirms:
            history.add(at + confirms[n], "consent_confirmed", email)
    # the newsletter form has no double opt-in: not this journey's entry
    history.events.append(
        {
            "type": "form_submitted",
            "email": "news@example.com",
            "properties": {"form_id": "newsletter"},
            "at": iso(MONDAY + HOUR),
        }
    )
    events, _ = history.write(tmp_path)
    status = main(
        ["journeys", "simulate", str(JOURNEYS / "double-opt-in.yaml"), "--events", str(events), "--json"]
    )
    assert status == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    in_time = {n for n, after in confirms.items() if after < 2 * DAY}
    assert result["entered"] == 5
    assert result["not_entered"] == {}
    assert result["paths"]["confirmed"] == {
        "kind": "wait_for",
        "name": "consent_confirmed",  # no name: the awaited event
        "counts": {"event": len(in_time), "timeout": 5 - len(in_time)},
    }
    # the confirmation and the reminder share a template: one confirmation each, a reminder for the rest
    assert result["emails"] == {"confirm-subscription": 5 + 5 - len(in_time)}
    assert result["ignored"] == []
    # the human-readable report comes first
    assert out[0] == f"journey 'double-opt-in': {len(history.events)} events replayed"
    assert "  entered: 5    not entered: none" in out


# --- win-back ---------------------------------------------------------------------------------------


def test_win_back_enrolled_by_sales_sends_in_the_window_and_hands_clickers_back(tmp_path: Path) -> None:
    history = History()
    clicks = {1: timedelta(days=2, hours=5), 3: timedelta(days=6, hours=23, minutes=59)}
    deal_won = {2: timedelta(days=4)}
    enrolled_again = {0: timedelta(days=12)}  # after it completed: re-entry only after 180 days
    for n in range(5):
        email = f"lost-{n}@example.com"
        history.consenting(
            email,
            "customer contract",
            first_name=f"Lost{n}",
            company=f"Company {n}",
            timezone="Europe/Berlin",
        )
        at = MONDAY + timedelta(hours=23, minutes=59, seconds=59.999) + n * timedelta(hours=9, minutes=13)
        history.add(at, "journey_enrollment_requested", email)
        if n in clicks:
            history.add(at + clicks[n], "email_clicked", email, template="win-back")
        if n in deal_won:
            history.add(at + deal_won[n], "deal_won", email, amount=12000)
        if n in enrolled_again:
            history.add(at + enrolled_again[n], "journey_enrollment_requested", email)
    events, contacts = history.write(tmp_path)
    result = simulate(JOURNEYS / "win-back.yaml", read_events(events), contacts.read_text())
    assert result.entered == 5
    assert result.not_entered == {"re-entry rule": len(enrolled_again)}
    assert result.emails == {"win-back": 5}
    stayed = 5 - len(deal_won)
    assert result.paths["branch_1"]["counts"] == {"then": len(clicks), "else": stayed - len(clicks)}
    assert result.exited == {"converted: deal_won": len(deal_won)}
    # the window: Tuesday to Thursday, 09:00-17:00 in Berlin (08:00-15:59 UTC in January)
    assert {day.split()[1] for day in result.timing} <= {"Tue", "Wed", "Thu"}
    assert all(8 <= int(hour) <= 15 for hours in result.timing.values() for hour in hours)
    for n in range(5):
        outcome = result.contacts[f"lost-{n}@example.com"]
        assert outcome.emails == ["win-back"]
        expected = [] if n in deal_won else [("branch_1", "then" if n in clicks else "else")]
        assert outcome.paths == expected, n


# --- MQL hand-off --------------------------------------------------------------------------------


def test_mql_handoff_waits_for_sales_feedback_and_reminds_after_two_days(tmp_path: Path) -> None:
    history = History()
    feedback = {0: timedelta(days=1, hours=2, minutes=3), 1: timedelta(days=3)}  # 1: after the reminder
    for n in range(4):
        email = f"lead-{n}@example.com"
        fit = {"company_size": 200, "role": "decision_maker"} if n < 3 else {}  # lead-3: not a fit
        history.consenting(email, "form", attributes=fit)
        start = MONDAY + timedelta(hours=8, minutes=n * 17, seconds=n + 0.5)
        # whitepaper 20 + newsletter 10 + two webinars 15 each: the score crosses 50 at the second one
        history.events.append(
            {
                "type": "form_submitted",
                "email": email,
                "properties": {"form_id": "whitepaper"},
                "at": iso(start),
            }
        )
        history.events.append(
            {
                "type": "form_submitted",
                "email": email,
                "properties": {"form_id": "newsletter"},
                "at": iso(start + HOUR),
            }
        )
        history.add(start + 3 * HOUR, "webinar_attended", email)
        qualified = start + 2 * DAY + timedelta(hours=11, minutes=59, seconds=59.999)
        history.add(qualified, "webinar_attended", email)
        if n in feedback:
            history.add(qualified + feedback[n], "sales_feedback", email, outcome="accepted")
    events, contacts = history.write(tmp_path)
    result = simulate(JOURNEYS / "mql-handoff.yaml", read_events(events), contacts.read_text())
    in_time = {n for n, after in feedback.items() if after < 2 * DAY}
    assert result.entered == 3
    assert result.not_entered == {}
    assert result.paths["sales_follow_up"]["counts"] == {"event": len(in_time), "timeout": 3 - len(in_time)}
    assert (result.emails, result.sms, result.exited) == ({}, {}, {})
    assert "lead-3@example.com" not in result.contacts
    for n in range(3):
        expected = [("sales_follow_up", "event" if n in in_time else "timeout")]
        assert result.contacts[f"lead-{n}@example.com"].paths == expected


# --- a stage's own history (--from-stage): export, then replay ------------------------------------


def test_a_stage_history_exported_and_replayed_gives_what_the_stage_did(tmp_path: Path) -> None:
    """The local runtime stands in for a deployed stage (``leadflow-local-*`` tables): people sign
    up, open, unsubscribe and start trials on it; its history, exported read-only, replayed
    through the welcome journey, sends each contact exactly what the stage sent."""
    import re
    from urllib.parse import urlsplit

    from leadflow.local.history_export import export_history
    from leadflow.local.system import LocalSystem
    from leadflow.platform.tables import MESSAGES

    opened, unsubscribed = {0, 2}, {3}
    with LocalSystem(background_pump=False, clock_start=MONDAY.timestamp()) as stage:

        def post(path: str, body: dict[str, Any]) -> None:
            headers = {"content-type": "application/json"}
            if path.startswith("/admin/"):
                headers["authorization"] = f"Bearer {stage.admin_key}"
            reply = stage.invoke_http("POST", path, headers=headers, body=json.dumps(body))
            assert reply["statusCode"] in (201, 202), reply

        for n in range(5):
            stage.advance(2 * HOUR.total_seconds() + n * 97.25)
            post(
                "/forms/newsletter",
                {"email": f"live-{n}@example.com", "first_name": f"Live{n}", "consent": True},
            )
            stage.settle()
        stage.advance(DAY.total_seconds())
        post(  # a business event: from a server, through the admin route
            "/admin/events",
            {"type": "trial_started", "email": "live-1@example.com", "properties": {"plan": "trial"}},
        )
        for n in sorted(opened | unsubscribed):
            message = next(m for m in stage.outbox() if f"live-{n}@example.com" in m["to"])
            if n in opened:
                pixel = re.findall(r'src="([^"]+/t/o/[^"]+)"', message["html"])[0]
                stage.invoke_http("GET", urlsplit(pixel.replace("&amp;", "&")).path)
            else:
                link = re.findall(r"https?://\S+?(/unsubscribe/[A-Za-z0-9._~-]+)", message["text"])[0]
                stage.invoke_http("POST", link)
            stage.settle()
        stage.advance(3 * DAY.total_seconds())
        emails = {str(c["contact_id"]): str(c["email"]) for c in stage.contacts()}
        lived: dict[str, list[str]] = {}
        for message in sorted(stage._scan(MESSAGES.name), key=lambda m: str(m.get("finished_at"))):
            if message.get("journey_id") == "welcome" and message.get("status") == "sent":
                lived.setdefault(emails[str(message["contact_id"])], []).append(str(message["template"]))
        exported = export_history(stage.client("dynamodb"), "local", MONDAY)

    kinds = Counter(e["type"] for e in exported.events)
    assert kinds == {"form_submitted": 5, "trial_started": 1, "email_opened": 2, "unsubscribed": 1}
    assert all(
        e["properties"] == {"template": "welcome"} for e in exported.events if e["type"] == "email_opened"
    )
    assert [e["properties"] for e in exported.events if e["type"] == "trial_started"] == [{"plan": "trial"}]
    # consent was given inside the window (the forms): the replay gives it again
    assert sorted(c["email"] for c in exported.contacts) == [f"live-{n}@example.com" for n in range(5)]
    assert all("consent_email" not in c for c in exported.contacts)
    assert {c["first_name"] for c in exported.contacts} == {f"Live{n}" for n in range(5)}

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in exported.events))
    contacts = "".join(json.dumps(c) + "\n" for c in exported.contacts)
    replayed = simulate(JOURNEYS / "welcome.yaml", read_events(events), contacts)
    assert {email: outcome.emails for email, outcome in replayed.contacts.items()} == lived
    assert lived["live-0@example.com"] == ["welcome", "welcome-followup-engaged"]
    assert lived["live-1@example.com"] == ["welcome", "welcome-followup-nudge"]
    assert lived["live-3@example.com"] == ["welcome"]
    assert replayed.exited == {"unsubscribed": 1}


# --- on the running local system --------------------------------------------------------------------


def test_local_route_replays_the_running_systems_history_apart_from_it() -> None:
    """``POST /_local/journeys/{id}/simulate`` on ``make run``'s server: this system's own history
    (or an uploaded one) through the loaded (or an uploaded) journey, in a process of its own: the
    running system's clock, executions and outbox are left as they were."""
    from urllib.parse import urlencode

    from tests.e2e.conftest import local_site

    with local_site(background_pump=False) as site:
        for n in range(3):
            fields = {"email": f"web-{n}@example.com", "first_name": f"Web{n}", "consent": "on"}
            assert site.post_form("/forms/newsletter", urlencode(fields)).status == 303
        site.system.settle()
        outbox_before = len(site.outbox())
        clock_before = site.system.clock.now()

        reply = site.post_json("/_local/journeys/welcome/simulate", {})
        assert reply.status == 200, reply.body
        replayed = reply.json()
        assert replayed["result"]["entered"] == 3
        # nobody opened: every follow-up is the nudge, two days on (the simulation ran the clock on)
        assert replayed["result"]["emails"] == {"welcome": 3, "welcome-followup-nudge": 3}
        assert replayed["report"][0] == "journey 'welcome': 3 events replayed"
        assert len(site.outbox()) == outbox_before == 3
        assert site.system.clock.now() == clock_before

        journey = (JOURNEYS / "welcome.yaml").read_text().replace("days: 2", "days: 5")
        events = json.dumps(
            {
                "type": "form_submitted",
                "email": "x@example.com",
                "properties": {"form_id": "newsletter"},
                "at": "2026-01-05T10:00:00Z",
            }
        )
        reply = site.post_json("/_local/journeys/anything/simulate", {"journey": journey, "events": events})
        assert reply.status == 200, reply.body
        assert reply.json()["result"]["emails"] == {"welcome": 1, "welcome-followup-nudge": 1}

        reply = site.post_json("/_local/journeys/welcome/simulate", {"events": '{"type": "x"}'})
        assert reply.status == 400
        assert "'at' is required" in reply.json()["error"]
        assert site.post_json("/_local/journeys/nope/simulate", {}).status == 404
        assert site.post_json("/_local/journeys/welcome/simulate", ["events"]).status == 400
