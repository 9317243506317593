"""Fault injection: contacts sign up and interact while the AWS calls of every function fail at
random, Lambda batches crash half-way, stream batches arrive twice and the send task is throttled;
then the faults stop, ``leadflow.ops.redrive`` runs and virtual time carries the welcome journey
to its end. Proves: nothing lost, nothing doubled, every contact in the state its events say.

Faults are injected with a botocore ``before-call`` hook on the clients the handlers use (the
cached ``leadflow.wiring`` clients): the call fails as if the SDK had given up on it (its own
retries exhausted), so every fault reaches the function. Which function made the call is known
from the handler wrappers installed here.

Which calls fail is decided by the call's identity, not by timing: a hash of the seed, the
function, the operation, the call's parameters with the contacts' random ids and addresses
replaced by stable names (``CallIdentity``), and how many times that same call was made before.
Journey executions run in threads, so calls of different contacts interleave differently from run
to run; with the same seed the same call of the same contact fails the same way every run.

Finding (``never_sent_stuck_claim``): a send step claims its message id ("sending") before it
calls SES; when a DynamoDB call fails before SES is reached *and* the write that releases the
claim ("retryable") fails too, the claim stays "sending" and every retry or redrive answers
``duplicate``: that email is never sent (at most once instead of exactly once).

``python -m tests.proof.faults [--contacts N] [--seed S]`` prints the figures and a JSON summary."""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import json
import logging
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from leadflow import wiring
from leadflow.events.model import Event
from leadflow.events.store import EventStore
from leadflow.kernel import observability
from leadflow.kernel.clock import iso, utc_now
from leadflow.kernel.ids import new_event_id
from leadflow.leads.model import load_lead_model
from leadflow.leads.scoring import display_score, replay
from leadflow.local.system import LocalSystem
from leadflow.ops import redrive as ops
from tests.helpers import redrive_local_stage

Handler = Callable[[dict[str, Any], Any], Any]
CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("leadflow_proof_function", default="")
LINK = re.compile(r"http://[^\"'<>\s]+/(?:t/o|t/c|unsubscribe)/[A-Za-z0-9_\-.]+")
FOLLOW_UPS = ("followup_engaged", "followup_nudge")
TWO_DAYS = 2 * 86400 + 60
DUPLICATE_METRICS = (
    "DuplicateScoreRecords",
    "DuplicateSendsPrevented",
    "DuplicateStepsPrevented",
    "JourneyAlreadyEntered",
    "DuplicateEvents",
)


def quiet() -> None:
    """Injected faults are logged as errors by design; the proof prints its own figures."""
    observability.logger.setLevel(logging.CRITICAL)
    for name in ("leadflow.local.pump", "botocore", "moto"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="No application metrics to publish")


class LambdaTooManyRequests(Exception):
    """Lambda throttled the invoke: the handler never ran (Step Functions' ``Lambda.*`` error)."""


LambdaTooManyRequests.__name__ = "Lambda.TooManyRequestsException"


class LambdaCrash(RuntimeError):
    """The function died after handling part of its batch (timeout, out of memory)."""


FAULTS: dict[str, tuple[tuple[str, str, float], ...]] = {
    # service -> ((operation or "*", error code, the share of calls answered with it), ...)
    "dynamodb": (("*", "ProvisionedThroughputExceededException", 0.08),),
    "ses": (("SendRawEmail", "Throttling", 0.15), ("SendRawEmail", "MessageRejected", 0.06)),
    "sns": (("Publish", "InternalError", 0.3),),
    "sfn": (("StartExecution", "ThrottlingException", 0.15),),
}


@dataclass
class Rates:
    """How often each fault strikes: an AWS error (by its code; FAULTS' shares unless given), a
    throttled send task, a crashed consumer batch, a redelivered batch."""

    errors: dict[str, float] = field(
        default_factory=lambda: {code: share for faults in FAULTS.values() for _, code, share in faults}
    )
    lambda_throttle: float = 0.15
    crash: float = 0.2
    redeliver: float = 0.25


