"""What the public tracking API does: record opens, clicks, page views, events, form posts and
unsubscribes. Pixel and click recording is the hot path: one DynamoDB write, no read (a click that
carries the visitor cookie also reads that visitor's link: an eventually consistent get).

Identity: a visitor id (the ``lf_vid`` cookie / the snippet's id) becomes a contact's when it is
linked to it for the first time — a form post with ``visitor_id``, ``POST /events`` with both
``email`` and ``visitor_id`` (e.g. type ``identify``), or an email click that carries the visitor
cookie. The link item ``V#<vid>``/``LINK`` is written with the condition "not linked yet" together
with ``contact_identified`` {visitor_id} and the visitor id added to the profile's ``visitor_ids``,
in one transaction: the lead engine folds the visitor's anonymous history into the score, the
timeline shows it. A visitor id already linked to ANOTHER contact keeps its first link (a shared
device: the anonymous history is not handed to whoever signs up next on it); the new contact's
own events are recorded as usual. The page-view pixel never reads or links (one write). A form
post links the visitor from its ``visitor_id`` field or, without one, from the ``lf_vid`` cookie
the browser sends with it.

Trust by origin: public ``POST /events`` records only the browser event types the stage declares
public (``identify`` and ``LEADFLOW_PUBLIC_EVENT_TYPES``); business facts (purchases, trials,
deals, product usage) come from servers through ``POST /admin/events`` (``server_events``), both
through one ``EventRecorder``. Sign-up forms are guarded by ``protection`` (honeypot, render
stamp, budgets, CAPTCHA)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.exceptions import ClientError

from leadflow.capture.model import FormAccepted, FormSubmission, truncate_ip
from leadflow.capture.protection import (
    CaptchaVerifier,
    PostSignals,
    SignupRefused,
    count_refusal,
    stamp_age,
)
from leadflow.capture.store import SignupBudgets
from leadflow.contacts.normalize import NationalNumber, resolve_phone
from leadflow.contacts.store import ContactStore, VisitorLinks
from leadflow.events.model import VISITOR_ID_PATTERN, Event, EventAccepted, EventIn
from leadflow.events.store import EventStore, IdempotencyMarks
from leadflow.kernel import ids
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.errors import InvalidInput, NotFound
from leadflow.kernel.observability import logger, metrics
from leadflow.kernel.settings import FormConfig
from leadflow.platform.dynamo import Transaction, TransactionCancelled
from leadflow.platform.tokens import InvalidToken, TokenClaims, TokenSigner

_VISITOR_ID = re.compile(VISITOR_ID_PATTERN)
MAX_CONFLICT_RETRIES = 3
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_URL = 2048


PERSONAL_QUERY_KEYS = frozenset(
    {
        "email",
        "e-mail",
        "e_mail",
        "mail",
        "phone",
        "tel",
        "mobile",
        "name",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "fname",
        "lname",
        "address",
        "token",
        "access_token",
        "id_token",
        "code",
        "password",
        "pass",
        "pwd",
        "session",
        "sessionid",
        "auth",
        "key",
        "api_key",
        "secret",
    }
)
"""Query parameters a stored page URL never keeps: personal data or credentials a site (or a
sign-in redirect) may put in a URL."""


def _personal(key: str, value: str) -> bool:
    return key.strip().lower() in PERSONAL_QUERY_KEYS or "@" in value


def clean_url(value: str | None) -> str | None:
    """An http(s) URL of bounded length, or None — as stored on an event: without its fragment
    and without query parameters that carry personal data or credentials (``PERSONAL_QUERY_KEYS``,
    or any value with an ``@``, e.g. ``?ref=ada@example.com``), so no address or token is kept in
    URLs; campaign and page parameters (``utm_*``, ``id`` …) stay."""
    if not value:
        return None
    value = value.strip()[:MAX_URL]
    if any(ord(ch) < 32 for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if not _personal(k, v)]
    if len(kept) == len(query) and not parts.fragment:
        return value
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), ""))


def valid_visitor_id(value: str | None) -> str | None:
    return value if value and _VISITOR_ID.match(value) else None


def identified_event(
    contact_id: str, visitor_id: str, at: str, source: str, *, with_event: str | None = None
) -> Event:
    """``contact_identified``; written together with another event (``with_event``: its id), its id
    sorts right after that one's, so the pair is ordered the same way in every listing."""
    return Event(
        event_id=f"{with_event}.identified" if with_event else ids.new_event_id(),
        type="contact_identified",
        occurred_at=at,
        contact_id=contact_id,
        visitor_id=visitor_id,
        source=source,
        properties={"visitor_id": visitor_id},
    )


