"""``leadflow ops smoke``: the post-deploy smoke test of a stage — what devops run right after
``cdk deploy`` (and, locally, against ``make run``).

Through the stage's public API, as a visitor and as SES would:

1. ``sign-ups``: newsletter form posts for SES's mailbox simulator addresses
   (``success+<run>@``, ``bounce+<run>@``, ``complaint+<run>@simulator.amazonses.com``: no real
   inbox is mailed, and the run label keeps runs apart);
2. ``iam``: an admin route called without credentials is refused (403), then ``lookup`` finds the
   contact through IAM (SigV4 with the caller's AWS credentials; locally the dev admin key);
3. ``contact``: the contact and its ``form_submitted`` event are stored;
4. ``journey``: the welcome journey's execution for the contact started;
5. ``email``: the welcome email was accepted by SES (``email_sent``) and SES's delivery
   notification came back through SNS to ``feedback`` (``email_delivered``);
6. ``bounce`` / ``complaint``: the simulator's bounce and complaint came back the same way and the
   addresses are suppressed;
7. ``erase``: every contact the run created is erased (the privacy erasure, which stops their
   executions) and is gone — always, whatever failed before.

Each step prints one line (``ok``/``FAIL``, seconds, detail); the run ends with one JSON line
(``ok``, the steps, the contacts created and erased). The domain logic lives here; the CLI wires
the target (``AwsTarget`` from the stack's outputs, or ``LocalTarget`` for ``make run``)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SIMULATOR_DOMAIN = "simulator.amazonses.com"
FORM = "newsletter"
JOURNEY = "welcome"
DEFAULT_TIMEOUT = 180.0
"""Seconds each awaited outcome may take (SES notifications usually arrive within a minute)."""


class SmokeFailure(Exception):
    """A step's expectation did not hold (the message says what was seen)."""


class Target(Protocol):
    """Where the smoke test runs: the stage's API, its admin routes and its journey executions."""

    name: str

    def call(
        self, method: str, path: str, body: Any | None = None, *, admin: bool = False, signed: bool = True
    ) -> tuple[int, Any]:
        """(HTTP status, JSON body or None); ``admin`` routes are signed unless ``signed=False``."""
        ...

    def executions(self, journey_id: str) -> list[dict[str, Any]]:
        """The journey's executions: ``name`` and ``status`` each."""
        ...


