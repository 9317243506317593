"""Composition root: the one place that builds leadflow's services and routers, from the
``Settings`` and the boto3 clients (``Clients``).

Every function's handler is wiring only: it asks this module for what it serves
(``wiring.trigger_service(settings)``, ``wiring.admin_app(settings)``, ...) and calls it. Nothing
else constructs a service: the domain routers (``contacts/api.py``, ``segments/api.py``, ...)
receive the services they route to, and the local runtime and the tests swap clients in one place
(``client``, the process's clients, which ``Clients`` hands out; ``Clients(make)`` for others).

Factories of one store take the DynamoDB client (``event_store(settings, ddb)``); factories of a
service take the ``Clients`` (the process's by default). Each factory imports what it builds when it
is called, so a function's cold start loads only the stores and services that function uses
(``bench/imports.py`` measures it, ``tests/unit/test_cold_start.py`` guards it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from leadflow.platform import aws

if TYPE_CHECKING:  # the services below are imported where they are built: a handler loads what it uses
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from leadflow.broadcasts.service import BroadcastService
    from leadflow.capture.protection import SiteverifyCaptcha
    from leadflow.capture.server_events import ServerEvents, SignedEvents
    from leadflow.capture.tracking import EventRecorder, TrackingService
    from leadflow.contacts.store import ContactStore
    from leadflow.events.store import EventStore, IdempotencyMarks
    from leadflow.journeys.runtime.enrollments import JourneyStore
    from leadflow.journeys.runtime.entry import TriggerService
    from leadflow.journeys.runtime.steps import JourneyStepRunner
    from leadflow.kernel.settings import Settings
    from leadflow.leads.engine import LeadEngine
    from leadflow.leads.model import LeadModel
    from leadflow.messaging.provider_feedback import FeedbackService
    from leadflow.messaging.sending import SendService
    from leadflow.messaging.store import MessageStore
    from leadflow.ops.changes import DeployChanges
    from leadflow.platform.bulk import BulkQueue
    from leadflow.platform.dynamo import Transaction
    from leadflow.platform.rotation import SigningKeyRotation
    from leadflow.platform.tokens import TokenSigner
    from leadflow.reporting.consumer import ReportService
    from leadflow.reporting.reports import ReportReader
    from leadflow.segments.evaluation import SegmentEvaluations
    from leadflow.segments.store import SegmentDefinitionStore

client = aws.client
"""One boto3 client per service and process (``platform/aws.py``), typed per service."""
LazyClient = aws.LazyClient
lazy_client = aws.lazy_client


class Clients:
    """The boto3 clients services are built with: ``clients("dynamodb")`` now,
    ``clients.lazy("sns")`` at its first call. ``make`` builds (or finds) the client of a service:
    the process's ``client`` by default; the one place to swap clients (the local runtime clears
    ``client``'s cache for a new system, a test passes its own ``make``)."""

    def __init__(self, make: Callable[[Any], Any] = client) -> None:
        self._make = make

    def __call__(self, service: str) -> Any:
        return self._make(service)

    def lazy(self, service: str) -> Any:
        return LazyClient(service, self._make)


PROCESS_CLIENTS = Clients()
"""The process's clients (``client``): what a handler's services use."""


KEY_CACHE_SECONDS = 300
KEY_REFRESH_INTERVAL_SECONDS = 30
"""At most one forced refetch of the key ring per interval, however many unknown tokens arrive."""


def signing_key_source(
    secret_id: str, now: Callable[[], float] = time.monotonic
) -> Callable[[bool], Sequence[bytes]]:
    """The HMAC key ring from Secrets Manager through Powertools parameters (cached for 5 minutes;
    a rotation takes effect without a deploy)."""
    from aws_lambda_powertools.utilities import parameters

    from leadflow.platform.tokens import KeyRing

    last_forced = [-float(KEY_REFRESH_INTERVAL_SECONDS)]

    def keys(refresh: bool) -> Sequence[bytes]:
        force = refresh and now() - last_forced[0] >= KEY_REFRESH_INTERVAL_SECONDS
        if force:
            last_forced[0] = now()
        value = parameters.get_secret(secret_id, max_age=KEY_CACHE_SECONDS, force_fetch=force)
        return KeyRing.parse(value).keys

    return keys


