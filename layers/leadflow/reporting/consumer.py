"""The ``report`` stream consumer: every event updates the reporting counters exactly once.

Per event it reads at most a few state items (the message, the contact's touches and journey
memberships), then commits all counter increments and state changes in one transaction with the
marker ``REPORT#<event id>`` (``IdempotencyMarks``): a replayed stream batch changes no counter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from leadflow.events.model import Event
from leadflow.events.store import IdempotencyMarks
from leadflow.kernel.clock import parse_iso
from leadflow.kernel.observability import logger, metrics
from leadflow.platform.dynamo import Transaction, commit_once
from leadflow.reporting.classify import (
    Channel,
    classify_click,
    classify_open,
    classify_touch,
    is_internal,
)
from leadflow.reporting.store import COUNTS, STATE, TOUCH, Changes, ReportTable, link_key, rkeys

DEFAULT_GOALS = ("purchase", "deal_won")
MAX_TRANSACTION_ITEMS = 100


def revenue_of(event: Event) -> float:
    """``revenue`` or ``amount`` of a conversion event (a number or a numeric string), else 0."""
    for name in ("revenue", "amount"):
        value = event.properties.get(name)
        if isinstance(value, bool) or value is None:
            continue
        try:
            return round(float(value), 2)
        except (TypeError, ValueError):
            continue
    return 0.0


def _seconds(later: str | None, earlier: Any) -> float | None:
    a, b = parse_iso(later), parse_iso(earlier)
    return None if a is None or b is None else (a - b).total_seconds()


def _base_step(step_id: Any) -> str:
    return str(step_id or "unknown").split("@", 1)[0]


class _Work:
    """One event's reads (cached) and changes."""

    def __init__(self, table: ReportTable) -> None:
        self.table = table
        self.changes = Changes()
        self._state: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._dirty: set[tuple[str, str]] = set()

    def state(self, pk: str, sk: str) -> dict[str, Any] | None:
        if (pk, sk) not in self._state:
            self._state[(pk, sk)] = self.table.get(pk, sk)
        return self._state[(pk, sk)]

    def preload(self, pk: str, sk: str, item: dict[str, Any]) -> None:
        self._state.setdefault((pk, sk), item)

    def write(self, pk: str, sk: str, item: dict[str, Any]) -> None:
        self._state[(pk, sk)] = item
        self._dirty.add((pk, sk))

    def flush(self) -> Changes:
        expires = self.table.expires_at()
        for pk, sk in self._dirty:
            item = self._state[(pk, sk)]
            assert item is not None
            self.changes.put(pk, sk, {**item, "expires_at": expires})
        return self.changes


