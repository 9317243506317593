"""Journey bookkeeping in the contacts table, next to the profile it belongs to.

- Enrollment ``C#<contact>`` / ``J#<journey>``: whether the contact is in the journey now, how often
  it entered, when it left and why — the basis of re-entry rules and "at most one active
  execution per contact and journey". A pending exit (an exit event arrived during a wait) is
  recorded here and honoured before the next step.
- ``wait_for`` on the same item, race-free because both sides write it under conditions: the
  step registers ``waiting = {step_id, round, token, since}`` unless the awaited event was already
  seen at or after ``since``; ``trigger`` records ``seen_<step id>`` = the latest matching event's
  ``occurred_at`` and answers the registered token when ``since <= occurred_at``. Whichever writes
  second sees the other's write: the event is never missed and the token answered once.
  ``stopped_reason``: why trigger stopped the execution itself (an exit while it sat in a Wait),
  so operators' redrive leaves it alone.
- Frequency-cap counts ``C#<contact>`` / ``CAP#<channel>``: ONE item per contact and channel with
  the counts of the current day and week and the ids of the messages it counted (a retried step
  counts once), written by one conditional put on its version (one write unit per send).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from leadflow.events.model import Event
from leadflow.events.store import EventStore, event_history
from leadflow.kernel import ids
from leadflow.platform.dynamo import (
    DEFAULT_BACKOFF,
    Backoff,
    Transaction,
    TransactionCancelled,
    batch_get,
    get,
    is_conditional_failure,
    put_if,
    put_op,
    update_if,
    update_op,
    update_returning,
)
from leadflow.platform.tables import keys

CAP_TTL_SECONDS = 9 * 86400
CAP_ATTEMPTS = 5
TOKEN_GONE = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")
"""What Step Functions answers for a token whose task ended (timed out, answered, stopped)."""


def enrollment_key(contact_id: str, journey_id: str) -> dict[str, str]:
    return {"pk": keys.contact(contact_id), "sk": f"J#{journey_id}"}


def profile_key(contact_id: str) -> dict[str, str]:
    return {"pk": keys.contact(contact_id), "sk": keys.PROFILE}


class CapExceeded(Exception):
    """The message would exceed the contact's frequency cap."""


