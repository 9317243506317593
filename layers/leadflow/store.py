"""DynamoDB access: small classes around an injected boto3 DynamoDB *client*.

Each store knows one table's item shapes (see ``tables.py`` for keys). Writes that must happen
together are expressed as transaction items and committed in one ``transact_write_items`` call, so
nothing is ever half-stored; idempotency markers ride in the same transaction as the effect they
guard, which makes stream and Step Functions retries harmless.

How a request is shaped, paged, batched and committed is ``leadflow.platform.dynamo``'s (update
builder, paginators, batches with backoff, named transactions); its primitives (``serialize``,
``values``, ``put_op``, ``Transaction`` ...) are re-exported here for the modules that import them
from the stores.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from leadflow import ids
from leadflow.clock import parse_iso
from leadflow.models import Contact, Event
from leadflow.platform.dynamo import Item as Item
from leadflow.platform.dynamo import Transaction as Transaction
from leadflow.platform.dynamo import TransactionCancelled as TransactionCancelled
from leadflow.platform.dynamo import batch_get, get, put_if, query_all, scan_all, update, update_if, update_op
from leadflow.platform.dynamo import cancellation_codes as cancellation_codes
from leadflow.platform.dynamo import deserialize as deserialize
from leadflow.platform.dynamo import is_conditional_failure as is_conditional_failure
from leadflow.platform.dynamo import put_op as put_op
from leadflow.platform.dynamo import serialize as serialize
from leadflow.platform.dynamo import values as values
from leadflow.tables import EVENTS_BY_TIME, keys, time_key


def event_history(
    client: Any,
    table: str,
    subject_pk: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> Iterator[Item]:
    """A subject's (``C#<contact>``/``V#<visitor>``) events in the order they happened, from the
    ``by_time`` index: ``since``/``until`` inclusive (to the millisecond), every page read (boto3
    paginator) unless ``limit`` events were yielded. Correct whatever the event ids are."""
    condition = "pk = :pk"
    bounds: dict[str, Any] = {"pk": subject_pk}
    if since is not None and until is not None:
        condition += " AND #at BETWEEN :lo AND :hi"
        bounds.update(lo=time_key(since), hi=time_key(until) + "$")
    elif since is not None:
        condition += " AND #at >= :lo"
        bounds["lo"] = time_key(since)
    elif until is not None:
        condition += " AND #at <= :hi"
        bounds["hi"] = time_key(until) + "$"
    names = {"ExpressionAttributeNames": {"#at": EVENTS_BY_TIME.sort_key}} if len(bounds) > 1 else {}
    yield from query_all(
        client,
        limit=limit,
        TableName=table,
        IndexName=EVENTS_BY_TIME.name,
        KeyConditionExpression=condition,
        ExpressionAttributeValues=values(**bounds),
        ScanIndexForward=not newest_first,
        PaginationConfig={"PageSize": 100 if limit is None else min(100, limit)},
        **names,
    )


def backfill_event_times(client: Any, table: str) -> int:
    """Give every event written before the ``by_time`` index existed its ``at`` (the index key), so
    history reads see it: run once per deployed stage after the upgrade. Idempotent and resumable
    (items that have ``at`` are filtered out; each write is conditional on it still missing); the
    stream's MODIFY records are skipped by the consumers (they read INSERTs only). Returns how
    many items it updated."""
    updated = 0
    for item in scan_all(
        client,
        TableName=table,
        FilterExpression="attribute_not_exists(#at) AND begins_with(sk, :ev)",
        ProjectionExpression="pk, sk, event_id, occurred_at",
        ExpressionAttributeNames={"#at": EVENTS_BY_TIME.sort_key},
        ExpressionAttributeValues=values(ev="EV#"),
    ):
        occurred = parse_iso(item.get("occurred_at"))
        if occurred is None:
            continue
        event_id = str(item.get("event_id") or str(item["sk"]).removeprefix("EV#"))
        op = update_op(
            table,
            {"pk": item["pk"], "sk": item["sk"]},
            sets={EVENTS_BY_TIME.sort_key: keys.event_time(occurred, event_id)},
            condition="attribute_exists(pk) AND attribute_not_exists(#s0)",
        )
        if update_if(client, op):
            updated += 1
    return updated


class EventStore:
    """The events table: one put per event, never updated. Every item carries ``at`` (the
    ``by_time`` index key), so a subject's history reads in time order (``history``)."""

    def __init__(self, client: Any, table: str, retention_days: int, now: Callable[[], float] = time.time):
        self._client = client
        self._table = table
        self._retention_s = retention_days * 86400
        self._now = now

    def item(self, event: Event) -> Item:
        subject = keys.contact(event.contact_id) if event.contact_id else keys.visitor(event.visitor_id or "")
        occurred = parse_iso(event.occurred_at)
        if occurred is None:
            raise ValueError(f"event {event.event_id}: occurred_at {event.occurred_at!r} is not ISO 8601")
        return {
            "pk": subject,
            "sk": keys.event(event.event_id),
            **event.model_dump(exclude_none=True),
            EVENTS_BY_TIME.sort_key: keys.event_time(occurred, event.event_id),
            "expires_at": int(self._now()) + self._retention_s,
        }

    def get(self, subject_pk: str, event_id: str) -> Item | None:
        """One event by its id (e.g. the entry event a template or a ``wait_until`` reads)."""
        return get(self._client, self._table, {"pk": subject_pk, "sk": keys.event(event_id)})

    def history(
        self,
        subject_pk: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Item]:
        """See ``event_history``."""
        return event_history(
            self._client,
            self._table,
            subject_pk,
            since=since,
            until=until,
            newest_first=newest_first,
            limit=limit,
        )

    def put_op(self, event: Event) -> dict[str, Any]:
        return put_op(self._table, self.item(event), "attribute_not_exists(pk)")

    def record(self, event: Event) -> None:
        """The hot path: exactly one write, no read."""
        self._client.put_item(
            TableName=self._table,
            Item=serialize(self.item(event)),
            ConditionExpression="attribute_not_exists(pk)",
        )