class ReportService:
    def __init__(
        self,
        *,
        table: ReportTable,
        marks: IdempotencyMarks,
        transact: Callable[[Transaction], None],
        goals: Sequence[str] = DEFAULT_GOALS,
    ) -> None:
        self._table = table
        self._marks = marks
        self._transact = transact
        self._goals = tuple(goals)

    # --- entry point -----------------------------------------------------------------------------

    def apply(self, event: Event) -> str:
        """Count one event. Returns what happened: counted, duplicate or ignored."""
        work = _Work(self._table)
        self.collect(event, work)
        changes = work.flush()
        if changes.empty:
            return "ignored"
        txn = Transaction()
        txn.add(self._marks.put_op("REPORT", event.event_id), "marker")
        txn.extend(changes.ops(self._table.name), "changes")
        if len(txn.items) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"event {event.event_id} changes more than {MAX_TRANSACTION_ITEMS - 1} items")
        if not commit_once(self._transact, txn, "marker"):
            metrics.add_metric(name="DuplicateReportRecords", unit="Count", value=1)
            return "duplicate"
        return "counted"

    def collect(self, event: Event, work: _Work) -> None:
        """Everything the event changes, into ``work`` (no write)."""
        if event.contact_id and event.visitor_id:
            self._link(event.visitor_id, event.contact_id, work)
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event, work)
        if event.type in self._goals and event.contact_id:
            self._conversion(event, work)

    # --- journeys --------------------------------------------------------------------------------

    def _on_journey_entered(self, event: Event, work: _Work) -> None:
        if not (event.journey_id and event.contact_id):
            return
        work.changes.add(rkeys.journey(event.journey_id), "entered")
        work.write(
            rkeys.contact_state(event.contact_id),
            rkeys.membership(event.journey_id),
            {
                "journey_id": event.journey_id,
                "entered_at": event.occurred_at,
                "held_out": False,
                "converted": [],
            },
        )

    def _on_journey_completed(self, event: Event, work: _Work) -> None:
        if event.journey_id:
            work.changes.add(rkeys.journey(event.journey_id), "completed")

    def _on_journey_exited(self, event: Event, work: _Work) -> None:
        if event.journey_id:
            reason = str(event.properties.get("reason") or "exit rule")[:100]
            work.changes.add(rkeys.journey(event.journey_id), "exited")
            work.changes.add(rkeys.journey(event.journey_id), f"exit.{reason}")

    def _on_journey_held_out(self, event: Event, work: _Work) -> None:
        if not (event.journey_id and event.contact_id):
            return
        pk = rkeys.journey(event.journey_id)
        work.changes.add(pk, "held_out")
        membership = self._membership(event.contact_id, event.journey_id, work)
        if membership is None:
            return
        for goal in membership.get("converted") or []:
            work.changes.add(pk, f"goal.{goal}.treated", -1)
            work.changes.add(pk, f"goal.{goal}.held_out", 1)
        work.write(
            rkeys.contact_state(event.contact_id),
            rkeys.membership(event.journey_id),
            {**membership, "held_out": True},
        )

    def _membership(self, contact_id: str, journey_id: str | None, work: _Work) -> dict[str, Any] | None:
        if not journey_id:
            return None
        return work.state(rkeys.contact_state(contact_id), rkeys.membership(journey_id))

    def _funnel(self, contact_id: str | None, journey_id: str | None, stage: str, work: _Work) -> None:
        """Count the contact once per journey entry at a funnel stage (sent, opened, clicked)."""
        if not contact_id or not journey_id:
            return
        membership = self._membership(contact_id, journey_id, work)
        if membership is None or membership.get(stage):
            return
        work.changes.add(rkeys.journey(journey_id), f"funnel.{stage}")
        work.write(rkeys.contact_state(contact_id), rkeys.membership(journey_id), {**membership, stage: True})

    # --- messages --------------------------------------------------------------------------------

    def _sent(self, event: Event, work: _Work, channel: str) -> None:
        template = str(event.properties.get("template") or "unknown")
        step = _base_step(event.properties.get("step_id"))
        day = event.occurred_at[:10]
        work.changes.add(rkeys.template(template), "sent")
        work.changes.add(rkeys.day(day), f"{channel}.sent")
        if event.journey_id:
            work.changes.add(rkeys.journey(event.journey_id), f"step.{step}.sent")
            self._funnel(event.contact_id, event.journey_id, "sent", work)
        if event.message_id:
            work.write(
                rkeys.message_state(event.message_id),
                STATE,
                {
                    "template": template,
                    "journey_id": event.journey_id,
                    "step_id": step,
                    "contact_id": event.contact_id,
                    "channel": channel,
                    "sent_at": event.occurred_at,
                    "opened": [],
                    "human_clicks": 0,
                    "scanner_clicks": 0,
                    "links": {},
                },
            )

    def _on_email_sent(self, event: Event, work: _Work) -> None:
        self._sent(event, work, "email")

    def _on_sms_sent(self, event: Event, work: _Work) -> None:
        self._sent(event, work, "sms")

    def _skipped(self, event: Event, work: _Work) -> None:
        template = str(event.properties.get("template") or "unknown")
        reason = str(event.properties.get("reason") or "unknown")[:100]
        work.changes.add(rkeys.template(template), "skipped")
        if event.journey_id:
            step = _base_step(event.properties.get("step_id"))
            work.changes.add(rkeys.journey(event.journey_id), f"step.{step}.skipped")
            work.changes.add(rkeys.journey(event.journey_id), f"step.{step}.skip.{reason}")

    _on_email_skipped = _skipped
    _on_sms_skipped = _skipped

    def _message(self, event: Event, work: _Work) -> dict[str, Any] | None:
        if not event.message_id:
            return None
        return work.state(rkeys.message_state(event.message_id), STATE)

    def _feedback(self, event: Event, work: _Work, counter: str) -> None:
        message = self._message(event, work)
        if message is None:
            return
        work.changes.add(rkeys.template(str(message["template"])), counter)
        if message.get("journey_id"):
            work.changes.add(rkeys.journey(str(message["journey_id"])), counter)

    def _on_email_delivered(self, event: Event, work: _Work) -> None:
        self._feedback(event, work, "delivered")

    def _on_email_bounced(self, event: Event, work: _Work) -> None:
        self._feedback(event, work, "bounced")

    def _on_email_complained(self, event: Event, work: _Work) -> None:
        self._feedback(event, work, "complained")

    def _on_unsubscribed(self, event: Event, work: _Work) -> None:
        self._feedback(event, work, "unsubscribed")

    def _on_email_opened(self, event: Event, work: _Work) -> None:
        message = self._message(event, work)
        if message is None:
            return
        assert event.message_id is not None
        kind = classify_open(
            event.properties.get("user_agent"),
            event.properties.get("ip"),
            _seconds(event.occurred_at, message.get("sent_at")),
        )
        pk = rkeys.template(str(message["template"]))
        work.changes.add(pk, f"open.{kind}.total")
        opened = list(message.get("opened") or [])
        if kind not in opened:
            work.changes.add(pk, f"open.{kind}.unique")
            opened.append(kind)
            work.write(rkeys.message_state(event.message_id), STATE, {**message, "opened": opened})
        if kind == "human":
            work.changes.add(rkeys.day(event.occurred_at[:10]), "email.opened")
            self._funnel(message.get("contact_id"), message.get("journey_id"), "opened", work)

    def _on_email_clicked(self, event: Event, work: _Work) -> None:
        message = self._message(event, work)
        if message is None:
            return
        assert event.message_id is not None
        url = str(event.properties.get("url") or "")
        link = link_key(url)
        previous = message.get("last_click_link")
        since_other = (
            _seconds(event.occurred_at, message.get("last_click_at"))
            if previous not in (None, link)
            else None
        )
        kind = classify_click(
            event.properties.get("user_agent"),
            _seconds(event.occurred_at, message.get("sent_at")),
            other_link_seconds_before=since_other,
        )
        pk = rkeys.template(str(message["template"]))
        work.changes.add(pk, f"click.{kind}.total")
        work.changes.add(pk, f"link.{link}.{kind}")
        work.changes.set_once(pk, COUNTS, **{f"linkurl.{link}": url})
        links = dict(message.get("links") or {})
        state = {**message, "last_click_link": link, "last_click_at": event.occurred_at}
        if kind == "human":
            if not message.get("human_clicks"):
                work.changes.add(pk, "click.human.unique")
            if not links.get(link):
                work.changes.add(pk, f"link.{link}.unique")
            links[link] = int(links.get(link, 0)) + 1
            state |= {"human_clicks": int(message.get("human_clicks") or 0) + 1, "links": links}
            work.changes.add(rkeys.day(event.occurred_at[:10]), "email.clicked")
            self._funnel(message.get("contact_id"), message.get("journey_id"), "clicked", work)
            if event.contact_id:
                self._touch(
                    rkeys.contact_state(event.contact_id), "email", event.occurred_at, work, contact=True
                )
        else:
            if not message.get("scanner_clicks"):
                work.changes.add(pk, "click.scanner.unique")
            state["scanner_clicks"] = int(message.get("scanner_clicks") or 0) + 1
        work.write(rkeys.message_state(event.message_id), STATE, state)

    # --- attribution -----------------------------------------------------------------------------

    def _touch(self, pk: str, channel: Channel, at: str, work: _Work, *, contact: bool) -> None:
        current = work.state(pk, TOUCH)
        touch = dict(current or {})
        if "first" not in touch:
            touch |= {"first": channel, "first_at": at}
            if contact:
                work.changes.add(rkeys.ATTRIBUTION, f"first.{channel}.contacts")
        if channel != "direct" or "last" not in touch or touch.get("last") == "direct":
            touch |= {"last": channel, "last_at": at}
        work.write(pk, TOUCH, touch)

    def _on_page_viewed(self, event: Event, work: _Work) -> None:
        if not event.visitor_id or is_internal(event.properties):
            return
        channel = classify_touch(event.properties)
        visitor_pk = rkeys.visitor_state(event.visitor_id)
        self._touch(visitor_pk, channel, event.occurred_at, work, contact=False)
        visitor = work.state(visitor_pk, TOUCH) or {}
        contact_id = event.contact_id or visitor.get("contact_id")
        if contact_id:
            self._touch(rkeys.contact_state(str(contact_id)), channel, event.occurred_at, work, contact=True)

    def _link(self, visitor_id: str, contact_id: str, work: _Work) -> None:
        """The visitor became a contact: its touches become the contact's (earliest first touch,
        latest non-direct last touch)."""
        visitor_pk, contact_pk = rkeys.visitor_state(visitor_id), rkeys.contact_state(contact_id)
        visitor = work.state(visitor_pk, TOUCH)
        if visitor is None or visitor.get("contact_id") == contact_id:
            return
        work.write(visitor_pk, TOUCH, {**visitor, "contact_id": contact_id})
        contact = dict(work.state(contact_pk, TOUCH) or {})
        if "first" in visitor and ("first" not in contact or visitor["first_at"] < contact["first_at"]):
            if "first" in contact:
                work.changes.add(rkeys.ATTRIBUTION, f"first.{contact['first']}.contacts", -1)
            work.changes.add(rkeys.ATTRIBUTION, f"first.{visitor['first']}.contacts")
            contact |= {"first": visitor["first"], "first_at": visitor["first_at"]}
        if "last" in visitor:
            mine_direct = contact.get("last") in (None, "direct")
            theirs_direct = visitor["last"] == "direct"
            if (mine_direct and not theirs_direct) or (
                mine_direct == theirs_direct and visitor["last_at"] > contact.get("last_at", "")
            ):
                contact |= {"last": visitor["last"], "last_at": visitor["last_at"]}
        work.write(contact_pk, TOUCH, contact)

    def _conversion(self, event: Event, work: _Work) -> None:
        assert event.contact_id is not None
        revenue = revenue_of(event)
        goal = event.type
        touch = work.state(rkeys.contact_state(event.contact_id), TOUCH) or {}
        first, last = str(touch.get("first", "direct")), str(touch.get("last", "direct"))
        attr = rkeys.ATTRIBUTION
        work.changes.add(attr, f"goal.{goal}.conversions")
        work.changes.add(attr, f"goal.{goal}.revenue", revenue)
        for model, channel in (("first", first), ("last", last)):
            work.changes.add(attr, f"{model}.{channel}.conversions")
            work.changes.add(attr, f"{model}.{channel}.revenue", revenue)
        when = parse_iso(event.occurred_at)
        contact_pk = rkeys.contact_state(event.contact_id)
        for membership in self._table.query_state(contact_pk, "J#"):
            work.preload(contact_pk, str(membership["sk"]), membership)
            membership = work.state(contact_pk, str(membership["sk"])) or membership
            entered = parse_iso(membership.get("entered_at"))
            if when is None or entered is None or entered > when:
                continue
            journey_id = str(membership["journey_id"])
            pk = rkeys.journey(journey_id)
            work.changes.add(pk, f"goal.{goal}.revenue", revenue)
            work.changes.add(attr, f"journey.{journey_id}.revenue", revenue)
            work.changes.add(attr, f"journey.{journey_id}.conversions")
            converted = list(membership.get("converted") or [])
            if goal in converted:
                continue  # a contact converts once per journey entry; its revenue all counts
            group = "held_out" if membership.get("held_out") else "treated"
            work.changes.add(pk, f"goal.{goal}.{group}")
            work.write(contact_pk, str(membership["sk"]), {**membership, "converted": [*converted, goal]})
        logger.debug("conversion counted", extra={"event_id": event.event_id, "first": first, "last": last})
