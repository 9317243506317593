"""The contact profile's one owner: profiles, the email and phone indexes and visitor links in the
contacts table (``C#<id>``/``PROFILE``, ``EMAIL#<address>``, ``PHONE#<e164>``, ``V#<visitor>``).

Invariants: every write of a profile is built here (the services get operations to commit in their
own transactions); ``resolve`` is the one reader that follows a merge to the survivor. How a request
is shaped, paged, batched and committed is ``leadflow.platform.dynamo``'s."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from leadflow.contacts.model import Contact
from leadflow.kernel import ids
from leadflow.platform.dynamo import (
    batch_get,
    get,
    put_op,
    serialize,
    update_op,
    values,
)
from leadflow.platform.tables import keys


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