class JourneyStore:
    def __init__(
        self,
        client: Any,
        *,
        contacts_table: str,
        events_table: str,
        now: Callable[[], float] = time.time,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self._client = client
        self._contacts = contacts_table
        self._events = events_table
        self._now = now
        self._backoff = backoff

    # --- profile and enrollment ----------------------------------------------------------------

    def profile_and_enrollment(
        self, contact_id: str, journey_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Both in one round trip (strongly consistent; what DynamoDB leaves unprocessed is read
        again, so a throttled read never passes for an absent item)."""
        both = [profile_key(contact_id), enrollment_key(contact_id, journey_id)]
        found = {
            str(item["sk"]): item
            for item in batch_get(self._client, self._contacts, both, backoff=self._backoff)
        }
        return found.get(keys.PROFILE), found.get(f"J#{journey_id}")

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        return get(self._client, self._contacts, profile_key(contact_id), consistent=True)

    def enrollment(self, contact_id: str, journey_id: str) -> dict[str, Any] | None:
        return get(self._client, self._contacts, enrollment_key(contact_id, journey_id), consistent=True)

    def enter(
        self,
        contact_id: str,
        journey_id: str,
        *,
        entries: int,
        previous_entries: int | None,
        execution_name: str,
        entry_event_id: str,
        at: str,
        with_ops: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Record a new entry; False if someone else changed the enrollment since it was read.
        ``with_ops`` (the ``journey_entered`` event) are committed in the same transaction."""
        item = {
            "pk": keys.contact(contact_id),
            "sk": f"J#{journey_id}",
            "journey_id": journey_id,
            "status": "active",
            "entries": entries,
            "execution_name": execution_name,
            "entry_event_id": entry_event_id,
            "entered_at": at,
        }
        if previous_entries is None:
            put = put_op(self._contacts, item, "attribute_not_exists(pk)")
        else:
            put = put_op(self._contacts, item, "entries = :prev", values_={"prev": previous_entries})
        if not with_ops:
            return put_if(self._client, put)
        txn = Transaction()
        txn.add(put, "enrollment")
        txn.extend(with_ops, "with_ops")
        try:
            txn.commit(self._client)
        except TransactionCancelled as exc:
            if exc.failed_condition("enrollment"):
                return False
            raise
        return True

    def request_exit(self, contact_id: str, journey_id: str, reason: str, at: str) -> dict[str, Any] | None:
        """Mark an active enrollment to leave before its next step: the enrollment as it is now
        (with ``waiting`` if the execution waits on a token), None if it is not active."""
        return update_returning(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                set_once={"exit_reason": reason},
                sets={"exit_requested_at": at},
                condition="#status = :active",
                names={"#status": "status"},
                values_={"active": "active"},
            ),
        )

    # --- wait_for: the task token and the events seen --------------------------------------------

    @staticmethod
    def seen_attribute(step_id: str) -> str:
        return f"seen_{step_id}"

    def register_wait(
        self,
        contact_id: str,
        journey_id: str,
        *,
        execution_name: str,
        step_id: str,
        round: int,
        token: str,
        since: str,
    ) -> Literal["registered", "seen", "exited"]:
        """Store the task token unless the event was seen at/after ``since`` (``seen``: answer the
        token at once) or the enrollment is leaving or belongs to another execution (``exited``)."""
        registered = update_if(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                sets={"waiting": {"step_id": step_id, "round": round, "token": token, "since": since}},
                condition="#status = :active AND execution_name = :name AND attribute_not_exists(exit_reason) "
                "AND (attribute_not_exists(#seen) OR #seen < :since)",
                names={"#status": "status", "#seen": self.seen_attribute(step_id)},
                values_={"active": "active", "name": execution_name, "since": since},
            ),
        )
        if not registered:
            current = self.enrollment(contact_id, journey_id) or {}
            seen = current.get(self.seen_attribute(step_id))
            if (
                current.get("status") == "active"
                and current.get("execution_name") == execution_name
                and not current.get("exit_reason")
                and isinstance(seen, str)
                and seen >= since
            ):
                return "seen"
            return "exited"
        return "registered"

    def record_seen(
        self, contact_id: str, journey_id: str, step_id: str, occurred_at: str
    ) -> dict[str, Any] | None:
        """Remember the latest matching event of a ``wait_for`` step on the active enrollment: the
        enrollment after the write, or None when it is not active or a later event was seen already
        (a duplicate or an older event delivered late: nothing to answer that was not answered)."""
        return update_returning(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                set_clauses=["#seen = :at"],
                condition="#status = :active AND (attribute_not_exists(#seen) OR #seen < :at)",
                names={"#status": "status", "#seen": self.seen_attribute(step_id)},
                values_={"active": "active", "at": occurred_at},
            ),
        )

    def clear_wait(self, contact_id: str, journey_id: str, token: str) -> bool:
        """Forget an answered token (only that one: a newer wait keeps its own)."""
        return update_if(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                remove=["waiting"],
                condition="waiting.#token = :token",
                names={"#token": "token"},
                values_={"token": token},
            ),
        )

    def leave(
        self,
        contact_id: str,
        journey_id: str,
        execution_name: str,
        outcome: str,
        reason: str | None,
        at: str,
        *,
        stopped_reason: str | None = None,
    ) -> bool:
        """Close the enrollment of this execution (idempotent); False if a newer entry owns it.
        ``stopped_reason``: trigger stopped the execution on purpose (recorded for redrive).
        ``left_at`` is the first leave's time: a repeated leave (a retried step) keeps it (an entry
        replaces the whole item, so it never is an earlier entry's)."""
        return update_if(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                sets={"status": outcome, "left_at_of": execution_name, "stopped_reason": stopped_reason},
                set_once={"left_at": at, "exit_reason": reason or None},
                remove=["waiting"],
                condition="attribute_not_exists(pk) OR execution_name = :name",
                values_={"name": execution_name},
            ),
        )

    def move(self, contact_id: str, journey_id: str, from_name: str, to_name: str, at: str) -> bool:
        """Hand the active enrollment of execution ``from_name`` to ``to_name`` (a deploy moved the
        contact onto the journey's live version): exits, ``wait_for`` answers and the leave
        bookkeeping then reach the new execution. The old execution's token is forgotten (it is
        stopped next). Idempotent (True when it already belongs to ``to_name``); False when the
        enrollment is not active or belongs to another execution."""
        moved = update_if(
            self._client,
            update_op(
                self._contacts,
                enrollment_key(contact_id, journey_id),
                sets={"execution_name": to_name, "moved_from": from_name, "moved_at": at},
                remove=["waiting"],
                condition="#status = :active AND execution_name = :old",
                names={"#status": "status"},
                values_={"active": "active", "old": from_name},
            ),
        )
        if not moved:
            current = self.enrollment(contact_id, journey_id) or {}
            return current.get("status") == "active" and current.get("execution_name") == to_name
        return True

    # --- frequency caps ------------------------------------------------------------------------

    def _cap_item(self, contact_id: str, channel: str) -> dict[str, Any]:
        key = {"pk": keys.contact(contact_id), "sk": f"CAP#{channel}"}
        return get(self._client, self._contacts, key, consistent=True) or {}

    def cap_counts(self, contact_id: str, channel: str, periods: Sequence[str]) -> dict[str, int]:
        """Messages counted per period (``D#<day>``, ``W#<week>``); 0 for a period not counting now."""
        if not periods:
            return {}
        counted = self._cap_item(contact_id, channel).get("periods") or {}
        return {period: int(counted.get(period, 0)) for period in periods}

    def reserve(self, contact_id: str, channel: str, message_id: str, limits: Mapping[str, int]) -> bool:
        """Count one message against each period's limit (``{"D#2026-11-25": 1, "W#2026-W48": 3}``).

        One item per contact and channel (``CAP#<channel>``): the counts of the current periods
        (other periods dropped) and the message ids counted in the last ``CAP_TTL_SECONDS`` (a
        retried step finds its id and counts once), written with ONE conditional put on the
        version read (a concurrent reservation makes it read again). True when reserved now or by
        an earlier attempt of the same message; raises CapExceeded when a period is full."""
        for _ in range(CAP_ATTEMPTS):
            item = self._cap_item(contact_id, channel)
            now = int(self._now())
            counted: dict[str, Any] = dict(item.get("periods") or {})
            reserved = {k: int(v) for k, v in (item.get("reserved") or {}).items() if int(v) > now}
            if message_id in reserved:
                return True  # this message was counted by an earlier attempt
            if any(int(counted.get(period, 0)) >= limit for period, limit in limits.items()):
                raise CapExceeded(channel)
            version = int(item.get("v", 0))
            new = {
                "pk": keys.contact(contact_id),
                "sk": f"CAP#{channel}",
                "periods": {period: int(counted.get(period, 0)) + 1 for period in limits},
                "reserved": {**reserved, message_id: now + CAP_TTL_SECONDS},
                "v": version + 1,
                "expires_at": now + CAP_TTL_SECONDS,
            }
            if put_if(
                self._client,
                put_op(self._contacts, new, "attribute_not_exists(pk) OR v = :v", values_={"v": version}),
            ):
                return True
            # another reservation of this contact won: read again
        raise RuntimeError(f"frequency cap of {channel}: {CAP_ATTEMPTS} concurrent reservations in a row")

    # --- events ----------------------------------------------------------------------------------

    def events_since(self, contact_id: str, since: datetime | None) -> list[dict[str, Any]]:
        """The contact's events that happened at or after ``since`` (all when None), newest first,
        read in time order from the ``by_time`` index (event ids are not time-ordered)."""
        return list(
            event_history(
                self._client, self._events, keys.contact(contact_id), since=since, newest_first=True
            )
        )


