"""Broadcasts: one email to every member of a segment, exactly once, paced to the SES rate.

``POST /admin/broadcasts`` creates ``BROADCAST#<id>`` in the contacts table (next to the segment
membership it reads): a ``META`` item (segment, template, purpose, frequency cap, status) and one
lane item per membership shard (``LANE#<nn>``: the cursor — the last member id done — and the
counters). It then enqueues one ``broadcast_page`` job per shard to the bulk queue; each job sends
to one page of its shard's members and continues with the next page (cursor chain, see
``leadflow.platform.bulk``). When every shard is done the broadcast is ``completed``.

Exactly once: each recipient's message id is deterministic (``execution_id`` =
``broadcast:<id>:<contact id>``), so a page done again after a crash finds the earlier claims and
``SendService`` answers ``duplicate`` instead of sending; the cursor CAS makes sure a page's
counters are added once and a redelivered job never forks the chain. Consent, suppression and
do-not-contact are enforced by ``SendService`` (skips are recorded with their reason). A marketing
broadcast counts against the contacts' frequency caps if one is given; a capped recipient is
skipped (``frequency_cap``), not deferred.

``resume(id)`` re-enqueues every unfinished shard at its recorded cursor (e.g. after jobs went to
the dead-letter queue): a duplicate of a live job is dropped by the CAS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadflow.contacts.model import Contact
from leadflow.contacts.store import ContactStore
from leadflow.journeys.runtime.enrollments import CapExceeded, JourneyStore, cap_limits
from leadflow.journeys.timing import FrequencyCap, zone
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import Conflict, InvalidInput, NotFound, SendThrottled
from leadflow.kernel.observability import count_by, logger, metrics
from leadflow.messaging.model import SendRequest
from leadflow.messaging.store import MessageStore
from leadflow.platform.bulk import (
    BULK_WORKERS,
    BroadcastPage,
    BulkQueue,
    Pacer,
    PageOutcome,
    run_page,
    unfinished,
)
from leadflow.platform.lanes import Lanes
from leadflow.segments.store import SHARDS, SegmentMembership

if TYPE_CHECKING:  # the send path (templates, Jinja2) is loaded where a page sends: the bulk worker
    from mypy_boto3_dynamodb import DynamoDBClient

    # builds its SendService at cold start; the admin API (create, view, cancel) never loads it
    from leadflow.messaging.sending import SendService

BROADCAST_PREFIX = "BROADCAST#"
PAGE_SECONDS = 30.0
"""A page is sized to take about this long at the paced rate (well inside the function timeout)."""
MAX_PAGE = 100
MIN_PAGE = 5
CAP_TIMEZONE = "UTC"
"""Frequency-cap days of contacts without a (valid) time zone."""
BROADCAST_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class BroadcastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broadcast_id: str | None = Field(
        default=None,
        pattern=BROADCAST_ID,
        description="Idempotency key: posting the same broadcast again returns it (generated if absent).",
    )
    segment: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    purpose: Literal["marketing", "transactional"] = "marketing"
    frequency_cap: FrequencyCap | None = None


BroadcastStatus = Literal["running", "completed"]


class BroadcastAccepted(BaseModel):
    broadcast_id: str
    status: BroadcastStatus


class BroadcastView(BaseModel):
    broadcast_id: str
    segment: str
    template: str
    purpose: Literal["marketing", "transactional"]
    frequency_cap: FrequencyCap | None = None
    status: BroadcastStatus
    created_at: str
    completed_at: str | None = None
    shards: int
    shards_done: int
    pages: int
    recipients: int = Field(description="Members handled: sent + skipped + in_doubt + failed.")
    sent: int
    skipped: dict[str, int] = Field(description="Skipped recipients by reason.")
    in_doubt: int = Field(description="SES did not answer: the message may have gone out; never re-sent.")
    failed: int = Field(description="The template failed to render for the recipient.")
    duplicate: int = Field(
        description="Recipients a re-run page found handled by an earlier attempt (already counted "
        "under their outcome): sends prevented, not sends."
    )


def broadcast_pk(broadcast_id: str) -> str:
    return f"{BROADCAST_PREFIX}{broadcast_id}"


def page_size(send_rate: float, workers: int = BULK_WORKERS) -> int:
    return max(MIN_PAGE, min(MAX_PAGE, int(send_rate / workers * PAGE_SECONDS)))


def template_problem(templates_dir: Path, template: str) -> str | None:
    """Why ``template`` is not a usable email template (as the journey checks see it), or None."""
    from leadflow.messaging.render import PARTS  # the parts an email template has, as rendered

    folder = templates_dir / template
    if not folder.is_dir():
        return f"template {template!r} does not exist"
    if not (folder / "subject.txt").is_file():
        return f"template {template!r} has no subject.txt"
    if not any((folder / part).is_file() for part in PARTS[1:]):
        return f"template {template!r} has neither body.html nor body.txt"
    return None


class BroadcastService:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        contacts_table: str,
        queue: BulkQueue,
        templates_dir: Path,
        segment_exists: Callable[[str], bool],
        sender: SendService | None = None,
        messages: MessageStore | None = None,
        journeys: JourneyStore | None = None,
        send_rate: float = 14.0,
        workers: int = BULK_WORKERS,
        pacer: Pacer | None = None,
    ) -> None:
        self._client = client
        self._table = contacts_table
        self._queue = queue
        self._templates_dir = templates_dir
        self._segment_exists = segment_exists
        self._sender = sender
        self._messages = messages
        self._journeys = journeys
        self._lanes = Lanes(client, contacts_table)
        self._membership = SegmentMembership(client, contacts_table)
        self._page = page_size(send_rate, workers)
        self._pacer = pacer or Pacer(send_rate / workers)

    # --- admin API -------------------------------------------------------------------------------

    def create(self, body: BroadcastIn) -> BroadcastAccepted:
        if not self._segment_exists(body.segment):
            raise NotFound(f"segment {body.segment!r}")
        problem = template_problem(self._templates_dir, body.template)
        if problem:
            raise InvalidInput("template", problem)
        broadcast_id = body.broadcast_id or "b" + ids.ulid().lower()
        meta: dict[str, Any] = {
            "broadcast_id": broadcast_id,
            "segment": body.segment,
            "template": body.template,
            "purpose": body.purpose,
            "status": "running",
        }
        if body.frequency_cap is not None:
            meta["frequency_cap"] = body.frequency_cap.model_dump(exclude_none=True)
        if not self._lanes.create(broadcast_pk(broadcast_id), meta, SHARDS, iso(utc_now())):
            existing = self._lanes.meta(broadcast_pk(broadcast_id)) or {}
            if any(existing.get(k) != v for k, v in meta.items() if k != "status"):
                raise Conflict(f"broadcast {broadcast_id!r} exists with other parameters")
            status = existing.get("status", "running")
            if status == "running":
                self.resume(broadcast_id)  # a retried POST heals a start whose jobs were not sent
            return BroadcastAccepted(broadcast_id=broadcast_id, status=status)
        self._queue.send(
            [BroadcastPage(kind="broadcast_page", broadcast_id=broadcast_id, shard=s) for s in range(SHARDS)]
        )
        metrics.add_metric(name="BroadcastsStarted", unit="Count", value=1)
        logger.info("broadcast started", extra={"broadcast_id": broadcast_id, "segment": body.segment})
        return BroadcastAccepted(broadcast_id=broadcast_id, status="running")

    def view(self, broadcast_id: str) -> BroadcastView:
        meta, lanes = self._lanes.read(broadcast_pk(broadcast_id))
        if meta is None:
            raise NotFound(f"broadcast {broadcast_id!r}")
        totals: dict[str, int] = {}
        for lane in lanes:
            for name, value in lane.counts.items():
                totals[name] = totals.get(name, 0) + value
        skipped = {
            k.removeprefix("skipped:"): v for k, v in sorted(totals.items()) if k.startswith("skipped:")
        }
        cap = meta.get("frequency_cap")
        return BroadcastView(
            broadcast_id=broadcast_id,
            segment=str(meta["segment"]),
            template=str(meta["template"]),
            purpose=meta.get("purpose", "marketing"),
            frequency_cap=FrequencyCap.model_validate(cap) if cap else None,
            status=meta.get("status", "running"),
            created_at=str(meta.get("created_at", "")),
            completed_at=meta.get("completed_at"),
            shards=len(lanes),
            shards_done=sum(1 for lane in lanes if lane.done),
            pages=sum(lane.pages for lane in lanes),
            recipients=totals.get("recipients", 0),
            sent=totals.get("sent", 0),
            skipped=skipped,
            in_doubt=totals.get("in_doubt", 0),
            failed=totals.get("failed", 0),
            duplicate=totals.get("duplicate", 0),
        )

    def resume(self, broadcast_id: str) -> int:
        """Re-enqueue every unfinished shard at its recorded cursor; returns how many jobs."""
        meta, lanes = self._lanes.read(broadcast_pk(broadcast_id))
        if meta is None:
            raise NotFound(f"broadcast {broadcast_id!r}")
        jobs = [
            BroadcastPage(
                kind="broadcast_page", broadcast_id=broadcast_id, shard=lane.index, after=lane.cursor
            )
            for lane in unfinished(lanes)
        ]
        self._queue.send(jobs)
        return len(jobs)

    # --- the bulk worker -------------------------------------------------------------------------

    def page(self, job: BroadcastPage, message_id: str) -> PageOutcome:
        pk = broadcast_pk(job.broadcast_id)
        meta = self._lanes.meta(pk)
        if meta is None:
            logger.warning("broadcast job for an unknown broadcast", extra={"broadcast_id": job.broadcast_id})
            return "stale"

        def work() -> tuple[str | None, dict[str, int]]:
            members, next_after = self._membership.members(
                str(meta["segment"]), job.shard, limit=self._page, after=job.after
            )
            counts: dict[str, int] = {}
            profiles = self._profiles(members)
            for contact_id in members:
                for name in self._deliver(job.broadcast_id, meta, contact_id, profiles.get(contact_id)):
                    counts[name] = counts.get(name, 0) + 1
            return next_after, counts

        return run_page(
            self._lanes,
            self._queue,
            pk,
            job.shard,
            job,
            message_id,
            work,
            lambda: self._maybe_complete(job.broadcast_id),
        )

    def _maybe_complete(self, broadcast_id: str) -> None:
        _, lanes = self._lanes.read(broadcast_pk(broadcast_id))
        if (
            lanes
            and all(lane.done for lane in lanes)
            and self._lanes.set_meta(
                broadcast_pk(broadcast_id),
                {"status": "completed", "completed_at": iso(utc_now())},
                "#status = :running",
                names={"#status": "status"},
                running="running",
            )
        ):
            metrics.add_metric(name="BroadcastsCompleted", unit="Count", value=1)
            logger.info("broadcast completed", extra={"broadcast_id": broadcast_id})

    def _profiles(self, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
        return ContactStore(self._client, self._table).profiles(contact_ids)

    def _deliver(
        self, broadcast_id: str, meta: dict[str, Any], contact_id: str, profile: dict[str, Any] | None
    ) -> list[str]:
        """Send to one member; the counters it adds."""
        from leadflow.messaging.render import TemplateRenderError
        from leadflow.messaging.sending import SendInDoubt

        assert self._sender is not None
        assert self._messages is not None
        assert self._journeys is not None
        purpose = str(meta.get("purpose", "marketing"))
        request = SendRequest(
            action="send_email",
            purpose=purpose,  # type: ignore[arg-type]
            journey_id=f"broadcast-{broadcast_id}"[:64],
            step_id="broadcast",
            template=str(meta["template"]),
            contact_id=contact_id,
            execution_id=f"broadcast:{broadcast_id}:{contact_id}",
        )
        message_id = ids.deterministic_id(request.execution_id, request.step_id)
        cap = meta.get("frequency_cap")
        if cap and purpose == "marketing" and profile is not None and _may_receive(profile, purpose):
            try:
                self._journeys.reserve(contact_id, "email", message_id, _cap_limits(profile, cap))
            except CapExceeded:
                count_by("SendsSkippedByReason", "reason", "frequency_cap")
                return ["recipients", "skipped:frequency_cap"]
        self._pacer.wait()
        try:
            result = self._sender.send_email(request)
        except SendThrottled:
            raise  # the job fails; SQS redelivers it later and the page resumes
        except SendInDoubt:
            return ["recipients", "in_doubt"]
        except TemplateRenderError:
            return ["recipients", "failed"]
        if result.status == "sent":
            return ["recipients", "sent"]
        if result.status == "skipped":
            return ["recipients", f"skipped:{result.reason}"]
        # handled by an earlier attempt of this page: count its outcome
        existing = self._messages.get(message_id) or {}
        status = existing.get("status")
        if status == "sent":
            return ["recipients", "sent", "duplicate"]
        if status == "skipped":
            return ["recipients", f"skipped:{existing.get('reason')}", "duplicate"]
        if status == "failed":
            return ["recipients", "failed", "duplicate"]
        return ["recipients", "in_doubt", "duplicate"]


def _may_receive(profile: dict[str, Any], purpose: str) -> bool:
    """SendService's own pre-check (without the suppression list): a recipient it will skip
    anyway does not use up a frequency-cap slot."""
    from leadflow.messaging.sending import email_skip_reason

    try:
        contact = Contact.model_validate(profile)
    except ValueError:
        return False
    return email_skip_reason(contact, purpose, None) is None


def _cap_limits(profile: dict[str, Any], cap: dict[str, Any]) -> dict[str, int]:
    day = utc_now().astimezone(zone(profile.get("timezone"), CAP_TIMEZONE)).date()
    per_day, per_week = cap.get("per_day"), cap.get("per_week")
    return cap_limits(day, int(per_day) if per_day else None, int(per_week) if per_week else None)
