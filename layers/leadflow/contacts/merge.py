"""Merging two contacts that are the same person: ``POST /admin/contacts/{id}/merge`` {duplicate_id}.

One transaction (the path's contact survives):
- the survivor's profile: fields it lacks are filled from the duplicate (``if_not_exists``: the
  survivor wins where both are set, even against a concurrent write), tags and visitor ids are
  united, ``merged_ids`` gets the duplicate (and the ids merged into it before), ``alt_emails`` its
  addresses; email consent: the most recent change wins (with a consent-log entry); suppression and
  do-not-contact: either one sets it; the lead state is ``leads.scoring.combine`` (both scores
  decayed to now and added, caps and activity counters added, the later stage) under the
  ``lead_version`` lock, which is bumped;
- the duplicate's email, phone and visitor-link index items point to the survivor (a later form
  post with the duplicate's address lands on the survivor);
- the duplicate's profile becomes a tombstone {merged_into, merged_at} without personal fields
  (its ``segments`` stay until the segment evaluation removes its memberships);
- ``contacts_merged`` {merged_id} on the survivor (a deterministic id): the lead engine recomputes
  fit score and segments from it.

Events are not copied: the timeline, the export and the lead engine read the merged ids'
partitions, so nothing is lost. The duplicate's running journeys go on, but nothing is sent to a
tombstone (``sending``: skipped, reason ``merged``).

Replaying the request (the duplicate already merged into this survivor) changes nothing and
answers ``changed: false``; merging into a tombstone, or a duplicate merged elsewhere, is 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leadflow.contacts.model import PROFILE_FIELDS
from leadflow.contacts.service import ContactService
from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.kernel import ids
from leadflow.kernel.clock import iso
from leadflow.kernel.errors import Conflict, InvalidInput, NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.platform.dynamo import (
    Op,
    Transaction,
    TransactionCancelled,
)
from leadflow.platform.tables import keys

MAX_TXN_ITEMS = 100
SMS_FIELDS = ("consent_sms", "consent_sms_updated_at", "consent_sms_source")
EMAIL_CONSENT_FIELDS = (
    "consent_email",
    "consent_updated_at",
    "consent_source",
    "consent_ip",
    "consent_confirmed_at",
    "unsubscribed_at",
)
KEEP_ON_TOMBSTONE = ("contact_id", "created_at", "segments")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    duplicate_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class MergeResult(BaseModel):
    contact_id: str
    merged_id: str
    changed: bool = Field(description="False when the duplicate was already merged into this contact.")
    filled: list[str] = Field(default_factory=list, description="Survivor fields filled from the duplicate.")


def _set(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list | set | tuple) else set()


class ContactMerger(ContactService):
    """The contacts service with the merge of two contacts (its own module: merging is most of a
    service by itself). Built as a ``ContactService`` is (``leadflow.wiring.admin_app``)."""

    def merge(self, survivor_id: str, body: MergeIn) -> MergeResult:
        duplicate_id = body.duplicate_id
        if duplicate_id == survivor_id:
            raise InvalidInput("duplicate_id", "is the contact itself")
        for _ in range(3):
            survivor = self._contacts.profile(survivor_id, consistent=True)
            duplicate = self._contacts.profile(duplicate_id, consistent=True)
            if survivor is None:
                raise NotFound("contact")
            if duplicate is None:
                raise NotFound("duplicate contact")
            if duplicate.get("merged_into") == survivor_id:
                return MergeResult(contact_id=survivor_id, merged_id=duplicate_id, changed=False)
            if survivor.get("merged_into"):
                raise Conflict(f"contact was merged into {survivor['merged_into']}; merge into that one")
            if duplicate.get("merged_into"):
                raise Conflict(f"duplicate_id was already merged into {duplicate['merged_into']}")
            ops, later, filled = self._ops(survivor_id, survivor, duplicate_id, duplicate)
            txn = Transaction()
            for name, op in ops.items():
                txn.add(op, name)
            try:
                self._transact(txn)
            except TransactionCancelled as exc:
                if exc.failed_condition():
                    continue  # one of them changed meanwhile (lead engine, upsert): read again
                raise
            for op in later:  # visitor links beyond one transaction: idempotent, conditional
                self._contacts.put_if(op)
            metrics.add_metric(name="ContactsMerged", unit="Count", value=1)
            logger.info("contacts merged", extra={"contact_id": survivor_id, "merged_id": duplicate_id})
            return MergeResult(contact_id=survivor_id, merged_id=duplicate_id, changed=True, filled=filled)
        raise Conflict("the contacts changed concurrently; try again")

    def _ops(
        self, survivor_id: str, survivor: dict[str, Any], duplicate_id: str, duplicate: dict[str, Any]
    ) -> tuple[dict[str, Op], list[Op], list[str]]:
        """The merge transaction's operations by name (``survivor``, ``tombstone``, ``consent_log``,
        ``event``, ``repoint[i]``), the re-pointing puts beyond one transaction, the fields filled."""
        now = self._now()
        at = iso(now)
        fills: dict[str, Any] = {}
        for name in (*PROFILE_FIELDS, *self._model.attributes, "owner", "stage_hold_until"):
            if survivor.get(name) is None and duplicate.get(name) is not None:
                fills[name] = duplicate[name]
        if "phone" in fills:
            fills |= {f: duplicate[f] for f in SMS_FIELDS if duplicate.get(f) is not None}
        sets: dict[str, Any] = {"updated_at": at}
        consent_from_duplicate = bool(duplicate.get("consent_updated_at")) and str(
            duplicate.get("consent_updated_at")
        ) > str(survivor.get("consent_updated_at") or "")
        if consent_from_duplicate:
            sets |= {f: duplicate[f] for f in EMAIL_CONSENT_FIELDS if duplicate.get(f) is not None}
        if duplicate.get("suppressed") and not survivor.get("suppressed"):
            sets |= {
                "suppressed": duplicate["suppressed"],
                "suppressed_at": duplicate.get("suppressed_at") or at,
            }
        if duplicate.get("do_not_contact") and not survivor.get("do_not_contact"):
            sets |= {
                "do_not_contact": True,
                "do_not_contact_reason": duplicate.get("do_not_contact_reason")
                or f"merged from {duplicate_id}",
                "do_not_contact_at": duplicate.get("do_not_contact_at") or at,
            }
        from leadflow.leads.scoring import combine

        sets |= {k: v for k, v in combine(survivor, duplicate, now, self._model).items() if v is not None}
        version = survivor.get("lead_version")
        sets["lead_version"] = int(version or 0) + 1

        # index items of the duplicate that still point at it
        emails = [e for e in [duplicate.get("email"), *sorted(_set(duplicate.get("alt_emails")))] if e]
        index_keys = [(keys.email(str(e)), keys.EMAIL) for e in emails]
        if duplicate.get("phone"):
            index_keys.append((ContactStore.phone_key(str(duplicate["phone"])), ContactStore.PHONE_SK))
        visitors = sorted(_set(duplicate.get("visitor_ids")))
        index_keys += [(keys.visitor(v), keys.LINK) for v in visitors]
        index = self._contacts.items(index_keys)
        repoint = [index[k] for k in index_keys if k in index and index[k].get("contact_id") == duplicate_id]
        linked = {
            str(index[k]["pk"]).removeprefix("V#")
            for k in index_keys
            if k[1] == keys.LINK and k in index and index[k].get("contact_id") in (duplicate_id, survivor_id)
        }
        adds: dict[str, set[str]] = {
            "tags": _set(duplicate.get("tags")) - _set(survivor.get("tags")),
            "visitor_ids": linked,
            "merged_ids": {duplicate_id} | _set(duplicate.get("merged_ids")),
            "alt_emails": {str(e) for e in emails if e != survivor.get("email")},
        }
        ops: dict[str, Op] = {
            "survivor": self._survivor_op(survivor_id, fills, sets, adds, version),
            "tombstone": self._tombstone_op(duplicate_id, duplicate, survivor_id, at),
        }
        if consent_from_duplicate and duplicate.get("consent_email") != survivor.get("consent_email"):
            ops["consent_log"] = self._contacts.consent_log_op(
                survivor_id,
                channel="email",
                action=str(duplicate.get("consent_email")),
                source=f"merge:{duplicate_id}",
                at=at,
            )
        ops["event"] = self._events.put_op(
            Event(
                event_id=ids.deterministic_id("contacts_merged", survivor_id, duplicate_id),
                type="contacts_merged",
                occurred_at=at,
                contact_id=survivor_id,
                source="admin",
                properties={"merged_id": duplicate_id, "filled": sorted(fills)},
            )
        )
        repoint_ops = [
            self._repoint_op(item, duplicate_id, survivor_id)
            for item in sorted(repoint, key=lambda i: (not str(i["pk"]).startswith("EMAIL#"), str(i["pk"])))
        ]
        room = MAX_TXN_ITEMS - len(ops)
        ops |= {f"repoint[{i}]": op for i, op in enumerate(repoint_ops[:room])}
        return ops, repoint_ops[room:], sorted(fills)

    def _survivor_op(
        self,
        contact_id: str,
        fills: Mapping[str, Any],
        sets: Mapping[str, Any],
        adds: Mapping[str, set[str]],
        version: Any,
    ) -> dict[str, Any]:
        return self._contacts.locked_update_op(
            contact_id,
            version,
            set_once=fills,
            sets={name: value for name, value in sets.items() if name not in fills},
            add={name: set(members) for name, members in sorted(adds.items()) if members},
        )

    def _tombstone_op(
        self, contact_id: str, profile: Mapping[str, Any], survivor_id: str, at: str
    ) -> dict[str, Any]:
        """The duplicate's profile replaced by a tombstone (personal fields gone), if unchanged."""
        return self._contacts.tombstone_op(contact_id, profile, survivor_id, at, KEEP_ON_TOMBSTONE)

    def _repoint_op(self, item: Mapping[str, Any], duplicate_id: str, survivor_id: str) -> dict[str, Any]:
        return self._contacts.repoint_op(item, duplicate_id, survivor_id)