def token_signer(settings: Settings) -> TokenSigner:
    from leadflow.platform.tokens import TokenSigner

    return TokenSigner(signing_key_source(settings.signing_key_secret))


def event_store(settings: Settings, ddb: Any) -> EventStore:
    from leadflow.events.store import EventStore

    return EventStore(ddb, settings.events_table, settings.event_retention_days)


def contact_store(settings: Settings, ddb: Any) -> ContactStore:
    from leadflow.contacts.store import ContactStore

    return ContactStore(ddb, settings.contacts_table)


def message_store(settings: Settings, ddb: Any) -> MessageStore:
    from leadflow.messaging.store import MessageStore

    return MessageStore(ddb, settings.messages_table)


def idempotency_marks(settings: Settings, ddb: Any) -> IdempotencyMarks:
    from leadflow.events.store import IdempotencyMarks

    return IdempotencyMarks(ddb, settings.idempotency_table)


def transactor(ddb: Any) -> Callable[[Transaction], None]:
    def commit(txn: Transaction) -> None:
        txn.commit(ddb)

    return commit


def webhook_keys_source(secret_id: str) -> Callable[[], Mapping[str, str]]:
    """The webhook signing keys (JSON ``{"name": "key"}``) from Secrets Manager, cached 5 minutes."""
    from aws_lambda_powertools.utilities import parameters

    def keys() -> Mapping[str, str]:
        value = parameters.get_secret(secret_id, max_age=KEY_CACHE_SECONDS, transform="json")
        if not isinstance(value, dict):
            raise ValueError("the webhook secret must be a JSON object of name -> key")
        return {str(k): str(v) for k, v in value.items()}

    return keys


def event_recorder(settings: Settings, ddb: Any) -> EventRecorder:
    """Records ``POST /events`` and ``POST /admin/events`` payloads."""
    from leadflow.capture.tracking import EventRecorder
    from leadflow.contacts.store import VisitorLinks

    return EventRecorder(
        events=event_store(settings, ddb),
        contacts=contact_store(settings, ddb),
        marks=idempotency_marks(settings, ddb),
        transact=transactor(ddb),
        links=VisitorLinks(ddb, settings.contacts_table),
    )


def captcha_verifier(endpoints: Mapping[str, str] | None = None) -> SiteverifyCaptcha:
    """CAPTCHA siteverify with the forms' provider secrets from Secrets Manager (cached 5 minutes);
    ``endpoints``: the providers' siteverify URLs (the real ones by default; tests pass a local fake)."""
    from aws_lambda_powertools.utilities import parameters

    from leadflow.capture.protection import SITEVERIFY_URLS, SiteverifyCaptcha

    def secret(secret_id: str) -> str:
        return str(parameters.get_secret(secret_id, max_age=KEY_CACHE_SECONDS))

    return SiteverifyCaptcha(secret, endpoints or SITEVERIFY_URLS)


def sending_forms(settings: Settings) -> Callable[[], frozenset[str]]:
    """The forms whose sign-ups send email, from the journeys (read when first needed, not at import)."""

    def forms() -> frozenset[str]:
        from leadflow.capture.protection import forms_that_send_email
        from leadflow.journeys import load_journeys

        return forms_that_send_email(settings.forms, load_journeys(settings.journeys_dir))

    return forms


def journey_store(settings: Settings, ddb: Any) -> JourneyStore:
    from leadflow.journeys.runtime.enrollments import JourneyStore

    return JourneyStore(ddb, contacts_table=settings.contacts_table, events_table=settings.events_table)