ID_TOKEN = re.compile(r"[A-Za-z0-9]{20,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DIGITS = re.compile(r"\d+")


class CallIdentity:
    """A call's parameters as a stable text: each contact's random id and email address become the
    contact's name (its index in the scenario); an id seen in a call that names exactly one contact
    (an event id, a message id, an execution name) becomes that contact's too; any other id,
    time or number becomes a placeholder."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.emails: dict[str, str] = {}

    def name_email(self, email: str, index: int) -> None:
        """Before the contact exists: its address (digits in a name would be erased below)."""
        self.emails[email] = "contact-" + "".join(chr(ord("a") + int(d)) for d in f"{index:03d}")

    def name_contact(self, contact_id: str, email: str) -> None:
        self.names[contact_id] = self.emails[email]

    def of(self, *parts: Any) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        for email, label in self.emails.items():
            if email in text:
                text = text.replace(email, label)
        tokens = set(ID_TOKEN.findall(text))
        known = {self.names[t] for t in tokens if t in self.names}
        if len(known) == 1:
            (label,) = known
            for token in tokens:
                self.names.setdefault(token, label)
        text = ID_TOKEN.sub(lambda m: self.names.get(m.group(), "#"), text)
        return DIGITS.sub("0", text)


@dataclass
class Injector:
    rates: Rates
    seed: int
    enabled: bool = False
    identity: CallIdentity = field(default_factory=CallIdentity)
    seen: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    by_function: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    metrics: Counter[str] = field(default_factory=Counter)

    def draw(self, kind: str, *call: Any) -> float:
        """A number in [0, 1) for the n-th time this call (``kind`` and its identity) is made."""
        key = f"{kind}|{self.identity.of(*call)}"
        n = self.seen[key]
        self.seen[key] += 1
        digest = hashlib.sha256(f"{self.seed}|{key}|{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def hook(self, service: str) -> Callable[..., None]:
        def before_call(model: Any, params: Any = None, **_: Any) -> None:
            function = CURRENT.get()
            if not function:
                return
            if not self.enabled:  # no fault now, but the ids the call names are learned all the same
                self.identity.of(*_call_parts(service, model.name, params or {}))
                return
            for operation, code, _share in FAULTS[service]:
                if operation not in ("*", model.name):
                    continue
                call = _call_parts(service, model.name, params or {})
                if self.draw(f"{function}|{code}", *call) < self.rates.errors[code]:
                    self.injected[f"{service}:{code}"] += 1
                    self.by_function[function.removeprefix("leadflow-local-")] += 1
                    raise ClientError(
                        {
                            "Error": {"Code": code, "Message": "injected fault"},
                            "ResponseMetadata": {"HTTPStatusCode": 400},
                        },
                        model.name,
                    )

        return before_call

    def named(self, name: str, handler: Handler) -> Handler:
        def run(event: dict[str, Any], context: Any) -> Any:
            token = CURRENT.set(name)
            try:
                return handler(event, context)
            finally:
                CURRENT.reset(token)

        return run

    def send_task(self, handler: Handler) -> Handler:
        """Step Functions' Lambda task: throttled by Lambda now and then (retried by the Retry)."""

        def run(event: dict[str, Any], context: Any) -> Any:
            if self.enabled and self.draw("send-task|throttle", event) < self.rates.lambda_throttle:
                self.injected["lambda:TooManyRequestsException(send task)"] += 1
                self.by_function["send"] += 1
                raise LambdaTooManyRequests("Rate exceeded")
            return handler(event, context)

        return run

    def stream_consumer(self, name: str, handler: Handler) -> Handler:
        """A stream-mapped function: may crash part-way through a batch, and a batch it finished
        may be delivered again (at-least-once delivery)."""

        def run(event: dict[str, Any], context: Any) -> Any:
            records = event["Records"]
            if self.enabled:
                # the function dies after a record whose identity draws a crash (per record, so
                # the same record crashes its batch whichever records the batch holds)
                rate = self.rates.crash / max(len(records), 1)
                for done, record in enumerate(records, start=1):
                    if self.draw(f"{name}|crash", _record_parts(record)) < rate:
                        handler({"Records": records[:done]}, context)
                        self.injected["lambda:crash mid-batch"] += 1
                        self.by_function[name.removeprefix("leadflow-local-")] += 1
                        raise LambdaCrash(f"crashed after {done} of {len(records)} records")
            result = handler(event, context)
            if (
                self.enabled
                and self.draw(f"{name}|redeliver", [_record_parts(r) for r in records]) < self.rates.redeliver
                and not (result or {}).get("batchItemFailures")
            ):
                self.injected["stream:duplicate batch delivery"] += 1
                self.events["redelivered records"] += len(records)
                handler(event, context)
            return result

        return run


def _call_parts(service: str, operation: str, request: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a call: its serialized parameters (the request body ``before-call`` sees;
    not its headers, which carry times and invocation ids) — for SES only the recipients and the
    message tag (the raw MIME holds random boundaries)."""
    body = request.get("body")
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if service == "ses" and isinstance(body, dict):
        body = {k: v for k, v in body.items() if k.startswith(("Destinations", "Tags"))}
    return (service, operation, body)


def _record_parts(record: dict[str, Any]) -> Any:
    """A stream record's identity: its event (keys and image), not its sequence number."""
    change = record.get("dynamodb", {})
    return (record.get("eventName"), change.get("Keys"), change.get("NewImage"))


@contextmanager
def injected_faults(system: LocalSystem, rates: Rates, seed: int) -> Iterator[Injector]:
    injector = Injector(rates=rates, seed=seed)
    hooks = []
    for service, key in (("dynamodb", "dynamodb"), ("ses", "ses"), ("sns", "sns"), ("stepfunctions", "sfn")):
        client = wiring.client(service)
        hook = injector.hook(key)
        client.meta.events.register("before-call", hook, unique_id=f"proof-faults-{service}")
        hooks.append((client, f"proof-faults-{service}"))
    saved_handlers = dict(system.handlers)
    for name, handler in saved_handlers.items():
        wrapped = injector.named(name, handler)
        if name.endswith("-send"):
            wrapped = injector.send_task(wrapped)
        system.handlers[name] = wrapped
    saved_consumers = {c.name: c.handler for c in system.pump.consumers}
    for consumer in system.pump.consumers:
        consumer.handler = injector.stream_consumer(
            consumer.name, injector.named(consumer.name, consumer.handler)
        )
    real_add_metric = observability.metrics.add_metric

    def count_metric(*args: Any, **kwargs: Any) -> Any:
        name = kwargs.get("name", args[0] if args else "")
        injector.metrics[str(name)] += int(kwargs.get("value", 1))
        return real_add_metric(*args, **kwargs)

    observability.metrics.add_metric = count_metric  # type: ignore[method-assign]
    try:
        yield injector
    finally:
        injector.enabled = False
        del observability.metrics.add_metric
        for client, unique_id in hooks:
            client.meta.events.unregister("before-call", unique_id=unique_id)
        system.handlers.clear()
        system.handlers.update(saved_handlers)
        for consumer in system.pump.consumers:
            consumer.handler = saved_consumers[consumer.name]


# --- the client side: a browser or mail client that retries on a server error -----------------


@dataclass
class Client:
    system: LocalSystem
    retries: int = 0
    attempts: int = 0
    gave_up: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def call(self, method: str, url_or_path: str, *, max_attempts: int = 8, **kwargs: Any) -> dict[str, Any]:
        parts = urlsplit(url_or_path)
        path, query = parts.path, parts.query
        reply: dict[str, Any] = {}
        for attempt in range(max_attempts):
            self.attempts += 1
            if attempt:
                self.retries += 1
            try:
                reply = self.system.invoke_http(method, path, query=query, **kwargs)
            except Exception:  # an unhandled Lambda error: API Gateway answers 502
                reply = {"statusCode": 502}
            self.statuses[int(reply["statusCode"])] += 1
            if int(reply["statusCode"]) < 500:
                return reply
        self.gave_up += 1
        return reply


def links(message: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for url in LINK.findall(message.get("html") or ""):
        kind = "open" if "/t/o/" in url else "click" if "/t/c/" in url else "unsubscribe"
        found.setdefault(kind, url)
    return found


def step_of(system: LocalSystem) -> dict[str, dict[str, Any]]:
    """Message items by message id (contact, step, status)."""
    return {str(m["message_id"]): m for m in system._scan("messages") if "message_id" in m}


# --- the scenario ------------------------------------------------------------------------------


@dataclass
class Plan:
    opens: set[int] = field(default_factory=set)
    clicks: set[int] = field(default_factory=set)
    unsubscribes: set[int] = field(default_factory=set)
    api_events: set[int] = field(default_factory=set)
    mql: set[int] = field(default_factory=set)


def plan_for(contacts: int) -> Plan:
    plan = Plan()
    for i in range(contacts):
        if i % 3 == 0:
            plan.opens.add(i)
        if i % 4 == 1:
            plan.clicks.add(i)
        if i % 7 == 5:
            plan.unsubscribes.add(i)
        if i % 2 == 0:
            plan.api_events.add(i)
        if i % 10 == 9:
            plan.mql.add(i)
    return plan


def redrive_all(system: LocalSystem, rounds: int = 6) -> dict[str, int]:
    """``leadflow ops redrive`` against the local stage until nothing is left to redrive."""
    total: Counter[str] = Counter()
    for _ in range(rounds):
        figures = ops.totals(redrive_local_stage(system))
        total.update({k: v for k, v in figures.items() if v})
        total["rounds"] += 1
        system.settle(timeout=120)
        if figures["redriven"] == 0 and figures["still_failing"] == 0:
            break
    return dict(total)


def run(
    contacts: int = 30, seed: int = 7, rates: Rates | None = None, verbose: bool = True
) -> dict[str, Any]:
    quiet()
    rates = rates or Rates()
    plan = plan_for(contacts)
    emails = [f"proof-{i:03d}@example.com" for i in range(contacts)]
    accepted: Counter[str] = Counter()
    pixel_requests = 0
    with LocalSystem(background_pump=False) as system, injected_faults(system, rates, seed) as faults:
        client = Client(system)
        ids: dict[int, str] = {}
        # 1. sign-ups, faults on
        for i, address in enumerate(emails):
            faults.identity.name_email(address, i)
        faults.enabled = True
        for i, address in enumerate(emails):
            reply = client.call(
                "POST",
                "/forms/newsletter",
                headers={"content-type": "application/json"},
                body=json.dumps({"email": address, "first_name": f"P{i}", "consent": True}),
            )
            assert reply["statusCode"] == 201, reply
            ids[i] = json.loads(reply["body"])["contact_id"]
            faults.identity.name_contact(ids[i], address)
            accepted["form_submitted"] += 1
        system.settle(timeout=120)
        # internal stage changes (as a journey's update_contact writes them): the MQL hand-off
        # journey publishes to the sales topic through SNS
        internal = EventStore(system.client("dynamodb"), "leadflow-local-events", 400)
        for i in sorted(plan.mql):
            internal.record(
                Event(
                    event_id=new_event_id(),
                    type="stage_changed",
                    occurred_at=iso(utc_now()),
                    contact_id=ids[i],
                    source="proof",
                    properties={"from": "lead", "to": "mql"},
                )
            )
        system.settle(timeout=120)

        # 2. interactions, faults on: opens, clicks, unsubscribes from the emails, API events
        def welcome_links(i: int) -> dict[str, str]:
            for message in system.outbox():
                if emails[i] in message["to"] and message["subject"].startswith("Welcome"):
                    return links(message)
            return {}

        def interact(i: int) -> None:
            nonlocal pixel_requests
            found = welcome_links(i)
            if not found:
                return
            if i in plan.opens and "open" in found and not done["open"].get(i):
                client.call("GET", found["open"])  # the pixel answers 200 whatever happens
                pixel_requests += 1
                done["open"][i] = True
            if i in plan.clicks and not done["click"].get(i):
                reply = client.call("GET", found["click"])
                assert reply["statusCode"] == 302, reply
                accepted["email_clicked"] += 1
                done["click"][i] = True
            if i in plan.unsubscribes and not done["unsubscribe"].get(i):
                reply = client.call("POST", found["unsubscribe"], body="List-Unsubscribe=One-Click")
                assert reply["statusCode"] == 200, reply
                accepted["unsubscribed"] += 1
                done["unsubscribe"][i] = True

        done: dict[str, dict[int, bool]] = defaultdict(dict)
        for i in range(contacts):
            interact(i)
            if i in plan.api_events:
                reply = client.call(  # a server event: the admin route, with credentials
                    "POST",
                    "/admin/events",
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {system.admin_key}",
                    },
                    body=json.dumps(
                        {"type": "webinar_attended", "email": emails[i], "event_id": f"webinar-{i}"}
                    ),
                )
                assert reply["statusCode"] == 202, reply
                accepted["webinar_attended"] += 1
        system.settle(timeout=120)
        failed_executions_before = sum(1 for e in system.executions() if e["status"] == "FAILED")
        dead_lettered_before = {c.name: c.dead_lettered for c in system.pump.consumers}

        # 3. faults off: redrive, then the contacts whose welcome came only now interact
        faults.enabled = False
        redriven = Counter(redrive_all(system))
        for i in range(contacts):
            interact(i)
        system.settle(timeout=120)

        # 4. the follow-ups, faults on again; 5. faults off, redrive until done
        faults.enabled = True
        system.advance(TWO_DAYS)
        faults.enabled = False
        failed_executions_before += sum(1 for e in system.executions() if e["status"] == "FAILED")
        for _ in range(4):
            redriven.update(redrive_all(system))
            system.advance(TWO_DAYS)
            if all(e["status"] != "RUNNING" and e["status"] != "FAILED" for e in system.executions()):
                break
        # 6. the whole stream delivered once more to both consumers: changes nothing
        from leadflow.local.moto_patches import lambda_context
        from tests.integration.conftest import stream_records

        replay = stream_records(system)
        before_replay = {c["contact_id"]: c.get("score") for c in system.contacts()}
        for name in ("leadflow-local-score", "leadflow-local-trigger"):
            for start in range(0, len(replay), 100):
                system.handlers[name]({"Records": replay[start : start + 100]}, lambda_context(name))
        system.settle(timeout=120)
        after_replay = {c["contact_id"]: c.get("score") for c in system.contacts()}

        result = verify(system, plan, ids, emails, accepted, pixel_requests, faults)
        result["replayed_records"] = len(replay)
        result["replay_changed_scores"] = sum(1 for k, v in before_replay.items() if after_replay.get(k) != v)
        dead_lettered = sum(c.dead_lettered for c in system.pump.consumers)
        result.update(
            {
                "contacts": contacts,
                "seed": seed,
                "injected": dict(sorted(faults.injected.items())),
                "injected_total": sum(faults.injected.values()),
                "injected_by_function": dict(sorted(faults.by_function.items())),
                "client_retries": client.retries,
                "client_gave_up": client.gave_up,
                "pump_dead_lettered": dead_lettered,
                "dead_lettered_before_first_redrive": sum(dead_lettered_before.values()),
                "failed_executions_seen": failed_executions_before,
                "redriven": dict(redriven),
                "sfn_task_retries": sum(
                    1
                    for e in system.executions()
                    for h in system.history(e["arn"])
                    if h["type"] == "TaskFailed"
                ),
                "duplicates_prevented": {k: faults.metrics[k] for k in DUPLICATE_METRICS},
                "dead_letter_queues_after": {c: len(system.dead_letters(c)) for c in system.dlq_urls},
            }
        )
    result["ok"] = ok(result)
    if verbose:
        report(result)
    return result


def verify(
    system: LocalSystem,
    plan: Plan,
    ids: dict[int, str],
    emails: list[str],
    accepted: Counter[str],
    pixel_requests: int,
    faults: Injector,
) -> dict[str, Any]:
    contacts = {c["contact_id"]: c for c in system.contacts()}
    events = list(system._scan("events"))
    stored: Counter[str] = Counter(str(e.get("type")) for e in events)
    by_contact: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("contact_id"):
            by_contact[str(e["contact_id"])].append(e)
    # scores: exactly the points of the contact's stored events, each once (leads.yaml rules)
    lead_model = load_lead_model(system.content_dir / "leads.yaml")
    wrong_score = wrong_consent = 0
    wrong_scores: list[dict[str, Any]] = []
    for i, contact_id in ids.items():
        profile = contacts[contact_id]
        expected = display_score(replay(by_contact[contact_id], lead_model).value)
        if int(profile.get("score", 0)) != expected:
            wrong_score += 1
            wrong_scores.append(
                {
                    "contact": emails[i],
                    "stored": int(profile.get("score", 0)),
                    "expected": expected,
                    "events": sorted(
                        (str(e.get("occurred_at")), str(e.get("type")))
                        for e in by_contact[contact_id]
                        if e.get("source") != "leads"
                    ),
                }
            )
        want = "revoked" if i in plan.unsubscribes else "granted"
        if profile.get("consent_email") != want:
            wrong_consent += 1
    # events: every accepted request stored once (the open pixel answers even when its write failed)
    lost = {
        kind: accepted[kind] - stored[kind]
        for kind in ("form_submitted", "email_clicked", "unsubscribed", "webinar_attended")
        if accepted[kind] != stored[kind]
    }
    pixel_write_failures = faults.metrics["PixelWriteFailures"]
    if pixel_requests - pixel_write_failures != stored["email_opened"]:
        lost["email_opened"] = pixel_requests - pixel_write_failures - stored["email_opened"]
    # sends: exactly once per message id and per contact and step
    outbox = [m for m in system.outbox() if m["channel"] == "email"]
    per_message = Counter(m["headers"].get("X-Leadflow-Message-Id") for m in outbox)
    messages = step_of(system)
    per_step: Counter[tuple[str, str]] = Counter()
    for message_id, count in per_message.items():
        item = messages.get(str(message_id))
        if item is not None:
            per_step[(str(item["contact_id"]), str(item["step_id"]))] += count
    statuses = Counter(str(m.get("status")) for m in messages.values())
    missing: list[str] = []
    stuck: list[str] = []  # never sent: the claim stayed "sending" (see the module's finding)
    wrong_branch = 0
    for i, contact_id in ids.items():
        sent_steps = {step for (c, step), n in per_step.items() if c == contact_id and n}
        rejected = {
            str(m["step_id"])
            for m in messages.values()
            if m.get("contact_id") == contact_id and m.get("reason") == "rejected_by_provider"
        }
        stuck_steps = {
            str(m["step_id"])
            for m in messages.values()
            if m.get("contact_id") == contact_id and m.get("status") == "sending"
        }
        if "welcome" not in sent_steps | rejected:
            (stuck if "welcome" in stuck_steps else missing).append(f"{emails[i]}: welcome")
        follow = sent_steps & set(FOLLOW_UPS)
        unsubscribed = i in plan.unsubscribes
        if not unsubscribed and not follow and not (rejected & set(FOLLOW_UPS)):
            (stuck if stuck_steps & set(FOLLOW_UPS) else missing).append(f"{emails[i]}: follow-up")
        if unsubscribed and follow:
            missing.append(f"{emails[i]}: follow-up after unsubscribe")
        engaged = any(e["type"] in ("email_opened", "email_clicked") for e in by_contact[contact_id])
        if follow and follow != {"followup_engaged" if engaged else "followup_nudge"}:
            wrong_branch += 1
    # a permanent SES rejection: recorded (skipped, reason rejected_by_provider), alerted (the
    # SendsRejected metric), in the reports' stream (an email_skipped event), never sent
    rejected_ids = {mid for mid, m in messages.items() if m.get("reason") == "rejected_by_provider"}
    skipped_events = {
        str(e.get("message_id"))
        for e in events
        if e.get("type") == "email_skipped"
        and (e.get("properties") or {}).get("reason") == "rejected_by_provider"
    }
    handoffs = system.sales_handoffs()
    handoff_ids = Counter(h["handoff_id"] for h in handoffs)
    executions = Counter(e["status"] for e in system.executions())
    # an execution ends SUCCEEDED, or ABORTED when its contact left the journey on purpose (an
    # unsubscribe exits the welcome journey: the exit stops the execution); anything else is a defect
    exited = {ids[i] for i in plan.unsubscribes}
    unexpected = sorted(
        f"{e['name']}: {e['status']}"
        for e in system.executions()
        if e["status"] != "SUCCEEDED"
        and not (
            e["status"] == "ABORTED" and e["journey"] == "welcome" and any(c in e["name"] for c in exited)
        )
    )
    return {
        "contacts_stored": sum(1 for c in contacts.values() if c.get("email") in emails),
        "wrong_score": wrong_score,
        "wrong_scores": wrong_scores,
        "wrong_consent": wrong_consent,
        "events_accepted": sum(accepted.values()) + pixel_requests - pixel_write_failures,
        "events_stored": sum(stored[k] for k in (*accepted, "email_opened")),
        "lost": sum(lost.values()),
        "lost_by_type": lost,
        "pixel_requests": pixel_requests,
        "pixel_write_failures": pixel_write_failures,
        "emails_sent": len(outbox),
        "duplicate_sends": sum(n - 1 for n in per_message.values() if n > 1)
        + sum(n - 1 for n in per_step.values() if n > 1),
        "missing_sends": missing,
        "never_sent_stuck_claim": stuck,
        "claims_left_sending": statuses["sending"],
        "wrong_branch": wrong_branch,
        "rejected_by_provider": sum(
            1 for m in messages.values() if m.get("reason") == "rejected_by_provider"
        ),
        "rejected_sent": sorted(rejected_ids & {str(m) for m in per_message}),
        "rejected_not_alerted": len(rejected_ids) - faults.metrics["SendsRejected"],
        "rejected_not_reported": sorted(rejected_ids - skipped_events),
        "outcomes_not_recorded": statuses["handing_over"],
        "message_statuses": dict(sorted(statuses.items())),
        "sales_handoffs": len(handoffs),
        "sales_handoffs_distinct": len(handoff_ids),
        # the initial hand-off and the reminder (no sales feedback in the proof), whether or not the
        # contact unsubscribed from email meanwhile (mql-handoff does not exit on an unsubscribe)
        "sales_handoffs_expected": 2 * len(plan.mql),
        "executions": dict(sorted(executions.items())),
        "executions_unexpected": unexpected,
    }


def ok(result: dict[str, Any]) -> bool:
    return (
        result["contacts_stored"] == result["contacts"]
        and result["wrong_score"] == 0
        and result["wrong_consent"] == 0
        and result["lost"] == 0
        and result["duplicate_sends"] == 0
        and not result["missing_sends"]
        and not result["never_sent_stuck_claim"]
        and not result["rejected_sent"]
        and result["rejected_not_alerted"] == 0
        and not result["rejected_not_reported"]
        and result["outcomes_not_recorded"] == 0
        and result["wrong_branch"] == 0
        and result["sales_handoffs_distinct"] == result["sales_handoffs_expected"]
        and result["replay_changed_scores"] == 0
        and result["client_gave_up"] == 0
        and not result["executions_unexpected"]
        and not any(result["dead_letter_queues_after"].values())
    )


def report(result: dict[str, Any]) -> None:
    print(f"faults: {result['contacts']} contacts, seed {result['seed']}")
    print(f"  injected {result['injected_total']}: {result['injected']}")
    print(f"  by function: {result['injected_by_function']}")
    print(
        f"  retries: client {result['client_retries']}, step functions task {result['sfn_task_retries']};"
        f" dead-lettered {result['pump_dead_lettered']}; failed executions {result['failed_executions_seen']};"
        f" redriven {result['redriven']}"
    )
    print(f"  duplicates prevented: {result['duplicates_prevented']}")
    print(
        f"  events accepted {result['events_accepted']} = stored {result['events_stored']} (lost {result['lost']});"
        f" pixel write failures {result['pixel_write_failures']} of {result['pixel_requests']}"
    )
    print(
        f"  emails sent {result['emails_sent']}, duplicate sends {result['duplicate_sends']},"
        f" missing {len(result['missing_sends'])}, never sent (claim stuck in 'sending')"
        f" {len(result['never_sent_stuck_claim'])} of {result['claims_left_sending']} claims left 'sending',"
        f" rejected by provider {result['rejected_by_provider']} (sent {len(result['rejected_sent'])},"
        f" not alerted {result['rejected_not_alerted']}, not reported {len(result['rejected_not_reported'])}),"
        f" outcome not recorded {result['outcomes_not_recorded']},"
        f" wrong branch {result['wrong_branch']}"
    )
    print(
        f"  contacts {result['contacts_stored']}, wrong score {result['wrong_score']}, wrong consent"
        f" {result['wrong_consent']}; replay of {result['replayed_records']} records changed"
        f" {result['replay_changed_scores']} scores"
    )
    print(
        f"  sales hand-offs {result['sales_handoffs_distinct']} distinct of {result['sales_handoffs_expected']}"
        f" ({result['sales_handoffs']} published); executions {result['executions']};"
        f" DLQs after {result['dead_letter_queues_after']}"
    )
    print(f"  {'OK' if result['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proof.faults")
    parser.add_argument("--contacts", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(contacts=args.contacts, seed=args.seed)
    print(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
