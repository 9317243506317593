"""Data-protection requests (GDPR/DSGVO art. 15 and 17): export everything stored about a contact,
and erase it everywhere.

Where a contact's data lives (``leadflow.platform.tables``):
- contacts table: the profile and every item of its partition ``C#<id>`` (journey enrollments,
  the consent log, frequency-cap counters) and of the partitions of the contacts merged into it
  (``merged_ids``: their tombstones, consent logs, journeys), the email index ``EMAIL#<address>``
  (its own address and the merged ones, ``alt_emails``), the phone index
  ``PHONE#<e164>``, the visitor links ``V#<visitor>`` of the visitor ids the profile remembers;
- events table: the partitions ``C#<id>`` (and of the merged ids) and the anonymous history ``V#<visitor>`` of those visitors;
- messages table: the items of the messages sent to it (named by its ``email_sent``/``sms_sent``
  and skip events, and by the deterministic message ids its journeys used);
- running journey executions (their input holds only the contact id).

This service gathers and orders; each store reads and deletes its own items (``ContactStore``,
``stored_events``/``delete_stored_events``, ``MessageStore``, ``ReportTable``).

Erasure deletes all of it, stops running executions (marked as stopped on purpose,
``leadflow.journeys.runtime.stops``: redrive never resumes them), and keeps two things without personal data:
an erasure record ``ERASURE#<contact id>`` (when, what was deleted: the proof) and the address on
the suppression list as a hash, so it is never mailed again, even if it is imported later.
Counters and reports keep only aggregates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from leadflow.contacts.directory import DoNotContactIn
from leadflow.contacts.store import ContactStore
from leadflow.events.store import delete_stored_events, stored_events
from leadflow.journeys.runtime.stops import ERASURE, stop_on_purpose
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.messaging.store import MessageStore
from leadflow.platform.tables import keys
from leadflow.reporting.store import ReportTable, rkeys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient


class ErasureRequest(DoNotContactIn):
    """``POST /admin/contacts/{contact_id}/erase``: who asked and why (kept in the erasure record)."""


class ErasureResult(BaseModel):
    contact_id: str
    erased_at: str
    deleted: dict[str, int]
    """Items deleted per kind (profile, contact_items, indexes, events, messages, visitor_events)."""
    executions_stopped: int
    suppressed: bool
    """The address stays on the suppression list (as a hash): it is never mailed again."""


class ContactExport(BaseModel):
    """Everything leadflow stores about a contact (right of access), as JSON."""

    contact_id: str
    exported_at: str
    profile: dict[str, Any]
    consent_log: list[dict[str, Any]]
    journeys: list[dict[str, Any]]
    other_contact_items: list[dict[str, Any]]
    indexes: list[dict[str, Any]]
    events: list[dict[str, Any]]
    anonymous_events: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    report_state: list[dict[str, Any]]
    suppression: str | None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("expires_at",)}


class PrivacyService:
    def __init__(
        self,
        *,
        ddb: DynamoDBClient,
        contacts: ContactStore,
        events_table: str,
        messages_table: str,
        reports_table: str,
        sfn: SFNClient,
        state_machine_arn: Callable[[str], str],
    ) -> None:
        self._ddb = ddb
        self._contacts = contacts
        self._events_table = events_table
        self._messages = MessageStore(ddb, messages_table)
        self._reports = ReportTable(ddb, reports_table)
        self._sfn = sfn
        self._state_machine_arn = state_machine_arn

    # --- reading ---------------------------------------------------------------------------------

    def _events(self, subject_pk: str) -> list[dict[str, Any]]:
        return stored_events(self._ddb, self._events_table, subject_pk)

    def _gather(self, contact_id: str) -> dict[str, Any]:
        """Every item of the contact (consistent reads: an item written just before is found), by
        the stores that own them."""
        items = self._contacts.partition(contact_id, limit=None, consistent=True)
        profile = next((p for p in items if p["sk"] == keys.PROFILE), None)
        if profile is None:
            raise NotFound("contact")
        # contacts merged into this one: their partitions (tombstone, consent log, journeys) and
        # events belong to it now
        merged = sorted(str(m) for m in profile.get("merged_ids") or [])
        for merged_id in merged:
            items += self._contacts.partition(merged_id, limit=None, consistent=True)
        emails = [str(profile["email"])] if profile.get("email") else []
        emails += sorted(str(e) for e in profile.get("alt_emails") or [])
        index_keys = [(keys.email(e), keys.EMAIL) for e in emails]
        if profile.get("phone"):
            index_keys.append((ContactStore.phone_key(str(profile["phone"])), ContactStore.PHONE_SK))
        visitors = sorted(str(v) for v in profile.get("visitor_ids") or [])
        index_keys += [(keys.visitor(v), keys.LINK) for v in visitors]
        entries = self._contacts.items(index_keys)
        # an index entry belongs to this contact only while it points at it
        indexes = [
            entries[k] for k in index_keys if k in entries and entries[k].get("contact_id") == contact_id
        ]
        events = [e for c in [contact_id, *merged] for e in self._events(keys.contact(c))]
        anonymous = [e for v in visitors for e in self._events(keys.visitor(v))]
        # the report consumer's per-contact and per-visitor state (touches, journey memberships)
        report_state = [
            i for c in [contact_id, *merged] for i in self._reports.partition(rkeys.contact_state(c))
        ]
        report_state += [i for v in visitors for i in self._reports.partition(rkeys.visitor_state(v))]
        message_ids = {str(m) for m in (e.get("message_id") for e in events + anonymous) if m is not None}
        for message_id in sorted(message_ids):  # opens and clicks per message (they name the contact)
            report_state += self._reports.partition(rkeys.message_state(message_id))
        return {
            "profile": profile,
            "emails": emails,
            "items": items,
            "indexes": indexes,
            "events": events,
            "anonymous": anonymous,
            "messages": self._messages.many(sorted(message_ids)),
            "report_state": report_state,
        }

    def export(self, contact_id: str) -> ContactExport:
        found = self._gather(contact_id)
        plain: list[dict[str, Any]] = found["items"]
        profile = {k: v for k, v in found["profile"].items() if k not in ("pk", "sk")}
        metrics.add_metric(name="ContactExports", unit="Count", value=1)
        return ContactExport(
            contact_id=contact_id,
            exported_at=iso(utc_now()),
            profile=profile,
            consent_log=[p for p in plain if str(p["sk"]).startswith("CONSENT#")],
            journeys=[p for p in plain if str(p["sk"]).startswith("J#")],
            other_contact_items=[
                p
                for p in plain
                if p["sk"] != keys.PROFILE and not str(p["sk"]).startswith(("CONSENT#", "J#"))
            ],
            indexes=[_plain(i) for i in found["indexes"]],
            events=[_plain(e) for e in found["events"]],
            anonymous_events=[_plain(e) for e in found["anonymous"]],
            messages=[{k: v for k, v in m.items() if k != "expires_at"} for m in found["messages"]],
            report_state=[_plain(r) for r in found["report_state"]],
            suppression=self._contacts.suppression(str(profile["email"])) if profile.get("email") else None,
        )

    # --- erasing ---------------------------------------------------------------------------------

    def _stop_executions(self, plain: list[dict[str, Any]]) -> int:
        stopped = 0
        for enrollment in plain:
            if not str(enrollment["sk"]).startswith("J#") or enrollment.get("status") != "active":
                continue
            machine = self._state_machine_arn(str(enrollment["journey_id"]))
            arn = machine.replace(":stateMachine:", ":execution:", 1) + f":{enrollment['execution_name']}"
            # marked as stopped on purpose: ``leadflow ops redrive`` never resumes it (leadflow.journeys.runtime.stops)
            if stop_on_purpose(self._sfn, arn, ERASURE, "contact erased"):
                stopped += 1
        return stopped

    def erase(self, contact_id: str, request: ErasureRequest, *, actor: str) -> ErasureResult:
        """Delete the contact everywhere; idempotent per item (a repeated request finds nothing)."""
        found = self._gather(contact_id)
        at = iso(utc_now())
        email = found["profile"].get("email")
        stopped = self._stop_executions(found["items"])
        for address in found["emails"]:  # first: from now on nothing is sent to them, whatever else happens
            self._contacts.suppress(address, "erased", at)
        # each store deletes its own items; the order is this service's
        deleted = {
            "messages": self._messages.delete_items(found["messages"]),
            "events": delete_stored_events(self._ddb, self._events_table, found["events"]),
            "visitor_events": delete_stored_events(self._ddb, self._events_table, found["anonymous"]),
            "indexes": self._contacts.delete_items(found["indexes"]),
            "report_state": self._reports.delete_items(found["report_state"]),
            "contact_items": self._contacts.delete_items(
                [i for i in found["items"] if i["sk"] != keys.PROFILE]
            ),
        }
        # the profile last: until it is gone, a failed erasure can be repeated and finds everything
        deleted["profile"] = self._contacts.delete_items(
            [i for i in found["items"] if i["sk"] == keys.PROFILE]
        )
        self._contacts.record_erasure(
            contact_id,
            {
                "erased_at": at,
                "reason": request.reason,
                "actor": actor[:256],
                "deleted": deleted,
                "executions_stopped": stopped,
            },
        )
        metrics.add_metric(name="ContactsErased", unit="Count", value=1)
        logger.info("contact erased", extra={"contact_id": contact_id, "deleted": deleted})
        return ErasureResult(
            contact_id=contact_id,
            erased_at=at,
            deleted=deleted,
            executions_stopped=stopped,
            suppressed=bool(email),
        )

    def erasure_record(self, contact_id: str) -> dict[str, Any]:
        record = self._contacts.erasure(contact_id)
        if record is None:
            raise NotFound("erasure record")
        return record