@dataclass(frozen=True)
class Signup:
    """What one sign-up form post writes (``plan_signup``), before it is a transaction."""

    contact_id: str
    email: str
    at: str
    source: str
    """``form:<form id>``."""
    ip: str | None
    """The truncated source IP (consent evidence)."""
    fields: dict[str, Any]
    """The profile upsert."""
    profile_visitor_id: str | None
    """The visitor id the profile lists (not one linked to another contact: a shared device)."""
    consent_log: list[tuple[str, str]]
    """(channel, action) entries of the consent log."""
    phone: str | None
    link_visitor: str | None
    """The visitor to link to the contact (an unlinked visitor id came with the post)."""
    events: list[tuple[str, Event]]
    """(operation name, event): ``identified`` when a visitor is linked, then ``form_submitted``."""


def plan_signup(
    form_id: str,
    form: FormConfig,
    submission: FormSubmission,
    *,
    contact_id: str,
    existing: bool,
    already_granted: bool,
    visitor_id: str | None,
    linked_contact: str | None,
    ip: str | None,
    at: str,
    form_event_id: str,
    stored_country: str | None = None,
) -> Signup:
    """The writes of a sign-up, decided from what was read (no I/O): ``contact_id`` (the existing
    contact's, else a new one), ``existing``, ``already_granted`` (the contact confirmed email
    consent before: double opt-in does not ask again), the submitted ``visitor_id`` and the contact
    it is linked to already (``linked_contact``), the existing contact's ``stored_country`` (a
    national phone number posted without a country is read in it; ``InvalidInput`` naming
    ``phone`` when there is none or the number is not valid there)."""
    source = f"form:{form_id}"
    try:
        phone = resolve_phone(submission.phone, stored_country)
    except ValueError as exc:
        raise InvalidInput("phone", str(exc)) from exc
    fields: dict[str, Any] = {
        "email": submission.email,
        "first_name": submission.first_name,
        "last_name": submission.last_name,
        "locale": submission.locale.replace("_", "-") if submission.locale else None,
        "salutation": submission.salutation,
        "timezone": submission.timezone,
        "country": submission.country,
    }
    consent_log: list[tuple[str, str]] = []
    if submission.consent:
        # double opt-in: consent stays pending until the confirmation link is clicked; a
        # contact who already confirmed keeps the granted consent
        pending = form.double_opt_in and not already_granted
        fields |= {
            "consent_email": "pending" if pending else "granted",
            "consent_updated_at": at,
            "consent_source": source,
            "consent_ip": ip,
        }
        consent_log.append(("email", str(fields["consent_email"])))
    elif not existing:
        fields["consent_email"] = "unknown"
    if phone:
        fields["phone"] = phone
        if submission.sms_consent:
            fields |= {"consent_sms": "granted", "consent_sms_updated_at": at, "consent_sms_source": source}
            consent_log.append(("sms", "granted"))
    events: list[tuple[str, Event]] = []
    link_visitor = visitor_id if visitor_id and linked_contact is None else None
    if link_visitor:
        events.append(
            ("identified", identified_event(contact_id, link_visitor, at, source, with_event=form_event_id))
        )
    properties: dict[str, Any] = {"form_id": form_id, "consent": submission.consent}
    if form.double_opt_in:
        properties["double_opt_in"] = True
    if page := clean_url(submission.page_url):
        properties["page_url"] = page
    form_submitted = Event(
        event_id=form_event_id,
        type="form_submitted",
        occurred_at=at,
        contact_id=contact_id,
        visitor_id=visitor_id,
        source=source,
        properties=properties,
    )
    events.append(("form_submitted", form_submitted))
    return Signup(
        contact_id=contact_id,
        email=submission.email,
        at=at,
        source=source,
        ip=ip,
        fields=fields,
        # a visitor id linked to another contact keeps that link (shared device)
        profile_visitor_id=visitor_id if linked_contact in (None, contact_id) else None,
        consent_log=consent_log,
        phone=phone,
        link_visitor=link_visitor,
        events=events,
    )