def answer_wait(sfn: Any, token: str, seen: str) -> bool:
    """``SendTaskSuccess`` for a ``wait_for`` token with the awaited event (``seen``: its ``by_time``
    key, ``<occurred_at>#<event id>``); False when the task ended already (timed out, answered,
    stopped: ``TaskTimedOut``/``InvalidToken``/``TaskDoesNotExist``)."""
    occurred_at, _, event_id = seen.partition("#")
    try:
        sfn.send_task_success(
            taskToken=token, output=json.dumps({"event_id": event_id, "occurred_at": occurred_at})
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in TOKEN_GONE:
            return False
        raise
    return True


def fail_wait(sfn: Any, token: str, reason: str) -> bool:
    """``SendTaskFailure(ContactExited)``: the waiting task's Catch leaves the journey (exited)."""
    try:
        sfn.send_task_failure(taskToken=token, error="ContactExited", cause=reason[:200])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in TOKEN_GONE:
            return False
        raise
    return True


def close_stopped(
    store: JourneyStore,
    events: EventStore | None,
    *,
    execution_arn: str,
    contact_id: str,
    journey_id: str,
    reason: str,
    at: str,
) -> None:
    """The bookkeeping of an execution stopped on purpose so its contact leaves (an exit rule, a
    deploy's ``on_change: exit``): the leave task does not run for a stopped execution, so these are
    its writes — the enrollment closed as ``exited`` and a ``journey_exited`` event whose id is the
    one that task would have used (the execution's lineage), so a retry or a second path records it
    once."""
    name = execution_arn.rsplit(":", 1)[1]
    store.leave(contact_id, journey_id, name, "exited", reason, at, stopped_reason=reason)
    if events is None:
        return
    try:
        events.record(
            Event(
                event_id=ids.deterministic_id(ids.lineage(execution_arn), "leave", "exited"),
                type="journey_exited",
                occurred_at=at,
                contact_id=contact_id,
                journey_id=journey_id,
                source="journey",
                properties={"reason": reason[:200]},
            )
        )
    except ClientError as exc:
        if not is_conditional_failure(exc):
            raise  # a conditional failure: recorded by an earlier attempt
