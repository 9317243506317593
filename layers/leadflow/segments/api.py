"""Admin routes of segments: list/define/delete segments, counts, full re-evaluation on demand,
member export (JSON or CSV pages). ``SegmentAdmin`` holds the operations; ``router(admin)`` routes
to it (``leadflow.wiring.admin_app`` builds both; broadcasts have their own routes,
``leadflow.broadcasts.api``)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.contacts.service import ContactName
from leadflow.contacts.store import ContactStore
from leadflow.journeys.conditions import Condition
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import Conflict, InvalidInput, NotFound
from leadflow.leads.model import LeadModel
from leadflow.leads.scoring import current_score, display_score
from leadflow.platform.http import accepted, json_response
from leadflow.segments.definitions import Segment
from leadflow.segments.evaluation import RunStatus, SegmentEvaluations
from leadflow.segments.store import SHARDS, SegmentDefinitionStore, SegmentMembership

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_EXPORT_PAGE = 1000
MEMBER_FIELDS = ("contact_id", "email", "first_name", "last_name", "stage", "score")
PROFILE_FIELDS = (*MEMBER_FIELDS, "score_value", "score_at")


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=1000)
    when: Condition = Field(description="A condition of the journey condition language.")


class SegmentView(BaseModel):
    segment_id: str
    name: str
    description: str | None = None
    when: dict[str, Any]
    source: Literal["file", "api"]
    count: int
    last_run: RunStatus | None = None


class SegmentList(BaseModel):
    segments: list[SegmentView]


class EvaluationAccepted(BaseModel):
    segment_id: str
    run_id: str


class SegmentDeleted(BaseModel):
    segment_id: str
    cleanup_run_id: str


class Member(ContactName):
    stage: str | None = None
    score: int | None = None


class MembersPage(BaseModel):
    segment_id: str
    members: list[Member]
    cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


def _field(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"


def encode_cursor(shard: int, after: str | None) -> str:
    raw = json.dumps({"s": shard, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        shard, after = int(data["s"]), data["a"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInput("cursor", "is not a cursor of this export") from exc
    if not 0 <= shard < SHARDS or not (after is None or isinstance(after, str)):
        raise InvalidInput("cursor", "is not a cursor of this export")
    return shard, after


class SegmentAdmin:
    """The segments' admin operations (routes are thin wrappers)."""

    def __init__(
        self,
        *,
        client: DynamoDBClient,
        contacts_table: str,
        files: list[Segment],
        definitions: SegmentDefinitionStore,
        evaluations: SegmentEvaluations,
        model: LeadModel | None = None,
        now: Callable[[], str] = lambda: iso(utc_now()),
    ) -> None:
        self._model = model or LeadModel()
        self._client = client
        self._table = contacts_table
        self._files = {s.id: s for s in files}
        self._definitions = definitions
        self._evaluations = evaluations
        self._membership = SegmentMembership(client, contacts_table)
        self._now = now

    def find(self, segment_id: str) -> tuple[Segment, Literal["file", "api"]] | None:
        if segment_id in self._files:
            return self._files[segment_id], "file"
        stored = self._definitions.get(segment_id)
        return (stored, "api") if stored else None

    def exists(self, segment_id: str) -> bool:
        return self.find(segment_id) is not None

    def _view(self, segment: Segment, source: Literal["file", "api"], with_run: bool) -> SegmentView:
        return SegmentView(
            segment_id=segment.id,
            name=segment.name,
            description=segment.description,
            when=json.loads(segment.when.model_dump_json(by_alias=True, exclude_none=True)),
            source=source,
            count=self._membership.count(segment.id),
            last_run=self._evaluations.last_run(segment.id) if with_run else None,
        )

    def all(self) -> SegmentList:
        found: list[SegmentView] = [self._view(s, "file", False) for s in self._files.values()]
        found += [self._view(s, "api", False) for s in self._definitions.list() if s.id not in self._files]
        return SegmentList(segments=sorted(found, key=lambda v: v.segment_id))

    def get(self, segment_id: str) -> SegmentView:
        found = self.find(segment_id)
        if found is None:
            raise NotFound(f"segment {segment_id!r}")
        return self._view(*found, with_run=True)

    def put(self, segment_id: str, body: SegmentIn) -> SegmentView:
        if segment_id in self._files:
            raise Conflict(
                f"segment {segment_id!r} is defined by a file; it cannot be changed through the API"
            )
        try:
            segment = Segment.model_validate(
                {"id": segment_id, "name": body.name, "description": body.description, "when": body.when}
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            field = "segment_id" if loc[:1] == ("id",) else _field(loc)
            raise InvalidInput(field, str(err["msg"]).removeprefix("Value error, ")) from exc
        self._definitions.put(segment, self._now())
        self._evaluations.start(segment.id)
        return self._view(segment, "api", with_run=True)

    def delete(self, segment_id: str) -> SegmentDeleted:
        if segment_id in self._files:
            raise Conflict(f"segment {segment_id!r} is defined by a file; remove the file instead")
        if not self._definitions.delete(segment_id):
            raise NotFound(f"segment {segment_id!r}")
        run = self._evaluations.start_cleanup(segment_id)
        return SegmentDeleted(segment_id=segment_id, cleanup_run_id=run)

    def evaluate(self, segment_id: str) -> EvaluationAccepted:
        if not self.exists(segment_id):
            raise NotFound(f"segment {segment_id!r}")
        return EvaluationAccepted(segment_id=segment_id, run_id=self._evaluations.start(segment_id))

    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage:
        if not self.exists(segment_id):
            raise NotFound(f"segment {segment_id!r}")
        shard, after = decode_cursor(cursor) if cursor else (0, None)
        ids: list[str] = []
        next_cursor: str | None = None
        while True:
            page, more = self._membership.members(segment_id, shard, limit=limit - len(ids), after=after)
            ids += page
            if more is None:
                shard, after = shard + 1, None
                if shard >= SHARDS:
                    break
            else:
                after = more
            if len(ids) >= limit:
                next_cursor = encode_cursor(shard, after)
                break
        profiles = self._profiles(ids)
        members = []
        at = utc_now()
        for contact_id in ids:
            profile = profiles.get(contact_id, {})
            members.append(
                Member(
                    contact_id=contact_id,
                    email=profile.get("email"),
                    first_name=profile.get("first_name"),
                    last_name=profile.get("last_name"),
                    stage=profile.get("stage"),
                    score=display_score(current_score(profile, at, self._model)) if profile else None,
                )
            )
        return MembersPage(segment_id=segment_id, members=members, cursor=next_cursor)

    def _profiles(self, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
        return ContactStore(self._client, self._table).profiles(contact_ids, PROFILE_FIELDS)


def members_csv(page: MembersPage) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(MEMBER_FIELDS)
    for member in page.members:
        row = member.model_dump()
        writer.writerow(["" if row[f] is None else _csv_safe(str(row[f])) for f in MEMBER_FIELDS])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """No formula injection when the export is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def router(admin: SegmentAdmin) -> APIGatewayHttpRouter:
    """The routes over ``admin``."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.get("/admin/segments")
    def list_segments() -> SegmentList:
        return admin.all()

    @router.get("/admin/segments/<segment_id>")
    def get_segment(segment_id: str) -> SegmentView:
        return admin.get(segment_id)

    @router.put("/admin/segments/<segment_id>")
    def put_segment(segment_id: str, body: SegmentIn) -> SegmentView:
        return admin.put(segment_id, body)

    @router.delete(
        "/admin/segments/<segment_id>",
        responses=accepted(SegmentDeleted, "Deleted; members are being removed"),
    )
    def delete_segment(segment_id: str) -> Response[str]:
        return json_response(HTTPStatus.ACCEPTED, admin.delete(segment_id))

    @router.post(
        "/admin/segments/<segment_id>/evaluate", responses=accepted(EvaluationAccepted, "Evaluation started")
    )
    def evaluate_segment(segment_id: str) -> Response[str]:
        return json_response(HTTPStatus.ACCEPTED, admin.evaluate(segment_id))

    @router.get(
        "/admin/segments/<segment_id>/members",
        responses={
            200: {
                "description": "A page of members (CSV: the next cursor is in the X-Next-Cursor header)",
                "content": {
                    "application/json": {"model": MembersPage},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
    )
    def segment_members(
        segment_id: str,
        limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
    ) -> Response[str]:
        page = admin.members(segment_id, limit, cursor)
        if format == "csv":
            headers = {"X-Next-Cursor": page.cursor} if page.cursor else {}
            return Response(
                status_code=HTTPStatus.OK,
                content_type="text/csv; charset=utf-8",
                body=members_csv(page),
                headers=headers,
            )
        return json_response(HTTPStatus.OK, page)

    return router