class IdempotencyMarks:
    """Markers written in the same transaction as the effect they make exactly-once."""

    def __init__(self, client: Any, table: str, ttl_days: int = 30, now: Callable[[], float] = time.time):
        self._client = client
        self._table = table
        self._ttl_s = ttl_days * 86400
        self._now = now

    def put_op(self, kind: str, key: str) -> dict[str, Any]:
        item = {"pk": f"{kind}#{key}", "sk": keys.MARK, "expires_at": int(self._now()) + self._ttl_s}
        return put_op(self._table, item, "attribute_not_exists(pk)")

    def exists(self, kind: str, key: str) -> bool:
        resp = self._client.get_item(
            TableName=self._table,
            Key=serialize({"pk": f"{kind}#{key}", "sk": keys.MARK}),
            ConsistentRead=True,
        )
        return "Item" in resp

    def decide(self, kind: str, key: str, value: str) -> str:
        """Record ``value`` as the decision for ``key`` unless one is recorded already (conditional
        put: the first writer wins); the recorded decision."""
        item = {
            "pk": f"{kind}#{key}",
            "sk": keys.MARK,
            "value": value,
            "expires_at": int(self._now()) + self._ttl_s,
        }
        if put_if(self._client, put_op(self._table, item, "attribute_not_exists(pk)")):
            return value
        recorded = get(self._client, self._table, {"pk": f"{kind}#{key}", "sk": keys.MARK}, consistent=True)
        assert recorded is not None  # the condition failed: it exists (marks expire after days)
        return str(recorded["value"])


def resolve_profile(client: Any, table: str, contact_id: str) -> tuple[str, dict[str, Any]] | None:
    """The live profile of a contact id and that profile's contact id (consistent reads): a merged
    contact's survivor, the merge followed once; None for an unknown id or a tombstone whose
    survivor was merged again."""
    profile = get(client, table, ContactStore.profile_key(contact_id), consistent=True)
    if profile is not None and profile.get("merged_into"):
        contact_id = str(profile["merged_into"])
        profile = get(client, table, ContactStore.profile_key(contact_id), consistent=True)
    if profile is None or profile.get("merged_into"):
        return None
    return contact_id, profile