class ServerEventOnly(Exception):
    """An event type a browser may not report: it must come from a server with credentials."""

    def __init__(self, event_type: str) -> None:
        super().__init__(
            f"event type {event_type!r} must come from a server: POST /admin/events with credentials"
        )
        self.event_type = event_type


class EventRecorder:
    """Records ``EventIn`` payloads: the contact found or created by email, the visitor linked the
    first time, the client ``event_id`` made exactly-once; one transaction per event."""

    def __init__(
        self,
        *,
        events: EventStore,
        contacts: ContactStore,
        marks: IdempotencyMarks,
        transact: Callable[[Transaction], None],
        links: VisitorLinks,
    ) -> None:
        self._events = events
        self._contacts = contacts
        self._marks = marks
        self._transact = transact
        self._links = links

    def record(self, payload: EventIn, *, source: str) -> EventAccepted:
        """Record one event (``source``: ``api`` from a browser, ``server`` from the admin API).
        With ``email`` the contact is found or created; a repeated ``event_id`` is stored once."""
        for attempt in range(2):
            txn = Transaction()
            at = iso(utc_now())
            contact_id: str | None = None
            event_id = ids.new_event_id()
            if payload.email:
                contact_id = self._contacts.contact_id_for_email(payload.email)
                link = None
                if payload.visitor_id and self._links.linked_contact(payload.visitor_id) is None:
                    link = payload.visitor_id  # first time this visitor is tied to a contact
                if contact_id is None:
                    contact_id = ids.new_contact_id()
                    txn.add(self._contacts.email_claim_op(payload.email, contact_id), "email_claim")
                    txn.add(
                        self._contacts.upsert_profile_op(
                            contact_id, {"email": payload.email}, at, visitor_id=link
                        ),
                        "profile",
                    )
                elif link:
                    txn.add(self._contacts.add_visitor_op(contact_id, link, at), "profile")
                if link:
                    txn.add(self._links.link_op(link, contact_id, at), "link")
                    txn.add(
                        self._events.put_op(
                            identified_event(contact_id, link, at, source, with_event=event_id)
                        ),
                        "identified",
                    )
            event = Event(
                event_id=event_id,
                type=payload.type,
                occurred_at=at,
                contact_id=contact_id,
                visitor_id=payload.visitor_id,
                source=source,
                properties=payload.properties
                | ({"client_event_id": payload.event_id} if payload.event_id else {}),
            )
            txn.add(self._events.put_op(event), "event")
            if payload.event_id:
                txn.add(self._marks.put_op("EVENT", payload.event_id), "marker")
            try:
                self._transact(txn)
            except TransactionCancelled as exc:
                if exc.failed_condition("marker"):
                    metrics.add_metric(name="DuplicateEvents", unit="Count", value=1)
                    return EventAccepted(event_id=payload.event_id or event.event_id, duplicate=True)
                if (exc.failed_condition("email_claim") or exc.failed_condition("link")) and attempt == 0:
                    continue  # claimed or linked concurrently: read again
                raise
            metrics.add_metric(name="EventsRecorded", unit="Count", value=1)
            return EventAccepted(event_id=payload.event_id or event.event_id, duplicate=False)
        raise RuntimeError("unreachable: email claim retried")  # pragma: no cover


