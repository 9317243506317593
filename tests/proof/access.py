"""Access: every admin route refuses callers without valid credentials (locally the stand-in for
IAM answers 403 as API Gateway does; in the synthesized template every admin route has
``AuthorizationType: AWS_IAM`` and every public route none), and a visitor holding contact A's
links can never read or change contact B, nor use a token of one kind as another.

``python -m tests.proof.access [--template cdk.out/leadflow-dev.template.json]``"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from leadflow.local.system import LocalSystem
from leadflow.platform.routes import ADMIN_ROUTES, PUBLIC_ROUTES, Route
from leadflow.platform.tokens import _b64, _unb64
from tests.proof.faults import quiet
from tests.proof.hostile import real_links, token_of

ROOT = Path(__file__).resolve().parents[2]


def template_routes(template: Path | None = None) -> tuple[dict[str, str], str]:
    """RouteKey -> AuthorizationType of the synthesized stack (a template file, or synthesized now)."""
    source = template  # a template of ``make synth`` may be stale: by default synthesize now
    if source is not None:
        data = json.loads(source.read_text())
        origin = str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source)
    else:
        sys.path[:0] = [str(ROOT / "infra")]
        import app as cdk_app
        from aws_cdk import App

        from tests.infra.conftest import cdk_context

        application = App(context=cdk_context())
        stack = cdk_app.build(application)
        assembly = application.synth()
        data = assembly.get_stack_by_name(stack.stack_name).template
        origin = f"synthesized {stack.stack_name}"
    routes = {
        str(r["Properties"]["RouteKey"]): str(r["Properties"].get("AuthorizationType", "NONE"))
        for r in data["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    return routes, origin


def concrete(route: Route, contact_id: str) -> str:
    return (
        route.path.replace("{contact_id}", contact_id)
        .replace("{journey_id}", "win-back")
        .replace("{token}", "x")
        .replace("{form_id}", "newsletter")
    )


def admin_body(route: Route, email: str, contact_id: str) -> str:
    if route.path.endswith("lookup"):
        return json.dumps({"email": email})
    if route.path.endswith("do-not-contact"):
        return json.dumps({"reason": "proof"})
    if route.path.endswith("enrollments"):
        return json.dumps({"contact_id": contact_id})
    if route.path == "/admin/events":  # a forged purchase for the contact
        return json.dumps({"type": "purchase", "email": email, "properties": {"revenue": 100000}})
    return ""


def run(template: Path | None = None, verbose: bool = True) -> dict[str, Any]:
    quiet()
    result: dict[str, Any] = {}
    routes, origin = template_routes(template)
    result["template"] = origin
    result["template_admin_not_iam"] = [r.key for r in ADMIN_ROUTES if routes.get(r.key) != "AWS_IAM"]
    result["template_public_with_auth"] = [
        r.key for r in PUBLIC_ROUTES if routes.get(r.key, "missing") not in ("NONE",)
    ]
    result["template_routes_checked"] = len(ADMIN_ROUTES) + len(PUBLIC_ROUTES)

    with LocalSystem(background_pump=False) as system:
        people = {}
        for who, name in (("a", "Alice"), ("b", "Beatrice")):
            reply = system.invoke_http(
                "POST",
                "/forms/newsletter",
                headers={"content-type": "application/json"},
                body=json.dumps({"email": f"{who}-secret@example.com", "first_name": name, "consent": True}),
            )
            people[who] = {
                "email": f"{who}-secret@example.com",
                "name": name,
                "id": json.loads(reply["body"])["contact_id"],
            }
        system.settle()
        a, b = people["a"], people["b"]

        def profile(contact_id: str) -> dict[str, Any]:
            return next(c for c in system.contacts() if c["contact_id"] == contact_id)

        # --- admin routes: no, wrong and misplaced credentials ---------------------------------
        key = system.admin_key
        bad_credentials: list[dict[str, str]] = [
            {},
            {"authorization": ""},
            {"authorization": "Bearer"},
            {"authorization": "Bearer "},
            {"authorization": f"Bearer {key[:-1]}"},
            {"authorization": f"Bearer {key}x"},
            {"authorization": f"bearer {key}"},
            {"authorization": key},
            {"authorization": f"Basic {_b64(f'admin:{key}'.encode())}"},
            {
                "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/execute-api/"
                "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
            },
            {"x-api-key": key},
            {"cookie": f"authorization=Bearer {key}"},
        ]
        admin_attempts = admin_refused = 0
        admin_leaks: list[str] = []
        for route in ADMIN_ROUTES:
            path = concrete(route, b["id"])
            for headers in bad_credentials:
                for query in ("", f"authorization=Bearer%20{key}"):
                    admin_attempts += 1
                    reply = system.invoke_http(
                        route.method,
                        path,
                        query=query,
                        headers={"content-type": "application/json", **headers},
                        body=admin_body(route, b["email"], b["id"]),
                    )
                    if reply["statusCode"] == 403:
                        admin_refused += 1
                    if any(s in str(reply.get("body")) for s in (b["email"], b["name"])):
                        admin_leaks.append(f"{route.key} {headers}")
        # the right credential works (so the 403s above are about the credential, not the route)
        view = system.invoke_http(
            "GET", f"/admin/contacts/{b['id']}", headers={"authorization": f"Bearer {key}"}
        )
        result["admin_with_key_status"] = view["statusCode"]
        assert b["email"] in view["body"]
        b_before = profile(b["id"])

        def events_of(contact_id: str) -> Counter[str]:
            return Counter(
                str(e["type"]) for e in system._scan("events") if e.get("contact_id") == contact_id
            )

        b_events_before = events_of(b["id"])

        # --- A's links never reveal or change B ------------------------------------------------
        links = real_links(system)
        by_contact: dict[str, dict[str, str]] = {}
        for kind, paths in links.items():
            for path in paths:
                claims = json.loads(_unb64(token_of(path).split(".")[0]))
                by_contact.setdefault(claims["c"], {}).setdefault(kind, path)
        mine = by_contact[a["id"]]
        pii_b = (b["email"], b["name"], b["id"])
        responses: list[tuple[str, dict[str, Any]]] = []
        kinds = {
            "open": [("GET", "/t/o/{}.gif")],
            "click": [("GET", "/t/c/{}")],
            "unsubscribe": [("GET", "/unsubscribe/{}"), ("POST", "/unsubscribe/{}")],
            "confirm": [("GET", "/confirm/{}")],
        }
        cross_kind_accepted: list[str] = []
        for kind, path in mine.items():
            token = token_of(path)
            for other, calls in kinds.items():
                for method, template_path in calls:
                    if other == kind:
                        continue
                    reply = system.invoke_http(
                        method, template_path.format(token), body="List-Unsubscribe=One-Click"
                    )
                    responses.append((f"{kind} token on {method} {other}", reply))
                    pixel = template_path.startswith("/t/o/")
                    if (pixel and reply["statusCode"] != 200) or (not pixel and reply["statusCode"] != 400):
                        cross_kind_accepted.append(f"{kind} token on {method} {other}: {reply['statusCode']}")
        # forged: A's token with B's contact id (A's signature) on every route
        forged_accepted: list[str] = []
        for kind, path in mine.items():
            body, mac = token_of(path).split(".")
            claims = json.loads(_unb64(body))
            forged = _b64(
                json.dumps({**claims, "c": b["id"]}, separators=(",", ":"), sort_keys=True).encode()
            )
            for method, template_path in kinds[kind]:
                reply = system.invoke_http(
                    method, template_path.format(f"{forged}.{mac}"), body="List-Unsubscribe=One-Click"
                )
                responses.append((f"forged {kind} token for B", reply))
                if reply["statusCode"] not in (200, 400) or (reply["statusCode"] == 200 and kind != "open"):
                    forged_accepted.append(f"{kind}: {reply['statusCode']}")
        # A's own links, used as intended: only A changes
        for kind, path in mine.items():
            for method, template_path in kinds[kind]:
                reply = system.invoke_http(
                    method, template_path.format(token_of(path)), body="List-Unsubscribe=One-Click"
                )
                responses.append((f"A's own {kind} link", reply))
        system.settle()
        b_after = profile(b["id"])
        a_after = profile(a["id"])
        foreign_types = events_of(b["id"]) - b_events_before
        unauthorized_reads = [
            label
            for label, reply in responses
            if any(s in str(reply.get("body")) + str(reply.get("headers")) for s in pii_b)
        ]
        pii_in_pages = [
            label
            for label, reply in responses
            if any(s in str(reply.get("body")) for s in (a["email"], b["email"]))
        ]
        result.update(
            {
                "admin_attempts": admin_attempts,
                "admin_refused_403": admin_refused,
                "admin_leaks": admin_leaks,
                "public_requests_with_a_tokens": len(responses),
                "cross_kind_accepted": cross_kind_accepted,
                "forged_accepted": forged_accepted,
                "unauthorized_reads": len(unauthorized_reads) + len(admin_leaks),
                "unauthorized_read_examples": unauthorized_reads[:5],
                "pii_in_pages": len(pii_in_pages),
                "b_changed": {k for k in set(b_before) | set(b_after) if b_before.get(k) != b_after.get(k)}
                - {"score", "score_updated_at", "updated_at"},
                "b_unexpected_events": dict(foreign_types),
                "a_unsubscribed": a_after.get("consent_email") == "revoked",
            }
        )
        result["b_changed"] = sorted(result["b_changed"])
    result["ok"] = (
        not result["template_admin_not_iam"]
        and not result["template_public_with_auth"]
        and result["admin_refused_403"] == result["admin_attempts"]
        and result["admin_with_key_status"] == 200
        and result["unauthorized_reads"] == 0
        and result["pii_in_pages"] == 0
        and not result["cross_kind_accepted"]
        and not result["forged_accepted"]
        and not result["b_changed"]
        and not result["b_unexpected_events"]
        and result["a_unsubscribed"]
    )
    if verbose:
        report(result)
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"access: template ({r['template']}): {len(ADMIN_ROUTES)} admin routes AWS_IAM, not IAM:"
        f" {r['template_admin_not_iam']}; public routes with auth: {r['template_public_with_auth']}"
    )
    print(
        f"  admin calls without valid credentials: {r['admin_refused_403']} of {r['admin_attempts']} refused with 403"
    )
    print(
        f"  {r['public_requests_with_a_tokens']} public requests with contact A's (real, cross-kind, forged) tokens:"
        f" unauthorized reads {r['unauthorized_reads']}, PII in pages {r['pii_in_pages']},"
        f" cross-kind accepted {len(r['cross_kind_accepted'])}, forged accepted {len(r['forged_accepted'])},"
        f" B changed {r['b_changed']}, B unexpected events {r['b_unexpected_events']}"
    )
    print(f"  {'OK' if r['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proof.access")
    parser.add_argument("--template", type=Path)
    args = parser.parse_args(argv)
    result = run(template=args.template)
    print(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