class ContactStore:
    """Contact profiles, the email index and visitor links."""

    def __init__(self, client: Any, table: str):
        self._client = client
        self._table = table

    @property
    def table(self) -> str:
        return self._table

    @staticmethod
    def profile_key(contact_id: str) -> dict[str, str]:
        return {"pk": keys.contact(contact_id), "sk": keys.PROFILE}

    def get(self, contact_id: str) -> Contact | None:
        item = self.profile(contact_id)
        return Contact.model_validate(item) if item is not None else None

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        """The stored profile item, every field (a template's context is made from it)."""
        return get(self._client, self._table, self.profile_key(contact_id))

    def resolve(self, contact_id: str) -> tuple[str, dict[str, Any]] | None:
        """See ``resolve_profile``."""
        return resolve_profile(self._client, self._table, contact_id)

    def profiles(self, contact_ids: Sequence[str], fields: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """Profiles by contact id, 100 per BatchGetItem (unprocessed keys retried); only ``fields``
        when given (``contact_id`` always). Unknown ids are absent."""
        names = ["contact_id", *(f for f in fields if f != "contact_id")] if fields else []
        items = batch_get(
            self._client,
            self._table,
            [{"pk": keys.contact(c), "sk": keys.PROFILE} for c in contact_ids],
            fields=names,
        )
        return {str(item["contact_id"]): item for item in items if item.get("contact_id")}

    def contact_id_for_email(self, email: str) -> str | None:
        resp = self._client.get_item(
            TableName=self._table,
            Key=serialize({"pk": keys.email(email), "sk": keys.EMAIL}),
            ProjectionExpression="contact_id",
            ConsistentRead=True,
        )
        return str(resp["Item"]["contact_id"]["S"]) if "Item" in resp else None

    def email_claim_op(self, email: str, contact_id: str) -> dict[str, Any]:
        """The email index entry; fails the transaction if the address belongs to another contact."""
        op = put_op(
            self._table,
            {"pk": keys.email(email), "sk": keys.EMAIL, "contact_id": contact_id},
            "attribute_not_exists(pk) OR contact_id = :cid",
        )
        op["Put"]["ExpressionAttributeValues"] = values(cid=contact_id)
        return op

    def upsert_profile_op(
        self, contact_id: str, fields: Mapping[str, Any], at: str, *, visitor_id: str | None = None
    ) -> dict[str, Any]:
        """Create or update a profile: set the given fields, keep created_at and score; remember the
        visitor id (its anonymous history belongs to the contact: export and erasure find it)."""
        return update_op(
            self._table,
            {"pk": keys.contact(contact_id), "sk": keys.PROFILE},
            set_clauses=[
                "created_at = if_not_exists(created_at, :at)",
                "updated_at = :at",
                "contact_id = :cid",
                "score = if_not_exists(score, :zero)",
            ],
            values_={"at": at, "cid": contact_id, "zero": 0},
            sets=dict(sorted(fields.items())),
            add={"visitor_ids": {visitor_id}} if visitor_id else None,
        )

    def consent_log_op(
        self,
        contact_id: str,
        *,
        channel: str,
        action: str,
        source: str,
        at: str,
        ip: str | None = None,
        text: str | None = None,
    ) -> dict[str, Any]:
        """One entry of the contact's consent log (GDPR art. 7(1): proof of consent): what was
        agreed to or withdrawn, when, where, from which (truncated) IP, and the wording shown."""
        item: dict[str, Any] = {
            "pk": keys.contact(contact_id),
            "sk": f"CONSENT#{at}#{ids.ulid()}",
            "channel": channel,
            "action": action,
            "source": source,
            "at": at,
            "ip": ip,
        }
        if text:
            item["text"] = text
            item["text_version"] = hashlib.sha256(text.encode()).hexdigest()[:12]
        return put_op(self._table, item)

    def revoke_email_consent_op(self, contact_id: str, at: str, source: str) -> dict[str, Any]:
        """Flip email consent to revoked; fails (condition) when already revoked or no such contact."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={
                "consent_email": "revoked",
                "consent_updated_at": at,
                "consent_source": source,
                "unsubscribed_at": at,
                "updated_at": at,
            },
            condition="attribute_exists(pk) AND consent_email <> :revoked",
            values_={"revoked": "revoked"},
        )

    def add_score_op(self, contact_id: str, points: int, at: str) -> dict[str, Any]:
        return update_op(
            self._table,
            self.profile_key(contact_id),
            add={"score": points},
            sets={"score_updated_at": at},
            condition="attribute_exists(pk)",
        )

    # --- phone index, suppression list, consent and do-not-contact --------------------------------

    PHONE_SK = "PHONE"
    SUPPRESSION_SK = "SUPPRESSION"

    @staticmethod
    def phone_key(phone: str) -> str:
        return f"PHONE#{phone}"

    @staticmethod
    def suppression_key(email: str) -> str:
        """The suppression item's key: a hash of the normalized address, so the entry outlives the
        contact (a re-import or a new sign-up of the address stays suppressed) without storing it."""
        return "SUPPRESS#" + hashlib.sha256(email.strip().lower().encode()).hexdigest()

    def contact_id_for_phone(self, phone: str) -> str | None:
        resp = self._client.get_item(
            TableName=self._table,
            Key=serialize({"pk": self.phone_key(phone), "sk": self.PHONE_SK}),
            ProjectionExpression="contact_id",
            ConsistentRead=True,
        )
        return str(resp["Item"]["contact_id"]["S"]) if "Item" in resp else None

    def phone_index_op(self, phone: str, contact_id: str, at: str) -> dict[str, Any]:
        """The phone index entry (E.164 -> contact): the contact that gave the number last owns it."""
        return put_op(
            self._table,
            {"pk": self.phone_key(phone), "sk": self.PHONE_SK, "contact_id": contact_id, "updated_at": at},
        )

    def suppression(self, email: str) -> str | None:
        """Why the address is on the suppression list ("bounce" or "complaint"), or None."""
        item = get(
            self._client,
            self._table,
            {"pk": self.suppression_key(email), "sk": self.SUPPRESSION_SK},
            consistent=True,
        )
        return str(item["reason"]) if item is not None else None

    def suppression_op(self, email: str, reason: str, at: str) -> dict[str, Any]:
        """Put the address on the suppression list (the latest reason wins; first date kept)."""
        return update_op(
            self._table,
            {"pk": self.suppression_key(email), "sk": self.SUPPRESSION_SK},
            sets={"reason": reason, "updated_at": at},
            set_once={"suppressed_at": at},
        )

    def suppress_profile_op(self, contact_id: str, reason: str, at: str) -> dict[str, Any]:
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={"suppressed": reason, "suppressed_at": at, "updated_at": at},
            condition="attribute_exists(pk)",
        )

    def confirm_email_consent_op(self, contact_id: str, at: str) -> dict[str, Any]:
        """Pending -> granted (double opt-in); fails (condition) unless the consent is pending."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={
                "consent_email": "granted",
                "consent_updated_at": at,
                "consent_source": "double_opt_in",
                "consent_confirmed_at": at,
                "updated_at": at,
            },
            condition="attribute_exists(pk) AND consent_email = :pending",
            values_={"pending": "pending"},
        )

    def revoke_sms_consent_op(self, contact_id: str, at: str, source: str) -> dict[str, Any]:
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={
                "consent_sms": "revoked",
                "consent_sms_updated_at": at,
                "consent_sms_source": source,
                "updated_at": at,
            },
            condition="attribute_exists(pk)",
        )

    def do_not_contact_op(self, contact_id: str, reason: str, at: str) -> dict[str, Any]:
        """Mark a contact do-not-contact; fails (condition) when already marked or no such contact."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={
                "do_not_contact": True,
                "do_not_contact_reason": reason,
                "do_not_contact_at": at,
                "updated_at": at,
            },
            condition="attribute_exists(pk) AND (attribute_not_exists(do_not_contact) OR do_not_contact <> :yes)",
            values_={"yes": True},
        )


class MessageStore:
    """One item per journey message, keyed by a deterministic id per (execution, step)."""

    def __init__(self, client: Any, table: str, ttl_days: int = 400, now: Callable[[], float] = time.time):
        self._client = client
        self._table = table
        self._ttl_s = ttl_days * 86400
        self._now = now

    def _key(self, message_id: str) -> dict[str, Any]:
        return serialize({"pk": keys.message(message_id), "sk": keys.MSG})

    def claim(self, message_id: str, fields: Mapping[str, Any], at: str) -> bool:
        """Claim the right to send: True for the first attempt, or a retry of one that never reached SES."""
        item = {
            "pk": keys.message(message_id),
            "sk": keys.MSG,
            "message_id": message_id,
            **fields,
            "status": "sending",
            "created_at": at,
            "expires_at": int(self._now()) + self._ttl_s,
        }
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(item),
                # "sending" is re-claimable: an attempt that never reached the provider may have
                # failed to release its claim; one that did reach it moved on to "handing_over"
                ConditionExpression="attribute_not_exists(pk) OR #s IN (:retryable, :sending)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(retryable="retryable", sending="sending"),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def get(self, message_id: str) -> Item | None:
        resp = self._client.get_item(TableName=self._table, Key=self._key(message_id), ConsistentRead=True)
        return deserialize(resp["Item"]) if "Item" in resp else None

    def hand_over(self, message_id: str, at: str) -> bool:
        """Mark the moment the message goes to the provider (after this, a retry never re-sends);
        False if another attempt changed the claim meanwhile."""
        op = update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            sets={"status": "handing_over", "handed_over_at": at},
            condition="#status = :sending",
            names={"#status": "status"},
            values_={"sending": "sending"},
        )
        return update_if(self._client, op)

    def finish_op(self, message_id: str, status: str, at: str, **extra: Any) -> dict[str, Any]:
        return update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            sets={"status": status, "finished_at": at, **extra},
            condition="#status IN (:sending, :over)",
            names={"#status": "status"},
            values_={"sending": "sending", "over": "handing_over"},
        )

    def finish(self, message_id: str, status: str, at: str, **extra: Any) -> None:
        update(self._client, self.finish_op(message_id, status, at, **extra))

    def mark_engaged(self, message_id: str, attribute: str, at: str) -> bool:
        """Record the first open/click of a message; idempotent. False if no such message."""
        op = update_op(
            self._table,
            {"pk": keys.message(message_id), "sk": keys.MSG},
            set_once={attribute: at},
            condition="attribute_exists(pk)",
        )
        return update_if(self._client, op)
