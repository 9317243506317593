"""The admin API's queries: what an integration or an operator may read about a contact.

Admin routes sit behind IAM authorization in AWS (a local dev credential in the local runtime);
identifiers travel in paths, personal data (an email to look up) only in request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.errors import NotFound
from leadflow.models import normalize_email
from leadflow.store import ContactStore, deserialize, serialize
from leadflow.tables import keys

TIMELINE_LIMIT = 100


class ContactLookup(BaseModel):
    """``POST /admin/contacts/lookup``: find a contact by email (in the body, never in a URL)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)

    @field_validator("email")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_email(value)


class ContactRef(BaseModel):
    contact_id: str


class TimelineEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_id: str
    type: str
    occurred_at: str
    source: str
    message_id: str | None = None
    journey_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class ContactView(BaseModel):
    """A contact's profile and its most recent events, newest first."""

    contact_id: str
    profile: dict[str, Any]
    events: list[TimelineEvent]
    events_truncated: bool


class ContactDirectory:
    def __init__(self, *, contacts: ContactStore, ddb: Any, events_table: str) -> None:
        self._contacts = contacts
        self._ddb = ddb
        self._events_table = events_table

    def lookup(self, query: ContactLookup) -> ContactRef:
        contact_id = self._contacts.contact_id_for_email(query.email)
        if contact_id is None:
            raise NotFound("contact")
        return ContactRef(contact_id=contact_id)

    def view(self, contact_id: str) -> ContactView:
        resp = self._ddb.get_item(
            TableName=self._contacts.table,
            Key=serialize({"pk": keys.contact(contact_id), "sk": keys.PROFILE}),
            ConsistentRead=True,
        )
        if "Item" not in resp:
            raise NotFound("contact")
        profile = {k: v for k, v in deserialize(resp["Item"]).items() if k not in ("pk", "sk")}
        page = self._ddb.query(
            TableName=self._events_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": keys.contact(contact_id)}),
            ScanIndexForward=False,  # event ids are ULIDs: newest first
            Limit=TIMELINE_LIMIT,
        )
        events = [TimelineEvent.model_validate(deserialize(item)) for item in page["Items"]]
        return ContactView(
            contact_id=contact_id,
            profile=profile,
            events=events,
            events_truncated="LastEvaluatedKey" in page,
        )