def send_service(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> SendService:
    """Email and SMS delivery (journey sends and broadcasts share it: one claim per message id)."""
    from email.utils import formataddr

    from leadflow.messaging.render import EmailRenderer
    from leadflow.messaging.sending import SendService
    from leadflow.messaging.template_versions import TemplateArchive

    ddb = clients("dynamodb")
    return SendService(
        contacts=contact_store(settings, ddb),
        messages=message_store(settings, ddb),
        events=event_store(settings, ddb),
        # versions other than the layer's (running executions of an earlier deploy): the archive
        renderer=EmailRenderer(
            settings.templates_dir,
            archive=TemplateArchive(lambda: clients("s3"), settings.template_archive_bucket),
        ),
        signer=token_signer(settings),
        ses=clients("ses"),
        transact=transactor(ddb),
        public_base_url=settings.public_base_url,
        sender=formataddr((settings.sender_name, settings.sender_email)),
        unsubscribe_mailto=settings.unsubscribe_mailto,
        configuration_set=settings.ses_configuration_set,
        sns=clients.lazy("sns"),  # SMS steps only
        sms_sender_id=settings.sms_sender_id,
        sms_origination_number=settings.sms_origination_number,
        sms_type=settings.sms_type,
        lead_model=lead_model(settings),
    )


def lead_model(settings: Settings) -> LeadModel:
    """``leads.yaml``, read once per process and version of the file: the services of one
    function share it (``send``: its step runner and its ``SendService``)."""
    path = settings.leads_file
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = (-1, -1)  # no file: the default model (``load_lead_model``)
    return _read_lead_model(path, version)


@cache
def _read_lead_model(path: Path, version: tuple[int, int]) -> LeadModel:
    from leadflow.leads.model import load_lead_model

    return load_lead_model(path)


def segment_definitions(settings: Settings, ddb: Any) -> SegmentDefinitionStore:
    from leadflow.segments.store import SegmentDefinitionStore

    return SegmentDefinitionStore(ddb, settings.contacts_table)


def lead_engine(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> LeadEngine:
    """The lead engine: scores, stages and segment memberships (the score consumer, and full
    segment re-evaluations in bulk)."""
    from leadflow.leads.engine import LeadEngine, LeadStore
    from leadflow.segments.definitions import load_segments
    from leadflow.segments.store import SegmentMembership, segment_source

    ddb = clients("dynamodb")
    return LeadEngine(
        store=LeadStore(ddb, settings.contacts_table, settings.events_table),
        marks=idempotency_marks(settings, ddb),
        events=event_store(settings, ddb),
        membership=SegmentMembership(ddb, settings.contacts_table),
        model=lead_model(settings),
        segments=segment_source(load_segments(settings.segments_dir), segment_definitions(settings, ddb)),
    )


# --- the services of each function --------------------------------------------------------------


def tracking_service(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> TrackingService:
    """The public API's service (``track``): pixels, clicks, browser events, forms, unsubscribes."""
    from leadflow.capture.store import SignupBudgets
    from leadflow.capture.tracking import TrackingService
    from leadflow.contacts.store import VisitorLinks

    ddb = clients("dynamodb")
    return TrackingService(
        events=event_store(settings, ddb),
        contacts=contact_store(settings, ddb),
        marks=idempotency_marks(settings, ddb),
        signer=token_signer(settings),
        forms=settings.forms,
        transact=transactor(ddb),
        links=VisitorLinks(ddb, settings.contacts_table),
        browser_event_types=settings.browser_event_types,
        budgets=SignupBudgets(settings.idempotency_table),
        forms_that_send=sending_forms(settings),
        captcha=captcha_verifier(),
    )


def signed_events(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> SignedEvents:
    """The signature check of ``POST /events/signed`` (per-source keys, replay marks)."""
    from leadflow.capture.server_events import SignedEvents

    ddb = clients("dynamodb")
    return SignedEvents(
        keys=webhook_keys_source(settings.event_source_keys_secret),
        marks=idempotency_marks(settings, ddb),
        ddb=ddb,
    )


def server_events(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> ServerEvents:
    """Server events (``POST /admin/events``, ``POST /events/signed``), one or a batch."""
    from leadflow.capture.server_events import ServerEvents

    return ServerEvents(event_recorder(settings, clients("dynamodb")))


def trigger_service(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> TriggerService:
    """Journey entries and exits from the events stream (``trigger``)."""
    from leadflow.journeys import load_journeys
    from leadflow.journeys.runtime.entry import TriggerService

    ddb = clients("dynamodb")
    return TriggerService(
        journeys=load_journeys(settings.journeys_dir),
        messages=message_store(settings, ddb),
        store=journey_store(settings, ddb),
        sfn=clients("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
        start_arn=settings.state_machine_alias_arn,  # the live version: executions keep theirs
        events=event_store(settings, ddb),
        lead_model=lead_model(settings),
    )


def report_service(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> ReportService:
    """The reporting counters' consumer (``report``); it does not load the read side's models."""
    from leadflow.reporting.consumer import ReportService
    from leadflow.reporting.store import ReportTable

    ddb = clients("dynamodb")
    return ReportService(
        table=ReportTable(ddb, settings.reports_table),
        marks=idempotency_marks(settings, ddb),
        transact=transactor(ddb),
        goals=settings.goals,
    )


def report_reader(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> ReportReader:
    """The reports of ``/admin/reports/*`` (and the local runtime's charts)."""
    from leadflow.reporting.reports import ReportReader
    from leadflow.reporting.store import ReportTable

    return ReportReader(ReportTable(clients("dynamodb"), settings.reports_table), settings.goals)


def feedback_service(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> FeedbackService:
    """Provider feedback (``feedback``): SES bounces, complaints, deliveries; inbound SMS."""
    from leadflow.messaging.provider_feedback import FeedbackService

    ddb = clients("dynamodb")
    return FeedbackService(
        contacts=contact_store(settings, ddb),
        events=event_store(settings, ddb),
        messages=message_store(settings, ddb),
        transact=transactor(ddb),
    )


def step_runner(
    settings: Settings, sender: SendService, clients: Clients = PROCESS_CLIENTS
) -> JourneyStepRunner:
    """Every task of a journey state machine (``send``), sending through ``sender``."""
    from leadflow.journeys.runtime.steps import JourneyStepRunner
    from leadflow.leads.handoff import HandoffPublisher, InteractionHistory
    from leadflow.leads.routing import Assignments, OwnerPicker

    ddb = clients("dynamodb")
    model = lead_model(settings)  # the sender's too (``lead_model``: one per version of the file)
    return JourneyStepRunner(
        store=journey_store(settings, ddb),
        messages=message_store(settings, ddb),
        events=event_store(settings, ddb),
        marks=idempotency_marks(settings, ddb),
        sender=sender,
        transact=transactor(ddb),
        contacts=contact_store(settings, ddb),
        handoffs=HandoffPublisher(  # hand-offs, webhook dead letters and early wait answers are rare:
            sns=clients.lazy("sns"),  # their clients are built at first use
            events=clients.lazy("events"),
            topic_arn=settings.sales_topic_arn,
            event_bus_name=settings.event_bus_name,
        ),
        history=InteractionHistory(ddb, settings.events_table),
        assignments=Assignments(
            client=ddb,
            idempotency_table=settings.idempotency_table,
            picker=OwnerPicker(client=ddb, contacts_table=settings.contacts_table, model=lambda: model),
            now=time.time,
        ),
        lead_model=lambda: model,
        sqs=clients.lazy("sqs"),
        dead_letter_queue_url=settings.webhook_dead_letter_queue_url,
        webhook_keys=webhook_keys_source(settings.webhook_secrets_secret),
        allow_plain_http=settings.stage == "local",
        sfn=clients.lazy("stepfunctions"),
    )


class BulkJobs(NamedTuple):
    """The services of the ``bulk`` worker: broadcast pages and segment evaluations."""

    broadcasts: BroadcastService
    evaluations: SegmentEvaluations


def segment_evaluations(
    settings: Settings, clients: Clients, queue: BulkQueue, *, with_engine: bool = False
) -> SegmentEvaluations:
    """Full segment evaluations and clean-ups, paged through the bulk queue. Started by the admin
    API; run by ``bulk`` (``with_engine``: with the lead engine that re-evaluates each contact)."""
    from leadflow.segments.evaluation import SegmentEvaluations

    ddb = clients("dynamodb")
    file_ids = set(file_segment_ids(settings))
    return SegmentEvaluations(
        client=ddb,
        contacts_table=settings.contacts_table,
        queue=queue,
        definitions=segment_definitions(settings, ddb),
        events=event_store(settings, ddb),
        reevaluate=lead_engine(settings, clients).reevaluate if with_engine else None,
        file_segment_ids=lambda: file_ids,
    )


def bulk_queue(settings: Settings, sqs: Any) -> BulkQueue:
    """The queue of bulk jobs (broadcast pages, segment evaluations)."""
    from leadflow.platform.bulk import BulkQueue

    return BulkQueue(sqs, settings.bulk_queue_url)


def file_segment_ids(settings: Settings) -> frozenset[str]:
    """The ids of the segments defined by files (``segments/``)."""
    from leadflow.segments.definitions import load_segments

    return frozenset(s.id for s in load_segments(settings.segments_dir))


def segment_exists(settings: Settings, ddb: Any) -> Callable[[str], bool]:
    """Whether a segment is defined (by a file or through the API)."""
    file_ids = file_segment_ids(settings)
    definitions = segment_definitions(settings, ddb)
    return lambda segment_id: segment_id in file_ids or definitions.get(segment_id) is not None


def broadcast_service(
    settings: Settings,
    clients: Clients,
    queue: BulkQueue,
    *,
    exists: Callable[[str], bool] | None = None,
    sending: bool = False,
) -> BroadcastService:
    """Broadcasts: created and viewed by the admin API, their pages sent by ``bulk`` (``sending``:
    with the send path, which the admin function does not load). ``exists``: whether a segment is
    defined (``segment_exists`` by default)."""
    from leadflow.broadcasts.service import BroadcastService

    ddb = clients("dynamodb")
    return BroadcastService(
        client=ddb,
        contacts_table=settings.contacts_table,
        queue=queue,
        templates_dir=settings.templates_dir,
        segment_exists=exists or segment_exists(settings, ddb),
        sender=send_service(settings, clients) if sending else None,
        messages=message_store(settings, ddb) if sending else None,
        journeys=journey_store(settings, ddb) if sending else None,
        send_rate=settings.broadcast_send_rate,
    )


def bulk_jobs(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> BulkJobs:
    """The ``bulk`` worker's services (its every job may queue the next page: SQS at cold start)."""
    queue = bulk_queue(settings, clients("sqs"))
    return BulkJobs(
        broadcasts=broadcast_service(settings, clients, queue, sending=True),
        evaluations=segment_evaluations(settings, clients, queue, with_engine=True),
    )


def journey_changes(
    settings: Settings, clients: Clients = PROCESS_CLIENTS
) -> Callable[[Callable[[], int]], DeployChanges]:
    """Each deployed journey's ``on_change`` for the contacts in flight on older versions
    (``journey_changes``, run by the deploy); called with the invocation's time left (ms)."""
    from leadflow.journeys import load_journeys
    from leadflow.ops.changes import apply_changes

    ddb = clients("dynamodb")
    sfn = clients("stepfunctions")
    store, events = journey_store(settings, ddb), event_store(settings, ddb)

    def run(time_left_ms: Callable[[], int]) -> DeployChanges:
        return apply_changes(
            sfn,
            load_journeys(settings.journeys_dir),  # the deployed files (the layer's content)
            settings.state_machine_arn,
            settings.journey_alias,
            store=store,
            events=events,
            time_left_ms=time_left_ms,
        )

    return run


def key_rotation(clients: Clients = PROCESS_CLIENTS) -> SigningKeyRotation:
    """Secrets Manager rotation of the link-signing key ring (``rotate``)."""
    from leadflow.platform.rotation import SigningKeyRotation

    return SigningKeyRotation(clients("secretsmanager"))


def track_app(
    settings: Settings, service: TrackingService, clients: Clients = PROCESS_CLIENTS
) -> APIGatewayHttpResolver:
    """The public API (``track``): capture's public router over ``service`` (``tracking_service``),
    the signed and server events; domain errors answered one way, each rejection counted."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from leadflow.capture import api as capture_api
    from leadflow.kernel.observability import metrics
    from leadflow.platform.http import map_errors

    def rejected() -> None:
        metrics.add_metric(name="RejectedRequests", unit="Count", value=1)

    app = APIGatewayHttpResolver(enable_validation=True)
    map_errors(app, on_rejected=rejected)
    app.include_router(
        capture_api.public_router(service, signed_events(settings, clients), server_events(settings, clients))
    )
    return app


def admin_app(settings: Settings, clients: Clients = PROCESS_CLIENTS) -> APIGatewayHttpResolver:
    """The admin API (``admin``): every context's admin router over the services built here, one
    mapping of domain errors to HTTP answers. At cold start it builds the DynamoDB client only:
    Step Functions (erasures) and SQS (segment evaluations, broadcasts) wait for their first use."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from leadflow.broadcasts import api as broadcasts_api
    from leadflow.capture import api as capture_api
    from leadflow.contacts import api as contacts_api
    from leadflow.contacts.directory import ContactDirectory
    from leadflow.contacts.importing import ContactImporter
    from leadflow.contacts.merge import ContactMerger
    from leadflow.kernel.clock import utc_now
    from leadflow.leads import api as sales_api
    from leadflow.leads.sales_feedback import SalesFeedbackService
    from leadflow.platform.http import map_errors
    from leadflow.privacy import api as privacy_api
    from leadflow.privacy.service import PrivacyService
    from leadflow.reporting import api as reporting_api
    from leadflow.segments import api as segments_api
    from leadflow.segments.definitions import load_segments

    ddb = clients("dynamodb")
    queue = bulk_queue(settings, clients.lazy("sqs"))  # segment evaluations, broadcasts: rare admin calls
    contacts, events, transact = contact_store(settings, ddb), event_store(settings, ddb), transactor(ddb)
    model = lead_model(settings)
    service = ContactMerger(  # the contacts service, with merging
        contacts=contacts,
        events=events,
        messages=message_store(settings, ddb),
        model=model,
        transact=transact,
    )
    directory = ContactDirectory(
        contacts=contacts, ddb=ddb, events_table=settings.events_table, events=events, transact=transact
    )
    privacy = PrivacyService(
        ddb=ddb,
        contacts=contacts,
        events_table=settings.events_table,
        messages_table=settings.messages_table,
        reports_table=settings.reports_table,
        sfn=clients.lazy("stepfunctions"),  # erasures only: built at their first
        state_machine_arn=settings.state_machine_arn,
    )
    segments = segments_api.SegmentAdmin(
        client=ddb,
        contacts_table=settings.contacts_table,
        files=load_segments(settings.segments_dir),
        definitions=segment_definitions(settings, ddb),
        evaluations=segment_evaluations(settings, clients, queue),
        model=model,
    )
    sales_feedback = SalesFeedbackService(
        contacts=contacts,
        events=events,
        marks=idempotency_marks(settings, ddb),
        transact=transact,
        lead_model=lambda: model,
        now=utc_now,
    )
    app = APIGatewayHttpResolver(enable_validation=True)
    map_errors(app)
    for router in (
        contacts_api.router(
            service,
            ContactImporter(service),
            directory,
            manual_journeys(settings),
        ),
        privacy_api.router(privacy),
        capture_api.admin_router(server_events(settings, clients)),
        segments_api.router(segments),
        broadcasts_api.router(broadcast_service(settings, clients, queue, exists=segments.exists)),
        sales_api.router(sales_feedback),
        reporting_api.router(report_reader(settings, clients)),
    ):
        app.include_router(router)
    return app


def manual_journeys(settings: Settings) -> Callable[[], frozenset[str]]:
    """The journeys with a manual entry, read at the first enrollment request (a rare admin call:
    the journey model is not loaded at cold start)."""

    @cache
    def journeys() -> frozenset[str]:
        from leadflow.journeys import load_journeys

        return frozenset(j.id for j in load_journeys(settings.journeys_dir) if j.entry.kind == "manual")

    return journeys


def admin_body_limits() -> dict[str, int]:
    """The admin API's request bodies larger than the default, by path (``platform.http.serve``)."""
    from leadflow.capture.server_events import MAX_BODY_BYTES as MAX_EVENTS_BYTES
    from leadflow.contacts.api import MAX_IMPORT_BYTES

    return {"/admin/contacts/import": MAX_IMPORT_BYTES, "/admin/events": MAX_EVENTS_BYTES}