@dataclass(frozen=True)
class PageView:
    visitor_id: str
    new_visitor: bool


class TrackingService:
    def __init__(
        self,
        *,
        events: EventStore,
        contacts: ContactStore,
        marks: IdempotencyMarks,
        signer: TokenSigner,
        forms: Mapping[str, FormConfig],
        transact: Callable[[Transaction], None],
        links: VisitorLinks,
        browser_event_types: frozenset[str] = frozenset({"identify"}),
        budgets: SignupBudgets | None = None,
        forms_that_send: Callable[[], frozenset[str]] = frozenset,
        captcha: CaptchaVerifier | None = None,
    ) -> None:
        """``budgets``: where sign-up budgets are counted (None: no budgets); ``forms_that_send``:
        the forms whose sign-ups send email (read once, when first needed); ``captcha``: the
        verifier of forms that configure one."""
        self._links = links
        self._browser_event_types = browser_event_types
        self._budgets = budgets
        self._forms_that_send = forms_that_send
        self._sending_forms: frozenset[str] | None = None
        self.captcha = captcha
        self._recorder = EventRecorder(
            events=events, contacts=contacts, marks=marks, transact=transact, links=links
        )
        self._events = events
        self._contacts = contacts
        self._marks = marks
        self._signer = signer
        self._forms = forms
        self._transact = transact

    # --- email engagement (hot path) -------------------------------------------------------------

    def _engagement(self, claims: TokenClaims, event_type: str, properties: dict[str, Any]) -> None:
        event = Event(
            event_id=ids.new_event_id(),
            type=event_type,
            occurred_at=iso(utc_now()),
            contact_id=claims.contact_id,
            message_id=claims.message_id,
            source="email",
            properties=properties,
        )
        self._events.record(event)
        metrics.add_metric(name=f"{event_type}", unit="Count", value=1)

    def record_open(self, token: str, user_agent: str | None = None, source_ip: str | None = None) -> bool:
        """Record an open for a valid token; anything else records nothing (the pixel still answers).
        The user agent and the truncated IP (/24, /48) let reporting tell privacy-proxy prefetches
        and scanners from people."""
        try:
            claims = self._signer.verify(token, "open")
        except InvalidToken as exc:
            logger.info("open pixel with invalid token", extra={"reason": str(exc)})
            metrics.add_metric(name="InvalidTokens", unit="Count", value=1)
            return False
        properties = {"user_agent": (user_agent or "")[:256], "ip": truncate_ip(source_ip)}
        self._engagement(claims, "email_opened", {k: v for k, v in properties.items() if v is not None})
        return True

    def record_click(self, token: str, user_agent: str | None, visitor_id: str | None = None) -> str:
        """Record a click and return the destination sealed in the token. With the visitor cookie
        (``visitor_id``) an unlinked visitor becomes the clicking contact's (``contact_identified``)."""
        claims = self._signer.verify(token, "click")
        self._engagement(claims, "email_clicked", {"url": claims.url, "user_agent": (user_agent or "")[:256]})
        visitor_id = valid_visitor_id(visitor_id)
        if visitor_id:
            try:
                self._identify_from_click(claims.contact_id, visitor_id)
            except ClientError:  # the click is recorded; a failed link is logged, not fatal
                logger.exception("visitor not linked")
        return claims.url or ""

    def _identify_from_click(self, contact_id: str, visitor_id: str) -> None:
        if self._links.linked_contact(visitor_id, consistent=False) is not None:
            return  # linked already (to this contact, or to another one on a shared device)
        at = iso(utc_now())
        txn = Transaction()
        txn.add(self._links.link_op(visitor_id, contact_id, at), "link")
        txn.add(self._contacts.add_visitor_op(contact_id, visitor_id, at), "profile")
        txn.add(self._events.put_op(identified_event(contact_id, visitor_id, at, "email")), "identified")
        try:
            self._transact(txn)
        except TransactionCancelled as exc:
            if exc.failed_condition("link") or exc.failed_condition("profile"):
                return  # linked concurrently, or the contact was merged or erased
            raise
        metrics.add_metric(name="VisitorsIdentified", unit="Count", value=1)

    # --- website ---------------------------------------------------------------------------------

    def record_page_view(self, params: Mapping[str, str], cookie_visitor_id: str | None) -> PageView:
        """A page view from the pixel; tolerant of any input (bad fields are dropped, not fatal)."""
        visitor_id = valid_visitor_id(params.get("vid")) or valid_visitor_id(cookie_visitor_id)
        new_visitor = visitor_id is None
        visitor_id = visitor_id or ids.new_visitor_id()
        properties: dict[str, Any] = {
            "url": clean_url(params.get("url")),
            "referrer": clean_url(params.get("ref")),
            "title": (params.get("title") or "")[:256] or None,
        }
        for key in UTM_KEYS:
            if params.get(key):
                properties[key] = params[key][:256]
        event = Event(
            event_id=ids.new_event_id(),
            type="page_viewed",
            occurred_at=iso(utc_now()),
            visitor_id=visitor_id,
            source="pixel",
            properties={k: v for k, v in properties.items() if v is not None},
        )
        self._events.record(event)
        metrics.add_metric(name="page_viewed", unit="Count", value=1)
        return PageView(visitor_id=visitor_id, new_visitor=new_visitor)

    def record_event(self, payload: EventIn) -> EventAccepted:
        """An event from a browser (public ``POST /events``): only the types declared public."""
        if payload.type not in self._browser_event_types:
            count_refusal("server_event_type", "POST /events")
            raise ServerEventOnly(payload.type)
        return self._recorder.record(payload, source="api")

    def form_config(self, form_id: str) -> FormConfig:
        form = self._forms.get(form_id)
        if form is None:
            raise NotFound("form")
        return form

    def sends_email(self, form_id: str) -> bool:
        if self._sending_forms is None:
            self._sending_forms = self._forms_that_send()
        return form_id in self._sending_forms

    @property
    def signer(self) -> TokenSigner:
        return self._signer

    def _verify_captcha(self, form: FormConfig, signals: PostSignals, retry_after: int | None = None) -> None:
        """Raise ``SignupRefused`` unless the post carries a response the provider confirms
        (``retry_after``: the budget is spent until then)."""
        assert form.captcha is not None
        if not signals.captcha_response:
            count_refusal("captcha_required", "POST /forms")
            raise SignupRefused(
                "captcha_required", "please solve the CAPTCHA", captcha=form.captcha, retry_after=retry_after
            )
        if self.captcha is None or not self.captcha.verify(form.captcha, signals.captcha_response):
            count_refusal("captcha_failed", "POST /forms")
            raise SignupRefused(
                "captcha_failed", "the CAPTCHA was not solved", captcha=form.captcha, retry_after=retry_after
            )

    def _screen(self, form: FormConfig, signals: PostSignals) -> bool:
        """False for a bot's post (honeypot filled, sent sooner than ``min_fill_seconds`` after the
        render stamp): it is answered like a person's and stores nothing. Raises ``SignupRefused``
        for a missing or expired stamp (a person reloads the page) and a required CAPTCHA."""
        if signals.honeypot:
            count_refusal("honeypot", "POST /forms")
            return False
        if form.min_fill_seconds:
            age = stamp_age(self._signer, signals.stamp, utc_now().timestamp())
            if age is None:
                count_refusal("form_expired", "POST /forms")
                raise SignupRefused("form_expired", "the form has expired: reload the page and send it again")
            if age < form.min_fill_seconds:
                count_refusal("too_fast", "POST /forms")
                return False
        if form.captcha is not None and form.captcha.when == "always":
            self._verify_captcha(form, signals)
        return True

    def submit_form(
        self,
        form_id: str,
        submission: FormSubmission,
        *,
        source_ip: str | None,
        user_agent: str | None,
        signals: PostSignals | None = None,
        cookie_visitor_id: str | None = None,
    ) -> FormAccepted:
        """Create or update the contact, record ``form_submitted`` and link the visitor (from the
        ``visitor_id`` field, else the ``lf_vid`` cookie): one transaction, which also spends the
        form's sign-up budgets when its sign-ups send email. Reads the email index, the visitor's
        link and, only when the post needs it, the existing contact's consent and country (one
        read: ``_stored``). A bot's post returns a made-up contact id (the answer a person gets) and
        stores nothing; a refused post raises ``SignupRefused`` and stores nothing; a national phone
        number that neither the form's nor the stored country reads is an ``InvalidInput``
        naming ``phone``."""
        form = self.form_config(form_id)
        if form.consent_required and not submission.consent:
            raise InvalidInput("consent", "consent is required to sign up")
        signals = signals or PostSignals()
        if not self._screen(form, signals):
            return FormAccepted(contact_id=ids.new_contact_id())
        submitted_vid = submission.visitor_id or valid_visitor_id(cookie_visitor_id)
        captcha_passed = form.captcha is not None and form.captcha.when == "always"
        claim_retried = False
        conflicts = 0
        while True:
            existing = self._contacts.contact_id_for_email(submission.email)
            contact_id = existing or ids.new_contact_id()
            now = utc_now()
            at = iso(now)
            linked = self._links.linked_contact(submitted_vid) if submitted_vid else None
            stored = self._stored(existing, form, submission)
            signup = plan_signup(
                form_id,
                form,
                submission,
                contact_id=contact_id,
                existing=existing is not None,
                already_granted=stored.get("consent_email") == "granted",
                stored_country=stored.get("country"),
                visitor_id=submitted_vid,
                linked_contact=linked,
                ip=truncate_ip(source_ip),
                at=at,
                form_event_id=ids.new_event_id(),
            )
            txn = self._signup_transaction(signup, form)
            budget_ops: list[dict[str, Any]] = []
            if self._budgets is not None and not captcha_passed and self.sends_email(form_id):
                budget_ops = list(
                    self._budgets.ops(
                        form_id, form.budget, network=truncate_ip(source_ip), email=submission.email, now=now
                    )
                )
                txn.extend(budget_ops, "budget")
            try:
                self._transact(txn)
            except TransactionCancelled as exc:
                if any(exc.failed_condition(f"budget[{i}]") for i in range(len(budget_ops))):
                    if form.captcha is None:
                        count_refusal("rate_limited", "POST /forms")
                        raise SignupRefused(
                            "rate_limited",
                            "too many sign-ups from this network or to this domain: try again later",
                            retry_after=SignupBudgets.window(now)[1],
                        ) from None
                    # over budget: a solved CAPTCHA lets a person in
                    self._verify_captcha(form, signals, retry_after=SignupBudgets.window(now)[1])
                    captcha_passed = True
                    continue
                if not claim_retried and (
                    exc.failed_condition("email_claim") or exc.failed_condition("link")
                ):
                    claim_retried = True
                    continue  # the address was claimed or the visitor linked concurrently: read again
                if exc.conflicted() and conflicts < MAX_CONFLICT_RETRIES:
                    # a budget counter is shared by every sign-up from the network or to the domain:
                    # a concurrent sign-up's transaction held it; try again shortly
                    conflicts += 1
                    time.sleep(random.uniform(0.01, 0.04) * conflicts)
                    continue
                raise
            metrics.add_metric(name="FormsSubmitted", unit="Count", value=1)
            return FormAccepted(contact_id=contact_id)

    def _signup_transaction(self, signup: Signup, form: FormConfig) -> Transaction:
        """The named writes of a sign-up (the budgets are added by the caller)."""
        txn = Transaction()
        txn.add(self._contacts.email_claim_op(signup.email, signup.contact_id), "email_claim")
        txn.add(
            self._contacts.upsert_profile_op(
                signup.contact_id, signup.fields, signup.at, visitor_id=signup.profile_visitor_id
            ),
            "profile",
        )
        for channel, action in signup.consent_log:
            txn.add(
                self._contacts.consent_log_op(
                    signup.contact_id,
                    channel=channel,
                    action=action,
                    source=signup.source,
                    at=signup.at,
                    ip=signup.ip,
                    text=form.consent_text,
                ),
                f"{channel}_consent_log",
            )
        if signup.phone:
            txn.add(self._contacts.phone_index_op(signup.phone, signup.contact_id, signup.at), "phone_index")
        if signup.link_visitor is not None:
            txn.add(self._links.link_op(signup.link_visitor, signup.contact_id, signup.at), "link")
        for name, event in signup.events:
            txn.add(self._events.put_op(event), name)
        return txn

    def _stored(self, contact_id: str | None, form: FormConfig, submission: FormSubmission) -> dict[str, Any]:
        """What a sign-up needs of the existing contact, read only when it needs it (one read):
        ``consent_email`` (a double opt-in form with consent does not ask a confirmed contact
        again) and ``country`` (a national phone number posted without a country)."""
        consent = submission.consent and form.double_opt_in
        national = isinstance(submission.phone, NationalNumber)
        if contact_id is None or not (consent or national):
            return {}
        fields = [*(["consent_email"] if consent else []), *(["country"] if national else [])]
        return self._contacts.profile(contact_id, fields=fields) or {}

    def _consent_change(
        self,
        profile_op: dict[str, Any],
        event_type: str,
        claims: TokenClaims,
        at: str,
        *,
        source: str,
        action: str,
        ip: str | None = None,
    ) -> bool:
        """A conditional consent change, its event and its consent-log entry, in one transaction;
        False when the condition failed (nothing to change: a second click)."""
        txn = Transaction()
        txn.add(profile_op, "consent")
        txn.add(
            self._contacts.consent_log_op(
                claims.contact_id, channel="email", action=action, source=source, at=at, ip=truncate_ip(ip)
            ),
            "consent_log",
        )
        txn.add(
            self._events.put_op(
                Event(
                    event_id=ids.new_event_id(),
                    type=event_type,
                    occurred_at=at,
                    contact_id=claims.contact_id,
                    message_id=claims.message_id,
                    source=source,
                    properties={"channel": "email"},
                ),
            ),
            "event",
        )
        try:
            self._transact(txn)
        except TransactionCancelled as exc:
            if exc.failed_condition("consent"):
                return False
            raise
        return True

    # --- double opt-in ---------------------------------------------------------------------------

    def confirm_subscription(self, token: str, source_ip: str | None = None) -> bool:
        """The confirmation link of a double opt-in email: pending consent becomes granted
        (source ``double_opt_in``) and ``consent_confirmed`` is recorded, in one transaction.
        False when there was nothing to confirm (a second click, or consent no longer pending)."""
        claims = self._signer.verify(token, "confirm")
        at = iso(utc_now())
        op = self._contacts.confirm_email_consent_op(claims.contact_id, at)
        if not self._consent_change(
            op, "consent_confirmed", claims, at, source="double_opt_in", action="confirmed", ip=source_ip
        ):
            return False
        metrics.add_metric(name="ConsentsConfirmed", unit="Count", value=1)
        return True

    # --- unsubscribe -----------------------------------------------------------------------------

    def check_unsubscribe_token(self, token: str) -> TokenClaims:
        return self._signer.verify(token, "unsubscribe")

    def unsubscribe(self, token: str, source: str) -> bool:
        """Revoke email consent and record ``unsubscribed``. False when already unsubscribed."""
        claims = self._signer.verify(token, "unsubscribe")
        at = iso(utc_now())
        op = self._contacts.revoke_email_consent_op(claims.contact_id, at, source)
        if not self._consent_change(op, "unsubscribed", claims, at, source=source, action="revoked"):
            return False
        metrics.add_metric(name="Unsubscribes", unit="Count", value=1)
        return True
