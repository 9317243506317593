"""Contacts: upsert by email (single and in bulk), tags, list/search and the timeline.

Upsert (one transaction per contact): the email index claim (a new contact) or the profile's
existence check (a known one), the profile update (only the fields given and changed; custom
attributes top-level under their names; tags are added, never removed), the phone index, a consent
log entry when the consent changes, and ``contact_created``/``contact_updated`` {fields, source} so
the lead engine re-evaluates segments and fit at once. Nothing changed: nothing is written (a
replayed request or a re-imported file is harmless).

Consent rules: ``granted`` needs a ``consent_source``; ``unknown`` never overwrites a known state;
an import never re-grants consent a contact revoked (an operator's upsert may: it is explicit).

An address a merge re-pointed (``alt_emails`` of the survivor) resolves to the survivor; the
survivor's primary ``email`` is not changed by it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from leadflow.contacts.fields import PROFILE_FIELDS
from leadflow.contacts.model import ContactIn, ContactInvalid, normalize_tags
from leadflow.contacts.normalize import resolve_phone, stored_spelling
from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import Conflict, InvalidInput, NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.leads.model import LeadModel
from leadflow.messaging.store import MessageStore
from leadflow.platform.dynamo import (
    Transaction,
    TransactionCancelled,
    deserialize,
)
from leadflow.platform.tables import keys

MAX_TXN_ITEMS = 100
BATCH_GET = 100
SUMMARY_FIELDS = (
    "contact_id",
    "email",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
    "stage",
    "score",
    "score_value",
    "score_at",
    "fit_score",
    "tags",
    "segments",
    "owner",
    "consent_email",
    "created_at",
    "updated_at",
)


def current_score(profile: Mapping[str, Any], now: datetime, model: LeadModel) -> tuple[int, float]:
    """The contact's behaviour score now (decayed), displayed and exact."""
    from leadflow.leads.scoring import current_score as decayed
    from leadflow.leads.scoring import display_score

    value = decayed(profile, now, model)
    return display_score(value), round(value, 6)


def _set(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list | set | tuple) else set()


# --- results ----------------------------------------------------------------------------------


class UpsertResult(BaseModel):
    contact_id: str
    created: bool
    changed: list[str] = Field(description="Fields that changed (empty: nothing was written).")


class TagsIn(BaseModel):
    """``POST /admin/contacts/{contact_id}/tags``."""

    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class TagsResult(BaseModel):
    contact_id: str
    tags: list[str]
    changed: bool


class ContactName(BaseModel):
    """A contact in a list: its id, address and name (the rest of a list's row extends this)."""

    contact_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class ContactSummary(ContactName):
    company: str | None = None
    job_title: str | None = None
    country: str | None = None
    stage: str | None = None
    score: int = Field(0, description="Behaviour score now (decayed), rounded.")
    fit_score: int | None = None
    tags: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    owner: str | None = None
    consent_email: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ContactPage(BaseModel):
    contacts: list[ContactSummary]
    cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")
    scanned: int


class Timeline(BaseModel):
    contact_id: str
    merged_ids: list[str]
    visitor_ids: list[str]
    profile: dict[str, Any]
    score: int = Field(description="Behaviour score now (decayed), rounded half up.")
    score_value: float = Field(description="Behaviour score now (decayed), exact.")
    events: list[dict[str, Any]] = Field(
        description="Newest first, from the contact, merged ids and visitors."
    )
    cursor: str | None = Field(description="Pass as ?cursor= for older events; null at the end.")
    messages: list[dict[str, Any]]
    journeys: list[dict[str, Any]]
    score_history: list[dict[str, Any]]
    stage_history: list[dict[str, Any]]


# --- planning one contact's write ---------------------------------------------------------------