class HttpApi:
    """JSON over HTTP(S) to the stage's API base URL."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"the API URL must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _headers(
        self, method: str, url: str, data: bytes | None, admin: bool, signed: bool
    ) -> dict[str, str]:
        return {"Content-Type": "application/json"} if data is not None else {}

    def call(
        self, method: str, path: str, body: Any | None = None, *, admin: bool = False, signed: bool = True
    ) -> tuple[int, Any]:
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers(method, url, data, admin, signed)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (checked)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None


class LocalTarget(HttpApi):
    """``make run``: admin routes with the local dev credential, executions from ``/_local/executions``."""

    name = "local"

    def __init__(self, base_url: str, admin_key: str) -> None:
        super().__init__(base_url)
        self.admin_key = admin_key

    def _headers(
        self, method: str, url: str, data: bytes | None, admin: bool, signed: bool
    ) -> dict[str, str]:
        headers = super()._headers(method, url, data, admin, signed)
        if admin and signed:
            headers["Authorization"] = f"Bearer {self.admin_key}"
        return headers

    def executions(self, journey_id: str) -> list[dict[str, Any]]:
        status, found = self.call("GET", "/_local/executions")
        if status != 200 or not isinstance(found, list):
            raise SmokeFailure(f"GET /_local/executions answered {status}")
        return [e for e in found if e.get("journey") == journey_id]


class AwsTarget(HttpApi):
    """A deployed stage: admin routes signed with SigV4 (IAM, the caller's credentials), the
    journeys' executions through Step Functions."""

    def __init__(self, stage: str, base_url: str, state_machines: dict[str, str], session: Any) -> None:
        super().__init__(base_url)
        self.name = stage
        self.state_machines = state_machines
        self.session = session
        self.region = session.region_name

    @classmethod
    def from_stack(cls, stage: str, session: Any, base_url: str | None = None) -> AwsTarget:
        """From the outputs of stack ``leadflow-<stage>``: ``ApiUrl`` and the ``Journey…Arn``s."""
        [stack] = session.client("cloudformation").describe_stacks(StackName=f"leadflow-{stage}")["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        machines = {
            arn.rsplit(":", 1)[1].removeprefix(f"leadflow-{stage}-"): arn
            for key, arn in outputs.items()
            if key.startswith("Journey") and key.endswith("Arn")
        }
        url = base_url or outputs.get("ApiUrl")
        if not url:
            raise LookupError(f"stack leadflow-{stage} has no ApiUrl output")
        return cls(stage, url, machines, session)

    def _headers(
        self, method: str, url: str, data: bytes | None, admin: bool, signed: bool
    ) -> dict[str, str]:
        headers = super()._headers(method, url, data, admin, signed)
        if not (admin and signed):
            return headers
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self.session.get_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers)

    def executions(self, journey_id: str) -> list[dict[str, Any]]:
        arn = self.state_machines.get(journey_id)
        if arn is None:
            raise SmokeFailure(f"the stack has no state machine for journey {journey_id!r}")
        pages = self.session.client("stepfunctions").get_paginator("list_executions")
        return [
            {"name": e["name"], "status": e["status"]}
            for page in pages.paginate(stateMachineArn=arn, PaginationConfig={"MaxItems": 1000})
            for e in page["executions"]
        ]


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class SmokeRun:
    target: Target
    label: str
    timeout: float = DEFAULT_TIMEOUT
    poll: float = 2.0
    out: Callable[[str], None] = print
    steps: list[Step] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)
    """Simulator kind (success, bounce, complaint) → contact id, as created."""
    erased: list[str] = field(default_factory=list)

    def address(self, kind: str) -> str:
        return f"{kind}+{self.label}@{SIMULATOR_DOMAIN}"

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Time a step and record it; the body appends its detail and raises ``SmokeFailure``."""
        detail: list[str] = []
        started = time.monotonic()
        try:
            yield detail
        except Exception as exc:
            kind = "" if isinstance(exc, SmokeFailure) else f"{type(exc).__name__}: "
            self._record(name, False, started, f"{kind}{exc}")
            raise SmokeFailure(f"{name}: {exc}") from exc
        self._record(name, True, started, "; ".join(detail))

    def _record(self, name: str, ok: bool, started: float, detail: str) -> None:
        step = Step(name, ok, round(time.monotonic() - started, 1), detail)
        self.steps.append(step)
        self.out(f"{'ok  ' if ok else 'FAIL'} {name:<10} {step.seconds:6.1f}s  {detail}")

    def wait_for(self, what: str, check: Callable[[], Any]) -> Any:
        """Poll ``check`` until it returns something truthy, at most ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() >= deadline:
                raise SmokeFailure(f"no {what} within {self.timeout:.0f} s")
            time.sleep(self.poll)

    # --- reads through the admin API ----------------------------------------------------------------

    def view(self, contact_id: str) -> dict[str, Any] | None:
        status, body = self.target.call("GET", f"/admin/contacts/{contact_id}", admin=True)
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise SmokeFailure(f"GET /admin/contacts/{{id}} answered {status}: {body}")
        return body

    def event(self, contact_id: str, kind: str) -> dict[str, Any] | None:
        view = self.view(contact_id) or {}
        return next((e for e in view.get("events", []) if e.get("type") == kind), None)

    # --- the steps ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        try:
            self._sign_ups()
            self._iam()
            self._contact()
            self._journey()
            self._email()
            self._suppressed("bounce", "email_bounced")
            self._suppressed("complaint", "email_complained")
        except SmokeFailure:
            pass  # recorded; the erasure still runs
        finally:
            self._erase()
        ok = bool(self.steps) and all(s.ok for s in self.steps)
        return {
            "target": self.target.name,
            "ok": ok,
            "label": self.label,
            "steps": [asdict(s) for s in self.steps],
            "contacts_created": len(self.contacts),
            "contacts_erased": len(self.erased),
        }

    def _sign_ups(self) -> None:
        with self.step("sign-ups") as detail:
            for kind in ("success", "bounce", "complaint"):
                body = {"email": self.address(kind), "first_name": "Smoke", "consent": True}
                status, answer = self.target.call("POST", f"/forms/{FORM}", body)
                if status == 429:
                    raise SmokeFailure(
                        f"POST /forms/{FORM} answered 429: this network spent the form's sign-up budget "
                        "(per_source_per_hour; each run signs up 3 addresses): run again later or from elsewhere"
                    )
                if status != 201 or not isinstance(answer, dict) or not answer.get("contact_id"):
                    raise SmokeFailure(f"POST /forms/{FORM} for {kind}@ answered {status}: {answer}")
                self.contacts[kind] = str(answer["contact_id"])
            detail.append(f"3 form posts ({', '.join(self.contacts)}@{SIMULATOR_DOMAIN}, label {self.label})")

    def _iam(self) -> None:
        contact_id = self.contacts["success"]
        with self.step("iam") as detail:
            status, _ = self.target.call("GET", f"/admin/contacts/{contact_id}", admin=True, signed=False)
            if status != 403:
                raise SmokeFailure(f"an unsigned admin call answered {status}, not 403")
            status, found = self.target.call(
                "POST", "/admin/contacts/lookup", {"email": self.address("success")}, admin=True
            )
            if status != 200 or not isinstance(found, dict) or found.get("contact_id") != contact_id:
                raise SmokeFailure(f"POST /admin/contacts/lookup answered {status}: {found}")
            detail.append("unsigned admin call refused (403); signed lookup found the contact")

    def _contact(self) -> None:
        contact_id = self.contacts["success"]
        with self.step("contact") as detail:
            found = self.wait_for("form_submitted event", lambda: self.event(contact_id, "form_submitted"))
            detail.append(f"profile and form_submitted ({found.get('occurred_at')}) stored")

    def _journey(self) -> None:
        contact_id = self.contacts["success"]
        with self.step("journey") as detail:

            def started() -> dict[str, Any] | None:
                return next(
                    (e for e in self.target.executions(JOURNEY) if contact_id in str(e.get("name"))), None
                )

            execution = self.wait_for(f"{JOURNEY} execution", started)
            if execution["status"] not in ("RUNNING", "SUCCEEDED"):
                raise SmokeFailure(f"the {JOURNEY} execution is {execution['status']}")
            detail.append(f"{JOURNEY} execution {execution['status']}")

    def _email(self) -> None:
        contact_id = self.contacts["success"]
        with self.step("email") as detail:
            sent = self.wait_for(
                "email_sent (SES accepted the welcome email)", lambda: self.event(contact_id, "email_sent")
            )
            self.wait_for(
                "email_delivered (SES delivery notification through SNS to feedback)",
                lambda: self.event(contact_id, "email_delivered"),
            )
            detail.append(f"welcome email accepted by SES ({sent.get('message_id')}) and delivered")

    def _suppressed(self, kind: str, event_type: str) -> None:
        contact_id = self.contacts[kind]
        with self.step(kind) as detail:

            def suppressed() -> str | None:
                view = self.view(contact_id) or {}
                reason = (view.get("profile") or {}).get("suppressed")
                events = {e.get("type") for e in view.get("events", [])}
                return str(reason) if reason and event_type in events else None

            reason = self.wait_for(f"{event_type} and suppression", suppressed)
            detail.append(f"{event_type} through SNS to feedback; address suppressed ({reason})")

    def _erase(self) -> None:
        if not self.contacts:
            return
        try:
            with self.step("erase") as detail:
                failures = []
                for kind, contact_id in self.contacts.items():
                    status, answer = self.target.call(
                        "POST",
                        f"/admin/contacts/{contact_id}/erase",
                        {"reason": f"leadflow ops smoke {self.label}"},
                        admin=True,
                    )
                    if status != 200:
                        failures.append(f"{kind}: erase answered {status}: {answer}")
                        continue
                    if self.view(contact_id) is not None:
                        failures.append(f"{kind}: still readable after the erasure")
                        continue
                    self.erased.append(contact_id)
                if failures:
                    raise SmokeFailure("; ".join(failures))
                detail.append(f"{len(self.erased)} contacts erased")
        except SmokeFailure:
            pass  # recorded


def new_label() -> str:
    """A run label for the simulator addresses: unique, short, lower-case."""
    return f"smoke-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def smoke(
    target: Target,
    *,
    label: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = 2.0,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every step against ``target``; prints a line per step and returns the summary (the CLI
    prints it as the final JSON line and exits 1 unless ``ok``)."""
    run = SmokeRun(target=target, label=label or new_label(), timeout=timeout, poll=poll, out=out)
    out(f"leadflow smoke test of {target.name} ({run.label})")
    return run.run()
