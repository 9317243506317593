"""Composition root: builds the domain services from the settings and boto3 clients.

Handlers call these once at cold start; tests and the local runtime pass their own clients. Each
factory imports what it builds when it is called, so a function's cold start loads only the
stores and services that function uses (``bench/imports.py`` measures it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:  # the services below are imported where they are built: a handler loads what it uses
    from leadflow.capture.protection import SiteverifyCaptcha
    from leadflow.capture.tracking import EventRecorder
    from leadflow.contacts.store import ContactStore
    from leadflow.events.store import EventStore, IdempotencyMarks
    from leadflow.journeys.runtime.enrollments import JourneyStore
    from leadflow.kernel.settings import Settings
    from leadflow.leads.engine import LeadEngine
    from leadflow.leads.model import LeadModel
    from leadflow.messaging.sending import SendService
    from leadflow.messaging.store import MessageStore
    from leadflow.platform.dynamo import Transaction
    from leadflow.platform.tokens import TokenSigner
    from leadflow.segments.store import SegmentDefinitionStore

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


@cache
def client(service: str) -> Any:
    """One boto3 client per service and process."""
    return boto3.client(service, config=_BOTO_CONFIG)


class LazyClient:
    """The process's boto3 client of ``service`` (``client``), built at its first call.

    Only for clients a function needs on a rare path (SMS, sales hand-offs, webhook dead letters,
    early ``wait_for`` answers): creating a boto3 client loads its service model and endpoint
    rules (~20 ms, more than the rest of a small handler's import), so a function creates at
    cold start only the clients its every invocation uses."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self.service), name)


def lazy_client(service: str) -> Any:
    """A ``LazyClient``, typed as the clients are (``Any``)."""
    return LazyClient(service)


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
    from leadflow.capture.tracking import EventRecorder, VisitorLinks

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


def send_service(settings: Settings, ddb: Any) -> SendService:
    """Email and SMS delivery (journey sends and broadcasts share it: one claim per message id)."""
    from email.utils import formataddr

    from leadflow.messaging.render import EmailRenderer
    from leadflow.messaging.sending import SendService
    from leadflow.messaging.template_versions import TemplateArchive

    return SendService(
        contacts=contact_store(settings, ddb),
        messages=message_store(settings, ddb),
        events=event_store(settings, ddb),
        # versions other than the layer's (running executions of an earlier deploy): the archive
        renderer=EmailRenderer(
            settings.templates_dir,
            archive=TemplateArchive(lambda: client("s3"), settings.template_archive_bucket),
        ),
        signer=token_signer(settings),
        ses=client("ses"),
        transact=transactor(ddb),
        public_base_url=settings.public_base_url,
        sender=formataddr((settings.sender_name, settings.sender_email)),
        unsubscribe_mailto=settings.unsubscribe_mailto,
        configuration_set=settings.ses_configuration_set,
        sns=lazy_client("sns"),  # SMS steps only
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


def lead_engine(settings: Settings, ddb: Any) -> LeadEngine:
    """The lead engine: scores, stages and segment memberships (the score consumer, and full
    segment re-evaluations in bulk)."""
    from leadflow.leads.engine import LeadEngine, LeadStore
    from leadflow.leads.model import load_lead_model
    from leadflow.segments.definitions import load_segments
    from leadflow.segments.membership import SegmentMembership
    from leadflow.segments.store import segment_source

    return LeadEngine(
        store=LeadStore(ddb, settings.contacts_table, settings.events_table),
        marks=idempotency_marks(settings, ddb),
        events=event_store(settings, ddb),
        membership=SegmentMembership(ddb, settings.contacts_table),
        model=load_lead_model(settings.leads_file),
        segments=segment_source(load_segments(settings.segments_dir), segment_definitions(settings, ddb)),
    )