@dataclass
class Plan:
    """The transaction items of one contact's upsert (empty ``changed``: nothing to write)."""

    contact_id: str
    created: bool
    changed: list[str]
    ops: list[dict[str, Any]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    """Item keys the ops write (two ops of one transaction may not touch the same item)."""


class ContactService:
    def __init__(
        self,
        *,
        contacts: ContactStore,
        events: EventStore,
        messages: MessageStore,
        model: LeadModel,
        transact: Callable[[Transaction], None],
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._contacts = contacts
        self._events = events
        self._messages = messages
        self._model = model
        self._transact = transact
        self._now = now

    @property
    def model(self) -> LeadModel:
        return self._model

    # --- reads --------------------------------------------------------------------------------

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        return self._contacts.profile(contact_id, consistent=True)

    def resolve(self, contact_id: str) -> tuple[str, dict[str, Any]]:
        """The profile (a merged contact's survivor, followed once); ``NotFound`` otherwise."""
        resolved = self._contacts.resolve(contact_id)
        if resolved is None:
            raise NotFound("contact")
        return resolved

    def _resolve_emails(self, emails: Sequence[str]) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """email -> (contact id, its profile or None) for the addresses that are known."""
        owners = self._contacts.email_owners(emails)
        profiles = self._profiles(set(owners.values()))
        tombstones = {p["merged_into"] for p in profiles.values() if p.get("merged_into")}
        if tombstones:  # an index not re-pointed yet: follow the merge once
            profiles |= self._profiles({str(t) for t in tombstones} - set(profiles))
        out: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for email, contact_id in owners.items():
            profile = profiles.get(contact_id)
            if profile is not None and profile.get("merged_into"):
                contact_id = str(profile["merged_into"])
                profile = profiles.get(contact_id)
            out[email] = (contact_id, profile)
        return out

    def _profiles(self, contact_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self._contacts.profiles(sorted(contact_ids))

    # --- upsert -------------------------------------------------------------------------------

    def plan(
        self,
        contact: ContactIn,
        found: tuple[str, dict[str, Any] | None] | None,
        *,
        source: str,
        at: str,
        regrant: bool,
    ) -> Plan:
        """The writes that bring the stored contact (``found``: id and profile, None if unknown) to
        what ``contact`` says; ``ContactInvalid`` (``phone``) when its national number cannot be
        read in the stored country (none stored, or not a number there)."""
        contact_id, profile = found if found else (ids.new_contact_id(), None)
        created = profile is None
        current: Mapping[str, Any] = profile or {}
        try:  # a national number without a country in the request: read in the stored one
            phone = resolve_phone(contact.phone, current.get("country"))
        except ValueError as exc:
            raise ContactInvalid([{"field": "phone", "message": str(exc)}]) from exc
        sets: dict[str, Any] = {}
        if created:
            sets["email"] = contact.email
        for name in PROFILE_FIELDS:
            value = phone if name == "phone" else getattr(contact, name)
            if value is not None and current.get(name) != value:
                sets[name] = value
        for name, value in contact.attributes.items():
            old = current.get(name)
            if old != value or isinstance(old, bool) != isinstance(value, bool):
                sets[name] = value
        new_tags = set(contact.tags) - _set(current.get("tags"))
        consent = self._consent(contact, current.get("consent_email"), created, regrant)
        if consent is not None:
            sets |= {"consent_email": consent, "consent_updated_at": at}
            if contact.consent_source:
                sets["consent_source"] = contact.consent_source
        changed = sorted(
            set(sets) - {"consent_updated_at", "consent_source"} | ({"tags"} if new_tags else set())
        )
        if created:
            changed = sorted(set(changed) | {"email"})
        plan = Plan(contact_id=contact_id, created=created, changed=changed)
        if not changed:
            return plan
        profile_key = f"{keys.contact(contact_id)}|{keys.PROFILE}"
        if created:
            plan.ops.append(self._contacts.email_claim_op(contact.email, contact_id))
            plan.touched.add(f"{keys.email(contact.email)}|{keys.EMAIL}")
        if created:
            plan.ops.append(self._create_op(contact_id, sets, new_tags, at))
        else:
            plan.ops.append(self._profile_op(contact_id, sets, new_tags, at))
        plan.touched.add(profile_key)
        if "phone" in sets:
            plan.ops.append(self._contacts.phone_index_op(str(sets["phone"]), contact_id, at))
            plan.touched.add(f"{ContactStore.phone_key(str(sets['phone']))}|{ContactStore.PHONE_SK}")
        if consent is not None and consent != "unknown":
            plan.ops.append(
                self._contacts.consent_log_op(
                    contact_id,
                    channel="email",
                    action=consent,
                    source=contact.consent_source or source,
                    at=at,
                )
            )
        plan.ops.append(
            self._events.put_op(
                Event(
                    event_id=ids.new_event_id(),
                    type="contact_created" if created else "contact_updated",
                    occurred_at=at,
                    contact_id=contact_id,
                    source=source,
                    properties={"fields": changed, "source": source},
                )
            )
        )
        return plan

    @staticmethod
    def _consent(contact: ContactIn, current: Any, created: bool, regrant: bool) -> str | None:
        wanted = contact.consent_email
        if wanted is None:
            return "unknown" if created else None
        if wanted == "unknown":
            return "unknown" if created or current is None else None
        if wanted == current:
            return None
        if wanted == "granted" and current == "revoked" and not regrant:
            return None  # an import does not re-subscribe someone who unsubscribed
        return wanted

    def _create_op(self, contact_id: str, sets: Mapping[str, Any], tags: set[str], at: str) -> dict[str, Any]:
        return self._contacts.create_profile_op(contact_id, sets, tags, at)

    def _profile_op(
        self, contact_id: str, sets: Mapping[str, Any], tags: set[str], at: str
    ) -> dict[str, Any]:
        return self._contacts.update_profile_op(contact_id, sets, tags, at)

    def upsert(self, contact: ContactIn, *, source: str = "admin", regrant: bool = True) -> UpsertResult:
        """Create or update the contact with this email (one transaction; retried once when the
        address was claimed or the contact merged concurrently)."""
        for attempt in range(3):
            found = self._resolve_emails([contact.email]).get(contact.email)
            plan = self.plan(contact, found, source=source, at=iso(self._now()), regrant=regrant)
            if not plan.changed:
                return UpsertResult(contact_id=plan.contact_id, created=False, changed=[])
            try:
                self._commit(plan.ops)
            except TransactionCancelled as exc:
                if attempt < 2 and exc.failed_condition():
                    continue  # claimed, created or merged meanwhile: read again
                raise
            metrics.add_metric(
                name="ContactsCreated" if plan.created else "ContactsUpdated", unit="Count", value=1
            )
            return UpsertResult(contact_id=plan.contact_id, created=plan.created, changed=plan.changed)
        raise Conflict("the contact changed concurrently; try again")

    def _commit(self, ops: list[dict[str, Any]]) -> None:
        txn = Transaction()
        for op in ops:
            txn.add(op)
        self._transact(txn)

    # --- bulk upsert (import) -----------------------------------------------------------------

    def upsert_many(
        self, rows: Sequence[tuple[int, ContactIn]], *, source: str = "import"
    ) -> tuple[dict[int, UpsertResult], dict[int, list[dict[str, str]]]]:
        """Upsert rows in order (a later row about the same contact sees the earlier one): results
        and failures (row -> the fields at fault, ``row`` when it could not be stored) by row
        number. Reads the email index and the profiles of a
        round in batches, writes several rows per transaction; a cancelled group is retried row by
        row, so one row never blocks the others."""
        results: dict[int, UpsertResult] = {}
        failures: dict[int, list[dict[str, str]]] = {}
        pending = list(rows)
        while pending:
            round_rows: list[tuple[int, ContactIn]] = []
            later: list[tuple[int, ContactIn]] = []
            emails: set[str] = set()
            for row in pending:
                (later if row[1].email in emails else round_rows).append(row)
                emails.add(row[1].email)
            found = self._resolve_emails([c.email for _, c in round_rows])
            at = iso(self._now())
            plans: list[tuple[int, ContactIn, Plan]] = []
            contacts_in_round: set[str] = set()
            deferred: list[tuple[int, ContactIn]] = []
            for number, contact in round_rows:
                hit = found.get(contact.email)
                if hit is not None and hit[0] in contacts_in_round:
                    deferred.append((number, contact))  # two addresses of one contact: in order
                    continue
                try:
                    plan = self.plan(contact, hit, source=source, at=at, regrant=False)
                except ContactInvalid as exc:
                    failures[number] = exc.fields
                    continue
                contacts_in_round.add(plan.contact_id)
                if plan.changed:
                    plans.append((number, contact, plan))
                else:
                    results[number] = UpsertResult(contact_id=plan.contact_id, created=False, changed=[])
            for group in self._groups(plans):
                self._commit_group(group, results, failures, source)
            pending = sorted(later + deferred, key=lambda r: r[0])
        created = sum(1 for r in results.values() if r.created)
        metrics.add_metric(name="ContactsImported", unit="Count", value=len(results))
        metrics.add_metric(name="ContactsCreated", unit="Count", value=created)
        return results, failures

    @staticmethod
    def _groups(plans: list[tuple[int, ContactIn, Plan]]) -> Iterator[list[tuple[int, ContactIn, Plan]]]:
        group: list[tuple[int, ContactIn, Plan]] = []
        items = 0
        touched: set[str] = set()
        for entry in plans:
            plan = entry[2]
            if group and (items + len(plan.ops) > MAX_TXN_ITEMS or touched & plan.touched):
                yield group
                group, items, touched = [], 0, set()
            group.append(entry)
            items += len(plan.ops)
            touched |= plan.touched
        if group:
            yield group

    def _commit_group(
        self,
        group: list[tuple[int, ContactIn, Plan]],
        results: dict[int, UpsertResult],
        failures: dict[int, list[dict[str, str]]],
        source: str,
    ) -> None:
        try:
            self._commit([op for _, _, plan in group for op in plan.ops])
        except ClientError:
            for number, contact, plan in group:  # one by one: each row all-or-nothing
                try:
                    self._commit(plan.ops)
                    results[number] = UpsertResult(
                        contact_id=plan.contact_id, created=plan.created, changed=plan.changed
                    )
                except ClientError:
                    try:  # changed since it was read: read again and retry alone
                        results[number] = self.upsert(contact, source=source, regrant=False)
                    except ContactInvalid as exc:  # its stored country changed meanwhile
                        failures[number] = exc.fields
                    except (ClientError, Conflict) as exc:
                        logger.warning(
                            "import row not stored", extra={"row": number, "error": str(exc)[:200]}
                        )
                        failures[number] = [
                            {
                                "field": "row",
                                "message": "could not be stored (changed concurrently); import the row again",
                            }
                        ]
            return
        for number, _, plan in group:
            results[number] = UpsertResult(
                contact_id=plan.contact_id, created=plan.created, changed=plan.changed
            )

    # --- tags -----------------------------------------------------------------------------------

    def tags(self, contact_id: str, body: TagsIn) -> TagsResult:
        """Add and remove tags (read, compute, write under a check that the tags did not change
        meanwhile) with ``contact_updated`` {fields: [tags]}."""
        add = normalize_tags(body.add, "add")
        remove = normalize_tags(body.remove, "remove")
        both = sorted(set(add) & set(remove))
        if both:
            raise InvalidInput("remove", f"tags both added and removed: {', '.join(both)}")
        for _ in range(3):
            contact_id, profile = self.resolve(contact_id)
            before = _set(profile.get("tags"))
            after = (before | set(add)) - set(remove)
            if after == before:
                return TagsResult(contact_id=contact_id, tags=sorted(after), changed=False)
            at = iso(self._now())
            op = self._contacts.tags_op(contact_id, after, at, unchanged_since=profile.get("updated_at"))
            event = Event(
                event_id=ids.new_event_id(),
                type="contact_updated",
                occurred_at=at,
                contact_id=contact_id,
                source="admin",
                properties={
                    "fields": ["tags"],
                    "source": "admin",
                    "added": sorted(after - before),
                    "removed": sorted(before - after),
                },
            )
            try:
                self._commit([op, self._events.put_op(event)])
            except TransactionCancelled as exc:
                if exc.failed_condition():
                    continue
                raise
            return TagsResult(contact_id=contact_id, tags=sorted(after), changed=True)
        raise Conflict("the contact changed concurrently; try again")

    # --- list / search ----------------------------------------------------------------------------

    def search(
        self,
        *,
        q: str | None = None,
        stage: str | None = None,
        tag: str | None = None,
        segment: str | None = None,
        country: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        max_scanned: int = 5000,
    ) -> ContactPage:
        """A page of contacts matching every filter given (a scan of the profiles; ``q`` is a
        case-insensitive substring of the email or the name). A page may hold fewer than
        ``limit`` contacts and still have a cursor: a request scans at most ``max_scanned`` items.
        An internationalized domain matches as typed or as stored (``faß`` finds
        ``max@xn--fa-hia.de``: ``stored_spelling``)."""
        needles = {q.strip().lower(), stored_spelling(q)} if q and q.strip() else set()
        country = country.strip().upper() if country else None
        found: list[ContactSummary] = []
        scanned = 0
        now = self._now()
        for resp in self._contacts.profile_pages(after=_decode_key(cursor) if cursor else None):
            scanned += int(resp.get("ScannedCount", 0))
            for raw in resp["Items"]:
                item = deserialize(raw)
                if not _matches(item, needles, stage, tag, segment, country):
                    continue
                found.append(self._summary(item, now))
                if len(found) >= limit:
                    next_cursor = _encode_key({"pk": item["pk"], "sk": item["sk"]})
                    return ContactPage(contacts=found, cursor=next_cursor, scanned=scanned)
            last = resp.get("LastEvaluatedKey")
            if last and scanned >= max_scanned:
                return ContactPage(contacts=found, cursor=_encode_key(deserialize(last)), scanned=scanned)
        return ContactPage(contacts=found, cursor=None, scanned=scanned)

    def _summary(self, item: Mapping[str, Any], now: datetime) -> ContactSummary:
        data = {k: item.get(k) for k in SUMMARY_FIELDS if item.get(k) is not None}
        data["score"] = current_score(item, now, self._model)[0]
        data["tags"] = sorted(_set(item.get("tags")))
        data["segments"] = sorted(_set(item.get("segments")))
        data.pop("score_value", None)
        data.pop("score_at", None)
        return ContactSummary.model_validate(data)

    # --- timeline -------------------------------------------------------------------------------

    def timeline(self, contact_id: str, *, limit: int = 50, cursor: str | None = None) -> Timeline:
        """The profile with the score now, and every event of the contact, of the contacts merged
        into it and of its visitor ids (their anonymous history), newest first; its messages,
        journeys, score and stage history. Reads the contact's whole history (bounded by the
        events' retention), so a page costs the same as the first."""
        contact_id, profile = self.resolve(contact_id)
        merged = sorted(_set(profile.get("merged_ids")))
        visitors = sorted(_set(profile.get("visitor_ids")))
        partitions = [keys.contact(c) for c in [contact_id, *merged]] + [keys.visitor(v) for v in visitors]
        events: dict[str, dict[str, Any]] = {}
        for pk in partitions:
            # newest first in time order (by_time): a cut keeps the newest, whatever the ids
            for item in self._events.history(pk, newest_first=True, limit=10_000):
                event = {k: v for k, v in item.items() if k not in ("pk", "sk", "at", "expires_at")}
                events.setdefault(str(event.get("event_id")), event)
        ordered = sorted(events.values(), key=_event_order, reverse=True)
        if cursor:
            after = _decode_cursor(cursor)
            ordered = [e for e in ordered if _event_order(e) < after]
        page = ordered[:limit]
        next_cursor = _encode_cursor(_event_order(page[-1])) if len(ordered) > limit else None
        message_ids = sorted({str(e["message_id"]) for e in events.values() if e.get("message_id")})
        messages = [
            {k: v for k, v in m.items() if k not in ("pk", "sk", "expires_at")}
            for m in self._messages.many(message_ids)
        ]
        journeys = [
            {k: v for k, v in item.items() if k not in ("pk", "sk")} | {"contact_id": str(item["pk"])[2:]}
            for c in [contact_id, *merged]
            for item in self._contacts.partition(c, sk_prefix="J#")
        ]
        history = sorted(events.values(), key=_event_order)
        score, score_value = current_score(profile, self._now(), self._model)
        return Timeline(
            contact_id=contact_id,
            merged_ids=merged,
            visitor_ids=visitors,
            # the score now (decayed), not as of score_at
            profile={k: v for k, v in profile.items() if k not in ("pk", "sk")} | {"score": score},
            score=score,
            score_value=score_value,
            events=page,
            cursor=next_cursor,
            messages=sorted(messages, key=lambda m: str(m.get("created_at", ""))),
            journeys=journeys,
            score_history=[
                {"at": e.get("occurred_at"), **(e.get("properties") or {})}
                for e in history
                if e.get("type") == "score_changed"
            ],
            stage_history=[
                {"at": e.get("occurred_at"), **(e.get("properties") or {})}
                for e in history
                if e.get("type") == "stage_changed"
            ],
        )


def _event_order(event: Mapping[str, Any]) -> tuple[str, str]:
    return (str(event.get("occurred_at", "")), str(event.get("event_id", "")))


def _matches(
    item: Mapping[str, Any],
    needles: set[str],
    stage: str | None,
    tag: str | None,
    segment: str | None,
    country: str | None,
) -> bool:
    if stage and item.get("stage") != stage:
        return False
    if tag and tag.strip().lower() not in _set(item.get("tags")):
        return False
    if segment and segment not in _set(item.get("segments")):
        return False
    if country and item.get("country") != country:
        return False
    if needles:
        text = (
            " ".join(str(item.get(k) or "") for k in ("email", "first_name", "last_name")).lower()
            + " "
            + " ".join(_set(item.get("alt_emails")))
        )
        full = f"{item.get('first_name') or ''} {item.get('last_name') or ''}".lower()
        return any(needle in text or needle in full for needle in needles)
    return True


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("cursor", "is not a cursor of this listing") from exc


def _encode_key(key: Mapping[str, Any]) -> str:
    return _b64({"pk": str(key["pk"]), "sk": str(key["sk"])})


def _decode_key(cursor: str) -> dict[str, Any]:
    data = _unb64(cursor)
    if not isinstance(data, dict) or not isinstance(data.get("pk"), str) or data.get("sk") != keys.PROFILE:
        raise InvalidInput("cursor", "is not a cursor of this listing")
    return {"pk": data["pk"], "sk": data["sk"]}


def _encode_cursor(order: tuple[str, str]) -> str:
    return _b64(list(order))


def _decode_cursor(cursor: str) -> tuple[str, str]:
    data = _unb64(cursor)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(p, str) for p in data)):
        raise InvalidInput("cursor", "is not a cursor of this timeline")
    return data[0], data[1]
