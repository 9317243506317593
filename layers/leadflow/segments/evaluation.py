"""Full segment re-evaluation and the clean-up of a deleted segment, as bulk jobs.

Membership normally follows events live (the lead engine). A full evaluation catches what the
stream cannot: a segment defined (or redefined) after its members' events, time passing (decay,
``within`` windows), a daily safety net. It scans the contacts table as ``SCAN_LANES`` parallel scan
segments; each page job re-evaluates its profiles through ``reevaluate(contact_id, run_id)`` (the
lead engine: all segments, the stage and the decayed score of one contact at now, written under
the profile's ``lead_version`` lock, derived event ids keyed by the run id) and continues with the
next page (cursor chain, see ``leadflow.platform.bulk``).

Run items (contacts table): ``SEGRUN#<run id>`` / ``META`` (kind, segment, started/finished) and
``LANE#<nn>`` (cursor, pages, counters); ``SEGLASTRUN`` / ``<segment id>`` (``*`` for all) points
to a segment's latest run, which ``GET /admin/segments/<id>`` shows.

Deleting an API segment starts a clean-up run: one lane per membership shard, each page removes
its members (member item, count, the profile's ``segments`` entry and a ``segment_left`` event in
one transaction, under the ``lead_version`` lock). A clean-up stops when the id is defined again
(the new definition's evaluation owns the memberships then)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from leadflow.contacts.store import ContactStore
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.observability import logger, metrics
from leadflow.platform.bulk import (
    BulkQueue,
    PageOutcome,
    SegmentCleanupPage,
    SegmentScanPage,
    SegmentScanStart,
    decode_key,
    encode_key,
    run_page,
    unfinished,
)
from leadflow.platform.dynamo import (
    Transaction,
    TransactionCancelled,
)
from leadflow.platform.lanes import Lanes
from leadflow.segments.store import SHARDS, SegmentDefinitionStore, SegmentMembership

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SCAN_LANES = 8
"""Parallel scan segments of a full evaluation."""
SCAN_PAGE = 200
"""Items read per scan page (before the profile filter)."""
CLEANUP_PAGE = 100
ALL = "*"
RUN_PREFIX = "SEGRUN#"
LEAVE_ATTEMPTS = 5

Reevaluate = Callable[[str, str], Sequence[str]]
"""``reevaluate(contact_id, run_id)`` -> the membership/stage changes it wrote (empty: none)."""


class RunStatus(BaseModel):
    run_id: str
    kind: Literal["evaluate", "cleanup"]
    segment_id: str | None = Field(description="null: a run over every segment")
    started_at: str
    finished: bool
    finished_at: str | None = None
    lanes: int
    lanes_done: int
    pages: int
    contacts: int = Field(description="Profiles evaluated (evaluate) or members removed (cleanup).")
    changed: int = Field(description="Contacts whose lead state (segments, stage, score) changed.")
    entered: int = Field(description="Contacts that entered the segment (any segment for a run over all).")
    left: int = Field(description="Contacts that left the segment (any segment for a run over all).")


def _is_change(change: str, kind: str, segment: str) -> bool:
    """``segment_entered:<id>`` (the lead engine's change notation) of ``segment`` (``*``: any)."""
    found_kind, _, found = change.partition(":")
    return found_kind == kind and (segment == ALL or found == segment)


def run_pk(run_id: str) -> str:
    return f"{RUN_PREFIX}{run_id}"


def new_run_id() -> str:
    return "r" + ids.ulid().lower()


class SegmentEvaluations:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        contacts_table: str,
        queue: BulkQueue,
        definitions: SegmentDefinitionStore,
        events: EventStore,
        reevaluate: Reevaluate | None = None,
        file_segment_ids: Callable[[], set[str]] = set,
    ) -> None:
        self._client = client
        self._table = contacts_table
        self._queue = queue
        self._definitions = definitions
        self._events = events
        self.reevaluate = reevaluate
        self._file_ids = file_segment_ids
        self._lanes = Lanes(client, contacts_table)
        self._membership = SegmentMembership(client, contacts_table)
        self._contacts = ContactStore(client, contacts_table)

    # --- starting runs ---------------------------------------------------------------------------

    def _create(self, run_id: str, kind: str, segment_id: str | None, lanes: int) -> bool:
        at = iso(utc_now())
        target = segment_id or ALL
        last_run = self._definitions.last_run_op(target, run_id, kind, at)
        # False: this run exists already
        return self._lanes.create(
            run_pk(run_id),
            {"kind": kind, "segment_id": target, "run_id": run_id},
            lanes,
            at,
            also={"last_run": last_run},
        )

    def start(self, segment_id: str | None, run_id: str | None = None) -> str:
        """Start a full evaluation (``segment_id`` None: every segment); returns the run id. Starting
        a given run id again only re-sends its first pages (a stale duplicate is dropped)."""
        run = run_id or new_run_id()
        self._create(run, "evaluate", segment_id, SCAN_LANES)
        _, lanes = self._lanes.read(run_pk(run))
        self._queue.send(
            [
                SegmentScanPage(kind="segment_scan_page", run_id=run, lane=lane.index)
                for lane in lanes
                if lane.cursor is None and not lane.done
            ]
        )
        logger.info("segment evaluation started", extra={"run_id": run, "segment_id": segment_id or ALL})
        return run

    def start_job(self, job: SegmentScanStart, message_id: str) -> str:
        """The bulk queue's ``segment_scan_start`` (the daily schedule): a redelivery of the same
        message starts the same run."""
        return self.start(
            job.segment_id, job.run_id or "r" + ids.deterministic_id("scan", message_id, length=26)
        )

    def start_cleanup(self, segment_id: str) -> str:
        run = new_run_id()
        self._create(run, "cleanup", segment_id, SHARDS)
        self._queue.send(
            [
                SegmentCleanupPage(kind="segment_cleanup_page", run_id=run, segment_id=segment_id, lane=shard)
                for shard in range(SHARDS)
            ]
        )
        logger.info("segment clean-up started", extra={"run_id": run, "segment_id": segment_id})
        return run

    def resume(self, run_id: str) -> int:
        """Re-enqueue every unfinished lane of a run at its recorded cursor; returns how many."""
        meta, lanes = self._lanes.read(run_pk(run_id))
        if meta is None:
            return 0
        jobs: list[BaseModel] = []
        for lane in unfinished(lanes):
            if meta.get("kind") == "cleanup":
                jobs.append(
                    SegmentCleanupPage(
                        kind="segment_cleanup_page",
                        run_id=run_id,
                        segment_id=str(meta["segment_id"]),
                        lane=lane.index,
                        after=lane.cursor,
                    )
                )
            else:
                jobs.append(
                    SegmentScanPage(
                        kind="segment_scan_page", run_id=run_id, lane=lane.index, after=lane.cursor
                    )
                )
        self._queue.send(jobs)
        return len(jobs)

    # --- status ----------------------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus | None:
        meta, lanes = self._lanes.read(run_pk(run_id))
        if meta is None:
            return None
        segment = str(meta.get("segment_id", ALL))
        return RunStatus(
            run_id=run_id,
            kind="cleanup" if meta.get("kind") == "cleanup" else "evaluate",
            segment_id=None if segment == ALL else segment,
            started_at=str(meta.get("created_at", "")),
            finished=bool(lanes) and all(lane.done for lane in lanes),
            finished_at=meta.get("finished_at"),
            lanes=len(lanes),
            lanes_done=sum(1 for lane in lanes if lane.done),
            pages=sum(lane.pages for lane in lanes),
            contacts=sum(lane.counts.get("contacts", 0) for lane in lanes),
            changed=sum(lane.counts.get("changed", 0) for lane in lanes),
            entered=sum(lane.counts.get("entered", 0) for lane in lanes),
            left=sum(lane.counts.get("left", 0) for lane in lanes),
        )

    def last_run(self, segment_id: str) -> RunStatus | None:
        """The latest run of the segment or of every segment, whichever started last."""
        pointers = self._definitions.last_runs([segment_id, ALL])
        if not pointers:
            return None
        latest = max(pointers, key=lambda p: (str(p.get("started_at", "")), str(p["run_id"])))
        return self.status(str(latest["run_id"]))

    # --- page jobs -------------------------------------------------------------------------------

    def _on_lane_done(self, run_id: str) -> Callable[[], None]:
        def done() -> None:
            meta, lanes = self._lanes.read(run_pk(run_id))
            if meta is None or not all(lane.done for lane in lanes):
                return
            first = self._lanes.set_meta(
                run_pk(run_id), {"finished_at": iso(utc_now())}, "attribute_not_exists(finished_at)"
            )
            if first and meta.get("kind") == "cleanup":
                self._drop_counts(str(meta["segment_id"]))
            if first:
                logger.info("segment run finished", extra={"run_id": run_id, "kind": meta.get("kind")})

        return done

    def scan_page(self, job: SegmentScanPage, message_id: str) -> PageOutcome:
        reevaluate = self.reevaluate
        if reevaluate is None:
            raise RuntimeError("SegmentEvaluations was built without a reevaluate function")

        def work() -> tuple[str | None, dict[str, int]]:
            meta = self._lanes.meta(run_pk(job.run_id)) or {}
            target = str(meta.get("segment_id", ALL))
            start = decode_key(job.after) if job.after else None
            # one page per job: the cursor chains on
            contact_ids, last = self._contacts.segment_scan_page(job.lane, SCAN_LANES, SCAN_PAGE, start)
            contacts = changed = entered = left = 0
            for contact_id in contact_ids:
                changes = reevaluate(contact_id, job.run_id)
                changed += 1 if changes else 0
                entered += sum(1 for c in changes if _is_change(c, "segment_entered", target))
                left += sum(1 for c in changes if _is_change(c, "segment_left", target))
                contacts += 1
            metrics.add_metric(name="SegmentContactsEvaluated", unit="Count", value=contacts)
            counts = {"contacts": contacts, "changed": changed, "entered": entered, "left": left}
            return (encode_key(last) if last else None), counts

        return self._run_page(job, message_id, work)

    def cleanup_page(self, job: SegmentCleanupPage, message_id: str) -> PageOutcome:
        def work() -> tuple[str | None, dict[str, int]]:
            if self._defined(job.segment_id):
                return None, {}  # defined again: its evaluation owns the memberships now
            members, next_after = self._membership.members(
                job.segment_id, job.lane, limit=CLEANUP_PAGE, after=job.after
            )
            removed = sum(1 for contact_id in members if self.leave(job.segment_id, contact_id, job.run_id))
            return next_after, {"contacts": removed, "changed": removed, "left": removed}

        return self._run_page(job, message_id, work)

    def _run_page(
        self,
        job: SegmentScanPage | SegmentCleanupPage,
        message_id: str,
        work: Callable[[], tuple[str | None, dict[str, int]]],
    ) -> PageOutcome:
        """One page of a run's lane, with the chain guarantees of ``leadflow.platform.bulk.run_page``."""
        lane_done = self._on_lane_done(job.run_id)
        return run_page(
            self._lanes, self._queue, run_pk(job.run_id), job.lane, job, message_id, work, lane_done
        )

    def _defined(self, segment_id: str) -> bool:
        return segment_id in self._file_ids() or self._definitions.get(segment_id) is not None

    def leave(self, segment_id: str, contact_id: str, run_id: str) -> bool:
        """Remove one member: the member item and count, the profile's ``segments`` entry (under
        the ``lead_version`` lock) and a ``segment_left`` event, in one transaction. False when the
        member was gone already."""
        with_event = True
        for _ in range(LEAVE_ATTEMPTS):
            profile = self._contacts.profile(
                contact_id, consistent=True, fields=("contact_id", "segments", "lead_version")
            )
            txn = Transaction()
            member, count = self._membership.leave_ops(segment_id, contact_id)
            txn.add(member, "member")
            txn.add(count, "count")
            if profile is not None and segment_id in (profile.get("segments") or []):
                # no liveness check: a tombstone's stale entry is taken out too
                txn.add(
                    self._contacts.locked_update_op(
                        contact_id, profile.get("lead_version"), delete={"segments": {segment_id}}, live=False
                    ),
                    "profile",
                )
                event = Event(
                    event_id=ids.deterministic_id(run_id, "segment_left", segment_id, contact_id),
                    type="segment_left",
                    occurred_at=iso(utc_now()),
                    contact_id=contact_id,
                    source="leads",
                    properties={"segment": segment_id, "reason": "segment_deleted"},
                )
                if with_event:
                    txn.add(self._events.put_op(event), "event")
            try:
                txn.commit(self._client)
            except TransactionCancelled as exc:
                if exc.failed_condition("member"):
                    return False  # not a member any more
                if exc.failed_condition("profile"):
                    continue  # the profile changed meanwhile: read it again
                if exc.failed_condition("event"):
                    with_event = False  # this run wrote the event already
                    continue
                raise
            return True
        raise RuntimeError(f"contact {contact_id} kept changing while leaving segment {segment_id}")

    def _drop_counts(self, segment_id: str) -> None:
        """The deleted segment's count items (all zero by now), unless it was defined again."""
        if self._defined(segment_id):
            return
        for shard in range(SHARDS):
            self._delete_zero_count(segment_id, shard)

    def _delete_zero_count(self, segment_id: str, shard: int) -> None:
        self._membership.delete_zero_count(segment_id, shard)
