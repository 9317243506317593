"""The contact profile's one owner: profiles, the email and phone indexes and visitor links in the
contacts table (``C#<id>``/``PROFILE``, ``EMAIL#<address>``, ``PHONE#<e164>``, ``V#<visitor>``).

Invariants: every write of a profile is built here (the services get operations to commit in their
own transactions), and only erasure deletes one (``delete_items``, last of a contact's items); ``resolve`` is the one reader that follows a merge to the survivor. How a request
is shaped, paged, batched and committed is ``leadflow.platform.dynamo``'s."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from leadflow.contacts.model import Contact
from leadflow.kernel import ids
from leadflow.platform.dynamo import (
    Op,
    batch_get,
    delete_items,
    get,
    pages,
    put_if,
    put_op,
    query_all,
    serialize,
    update,
    update_op,
    values,
)
from leadflow.platform.tables import Prefix, keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def resolve_profile(client: DynamoDBClient, table: str, contact_id: str) -> tuple[str, dict[str, Any]] | None:
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

    def __init__(self, client: DynamoDBClient, table: str):
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

    def profile(
        self, contact_id: str, *, consistent: bool = False, fields: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """The stored profile item (a tombstone too): every field (a template's context is made from
        it), or only ``fields``."""
        return get(
            self._client, self._table, self.profile_key(contact_id), consistent=consistent, fields=fields
        )

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

    def _index_owner(self, pk: str, sk: str) -> str | None:
        """The contact an index item (email, phone) points to, or None (no such entry)."""
        resp = self._client.get_item(
            TableName=self._table,
            Key=serialize({"pk": pk, "sk": sk}),
            ProjectionExpression="contact_id",
            ConsistentRead=True,
        )
        return str(resp["Item"]["contact_id"]["S"]) if "Item" in resp else None

    def contact_id_for_email(self, email: str) -> str | None:
        return self._index_owner(keys.email(email), keys.EMAIL)

    def email_owners(self, emails: Sequence[str]) -> dict[str, str]:
        """email -> the contact id its index entry names, for the addresses that are known (batched,
        unprocessed keys retried)."""
        items = batch_get(
            self._client, self._table, [{"pk": keys.email(e), "sk": keys.EMAIL} for e in emails]
        )
        by_pk = {str(item["pk"]): str(item["contact_id"]) for item in items}
        return {email: by_pk[keys.email(email)] for email in emails if keys.email(email) in by_pk}

    def profile_pages(
        self, *, after: Mapping[str, Any] | None = None, page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Raw scan pages over the live profiles (tombstones filtered out), from ``after`` (a page's
        ``LastEvaluatedKey``); each keeps ``ScannedCount`` and ``LastEvaluatedKey`` for cursors."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :profile AND attribute_not_exists(merged_into)",
            "ExpressionAttributeValues": values(profile=keys.PROFILE),
            "Limit": page_size,
        }
        if after:
            params["ExclusiveStartKey"] = serialize(after)
        return pages(self._client, "scan", **params)

    def partition(
        self, contact_id: str, *, sk_prefix: str = "", limit: int | None = 10_000, consistent: bool = False
    ) -> list[dict[str, Any]]:
        """The items of a contact's partition ``C#<id>`` (profile, consent log, journey enrollments
        ``J#``, caps), those whose sort key starts with ``sk_prefix`` when given."""
        condition = "pk = :pk AND begins_with(sk, :prefix)" if sk_prefix else "pk = :pk"
        bound = (
            values(pk=keys.contact(contact_id), prefix=sk_prefix)
            if sk_prefix
            else values(pk=keys.contact(contact_id))
        )
        return list(
            query_all(
                self._client,
                limit=limit,
                TableName=self._table,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=bound,
                ConsistentRead=consistent,
            )
        )

    def segment_scan_page(
        self, lane: int, lanes: int, limit: int, start: Mapping[str, Any] | None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page (``limit`` items read) of lane ``lane`` of ``lanes`` parallel scans over the
        profiles a segment evaluation visits (merged tombstones only while they still hold
        segments: the engine empties them), from the raw key ``start``: their contact ids and the
        raw ``LastEvaluatedKey`` to go on from (None: the lane is done)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "Segment": lane,
            "TotalSegments": lanes,
            "Limit": limit,
            "FilterExpression": "sk = :profile AND (attribute_not_exists(merged_into) OR attribute_exists(#segs))",
            "ProjectionExpression": "pk",
            "ExpressionAttributeNames": {"#segs": "segments"},
            "ExpressionAttributeValues": values(profile=keys.PROFILE),
        }
        if start:
            params["ExclusiveStartKey"] = dict(start)
        page = next(pages(self._client, "scan", **params))
        contact_ids = [str(item["pk"]["S"]).removeprefix("C#") for item in page["Items"]]
        return contact_ids, page.get("LastEvaluatedKey")

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

    def _profile_update_op(
        self,
        contact_id: str,
        at: str,
        sets: Mapping[str, Any],
        *,
        also: str = "",
        values_: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An update of ``sets`` on an existing profile, stamped ``updated_at``: its condition fails
        when there is no such contact, or when ``also`` (a further condition) is false."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={**sets, "updated_at": at},
            condition="attribute_exists(pk)" + (f" AND {also}" if also else ""),
            values_=values_,
        )

    def revoke_email_consent_op(self, contact_id: str, at: str, source: str) -> dict[str, Any]:
        """Flip email consent to revoked; fails (condition) when already revoked or no such contact."""
        return self._profile_update_op(
            contact_id,
            at,
            {
                "consent_email": "revoked",
                "consent_updated_at": at,
                "consent_source": source,
                "unsubscribed_at": at,
            },
            also="consent_email <> :revoked",
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

    def create_profile_op(self, contact_id: str, fields: Mapping[str, Any], tags: set[str], at: str) -> Op:
        """A new profile (admin API, imports): one conditional put, failing if the id exists (cheaper
        to evaluate than a long update expression)."""
        item: dict[str, Any] = {
            **self.profile_key(contact_id),
            "contact_id": contact_id,
            "created_at": at,
            "updated_at": at,
            "score": 0,
            **fields,
        }
        if tags:
            item["tags"] = set(tags)
        return put_op(self._table, item, "attribute_not_exists(pk)")

    def update_profile_op(self, contact_id: str, fields: Mapping[str, Any], tags: set[str], at: str) -> Op:
        """Set fields and add tags on an existing, unmerged profile (admin API, imports)."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={"updated_at": at, **dict(sorted(fields.items()))},
            add={"tags": set(tags)} if tags else None,
            condition="attribute_exists(pk) AND attribute_not_exists(#mi)",
            names={"#mi": "merged_into"},
        )

    def tags_op(self, contact_id: str, tags: set[str], at: str, *, unchanged_since: str | None) -> Op:
        """Replace the tags of a live profile that is unchanged since it was read (the same
        ``updated_at``, ``unchanged_since``; None: it had none yet)."""
        condition = "attribute_exists(pk) AND attribute_not_exists(#mi) AND "
        condition += "#u = :prev" if unchanged_since else "attribute_not_exists(#u)"
        return update_op(
            self._table,
            self.profile_key(contact_id),
            set_clauses=["#u = :at"],
            sets={"tags": tags or None},
            remove=[] if tags else ["tags"],
            condition=condition,
            names={"#u": "updated_at", "#mi": "merged_into"},
            values_={"at": at, "prev": unchanged_since} if unchanged_since else {"at": at},
        )

    def add_visitor_op(self, contact_id: str, visitor_id: str, at: str) -> dict[str, Any]:
        """Remember the visitor id on an existing, unmerged profile."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={"updated_at": at},
            add={"visitor_ids": {visitor_id}},
            condition="attribute_exists(pk) AND attribute_not_exists(merged_into)",
        )

    def journey_update_op(
        self,
        contact_id: str,
        *,
        sets: Mapping[str, Any],
        add: Mapping[str, Any] | None = None,
        delete: Mapping[str, set[str]] | None = None,
        remove: Sequence[str] = (),
    ) -> Op:
        """A journey's ``update_contact`` step on an existing profile. A stage change comes with
        ``add={"lead_version": 1}``, so the lead engine's optimistic lock sees it and re-reads."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets=sets,
            add=dict(add) if add else None,
            delete=dict(delete) if delete else None,
            remove=list(remove),
            condition="attribute_exists(pk)",
        )

    def owner_op(self, contact_id: str, owner: str, at: str) -> Op:
        """The sales owner a hand-off assigned; bumps ``lead_version`` (the lead engine re-reads)."""
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets={"owner": owner, "owner_assigned_at": at, "updated_at": at},
            add={"lead_version": 1},
            condition="attribute_exists(pk)",
        )

    def locked_update_op(
        self,
        contact_id: str,
        version: Any,
        *,
        sets: Mapping[str, Any] | None = None,
        set_once: Mapping[str, Any] | None = None,
        add: Mapping[str, set[str]] | None = None,
        remove: Sequence[str] = (),
        delete: Mapping[str, set[str]] | None = None,
        stage_from: tuple[str | None] | None = None,
        live: bool = True,
    ) -> Op:
        """Lead fields (stage, scores, owner, segments, sales outcome ...) changed under the optimistic
        lock: the profile's ``lead_version`` is still ``version`` (None: it has none yet) and becomes
        ``version + 1``; ``set_once``: fields written only where absent. ``live``: the profile exists and is no tombstone; ``stage_from``: its stage is
        still ``stage_from[0]`` (None: it has none)."""
        names = {"#lv": "lead_version"}
        vals: dict[str, Any] = {}
        clauses: list[str] = []
        if live:
            names["#mi"] = "merged_into"
            clauses.append("attribute_exists(pk) AND attribute_not_exists(#mi)")
        if version is None:
            clauses.append("attribute_not_exists(#lv)")
        else:
            clauses.append("#lv = :old_version")
            vals["old_version"] = version
        if stage_from is not None:
            names["#st"] = "stage"
            if stage_from[0] is None:
                clauses.append("attribute_not_exists(#st)")
            else:
                clauses.append("#st = :old_stage")
                vals["old_stage"] = stage_from[0]
        return update_op(
            self._table,
            self.profile_key(contact_id),
            sets=dict(sorted({**(sets or {}), "lead_version": int(version or 0) + 1}.items())),
            set_once=dict(sorted(set_once.items())) if set_once else None,
            add=dict(add) if add else None,
            remove=list(remove),
            delete=dict(delete) if delete else None,
            condition=" AND ".join(clauses),
            names=names,
            values_=vals,
        )

    # --- merge: the tombstone and the index entries moved to the survivor --------------------------

    def items(self, item_keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items of the contacts table by (pk, sk) (batched, consistent reads not needed: index
        entries are re-checked by the conditions of what is written)."""
        found = batch_get(self._client, self._table, [{"pk": pk, "sk": sk} for pk, sk in item_keys])
        return {(str(item["pk"]), str(item["sk"])): item for item in found}

    def tombstone_op(
        self, contact_id: str, profile: Mapping[str, Any], survivor_id: str, at: str, keep: Sequence[str]
    ) -> Op:
        """A merged contact's profile replaced by a tombstone that keeps only ``keep`` (no personal
        field), if unchanged since read (its ``lead_version``); readers follow ``merged_into``."""
        item: dict[str, Any] = {
            **self.profile_key(contact_id),
            **{k: profile[k] for k in keep if profile.get(k)},
            "merged_into": survivor_id,
            "merged_at": at,
            "updated_at": at,
            "lead_version": int(profile.get("lead_version") or 0) + 1,
        }
        if "segments" in item:
            item["segments"] = {str(s) for s in item["segments"]}
        version = profile.get("lead_version")
        condition = "attribute_exists(pk) AND attribute_not_exists(merged_into) AND "
        op = put_op(
            self._table,
            item,
            condition + ("attribute_not_exists(lead_version)" if version is None else "lead_version = :lv"),
        )
        if version is not None:
            op["Put"]["ExpressionAttributeValues"] = values(lv=version)
        return op

    def repoint_op(self, item: Mapping[str, Any], from_id: str, to_id: str) -> Op:
        """An index entry (email, phone, visitor link) moved from one contact to another, if it
        still names the first."""
        op = put_op(self._table, {**item, "contact_id": to_id}, "contact_id = :from_id")
        op["Put"]["ExpressionAttributeValues"] = values(from_id=from_id)
        return op

    def put_if(self, op: Op) -> bool:
        """One conditional put of this store outside a transaction; False when its condition fails."""
        return put_if(self._client, op)

    ERASURE_SK = "ERASURE"
    erasure_key = Prefix("ERASURE")

    def record_erasure(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        """The record that the contact was erased (when, why, by whom, what): all that is kept."""
        item = {"pk": self.erasure_key(contact_id), "sk": self.ERASURE_SK, "contact_id": contact_id, **fields}
        self._client.put_item(TableName=self._table, Item=serialize(item))

    def erasure(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's erasure record, or None."""
        key = {"pk": self.erasure_key(contact_id), "sk": self.ERASURE_SK}
        return get(self._client, self._table, key, consistent=True)

    # --- phone index, suppression list, consent and do-not-contact --------------------------------

    PHONE_SK = "PHONE"
    SUPPRESSION_SK = "SUPPRESSION"

    phone_key = Prefix("PHONE")
    routing_key = Prefix("ROUTING")
    TURN_SK = "RR"

    def next_turn(self, rule_id: str) -> int:
        """1, 2, 3... per routing rule (its round-robin turns, ``ROUTING#<rule>``/``RR``), atomically:
        each caller gets its own number."""
        resp = self._client.update_item(
            TableName=self._table,
            Key=serialize({"pk": self.routing_key(rule_id), "sk": self.TURN_SK}),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues=values(one=1),
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["n"]["N"])

    @staticmethod
    def suppression_key(email: str) -> str:
        """The suppression item's key: a hash of the normalized address, so the entry outlives the
        contact (a re-import or a new sign-up of the address stays suppressed) without storing it."""
        return "SUPPRESS#" + hashlib.sha256(email.strip().lower().encode()).hexdigest()

    def contact_id_for_phone(self, phone: str) -> str | None:
        return self._index_owner(self.phone_key(phone), self.PHONE_SK)

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

    def suppress(self, email: str, reason: str, at: str) -> None:
        """``suppression_op`` on its own (no transaction to join)."""
        update(self._client, self.suppression_op(email, reason, at))

    def delete_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Delete these items of the contacts table (as read: profiles, index entries, a
        partition's items), batched; how many. Only erasure deletes a profile this way."""
        return delete_items(self._client, self._table, items)

    def suppress_profile_op(self, contact_id: str, reason: str, at: str) -> dict[str, Any]:
        return self._profile_update_op(contact_id, at, {"suppressed": reason, "suppressed_at": at})

    def confirm_email_consent_op(self, contact_id: str, at: str) -> dict[str, Any]:
        """Pending -> granted (double opt-in); fails (condition) unless the consent is pending."""
        granted = {"consent_email": "granted", "consent_source": "double_opt_in"}
        return self._profile_update_op(
            contact_id,
            at,
            {**granted, "consent_updated_at": at, "consent_confirmed_at": at},
            also="consent_email = :pending",
            values_={"pending": "pending"},
        )

    def revoke_sms_consent_op(self, contact_id: str, at: str, source: str) -> dict[str, Any]:
        revoked = {"consent_sms": "revoked", "consent_sms_updated_at": at, "consent_sms_source": source}
        return self._profile_update_op(contact_id, at, revoked)

    def do_not_contact_op(self, contact_id: str, reason: str, at: str) -> dict[str, Any]:
        """Mark a contact do-not-contact; fails (condition) when already marked or no such contact."""
        return self._profile_update_op(
            contact_id,
            at,
            {"do_not_contact": True, "do_not_contact_reason": reason, "do_not_contact_at": at},
            also="(attribute_not_exists(do_not_contact) OR do_not_contact <> :yes)",
            values_={"yes": True},
        )


class VisitorLinks:
    """The visitor link items ``V#<vid>``/``LINK`` {contact_id, linked_at} of the contacts table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def linked_contact(self, visitor_id: str, *, consistent: bool = True) -> str | None:
        link = get(
            self._client,
            self._table,
            {"pk": keys.visitor(visitor_id), "sk": keys.LINK},
            consistent=consistent,
        )
        return str(link["contact_id"]) if link else None

    def link_op(self, visitor_id: str, contact_id: str, at: str) -> dict[str, Any]:
        """The first link of a visitor id (fails the transaction when it is linked already)."""
        return put_op(
            self._table,
            {"pk": keys.visitor(visitor_id), "sk": keys.LINK, "contact_id": contact_id, "linked_at": at},
            "attribute_not_exists(pk)",
        )
