"""The admin API: authenticated reads for integrations and ops (IAM in AWS, a dev credential locally)."""

from __future__ import annotations

import json

import pytest

from leadflow.local.system import LocalSystem
from leadflow.platform.routes import ADMIN_ROUTES, PUBLIC_ROUTES
from tests.integration.conftest import sign_up


def admin(system: LocalSystem, method: str, path: str, body: object = None, key: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = {"content-type": "application/json", "authorization": f"Bearer {key or system.admin_key}"}
    return system.invoke_http(
        method, path, headers=headers, body=json.dumps(body) if body is not None else None
    )


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: r.key)
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer wrong", "Basic YWRtaW46YWRtaW4=", "bearer {key}"]
)
def test_admin_routes_reject_callers_without_the_credential(
    system: LocalSystem, route: object, authorization: str | None
) -> None:
    """Given no or a wrong credential, every admin route answers 403 and never reaches the function."""
    path = route.path.replace("{contact_id}", "c01anything")  # type: ignore[attr-defined]
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization.format(key=system.admin_key)
    reply = system.invoke_http(route.method, path, headers=headers, body='{"email": "a@example.com"}')  # type: ignore[attr-defined]
    assert reply["statusCode"] == 403
    assert json.loads(reply["body"]) == {"message": "Forbidden"}


def test_public_routes_cannot_read_contacts() -> None:
    """No public route is served by the admin function, and no public route is under /admin."""
    assert all(route.function == "track" and route.auth == "none" for route in PUBLIC_ROUTES)
    assert all(not route.path.startswith("/admin") for route in PUBLIC_ROUTES)
    assert all(route.auth == "iam" and route.function == "admin" for route in ADMIN_ROUTES)


def test_an_operator_finds_a_contact_by_email_and_reads_its_timeline(system: LocalSystem) -> None:
    """Given a sign-up, when ops look the address up (in the body, not the URL), then the profile and
    its events come back, newest first."""
    contact_id = sign_up(system, "Grace.Admin@Example.com", first_name="Grace", visitor_id="v-admin-00001")
    found = admin(system, "POST", "/admin/contacts/lookup", {"email": "  grace.admin@example.COM "})
    assert found["statusCode"] == 200, found
    assert json.loads(found["body"]) == {"contact_id": contact_id}

    view = admin(system, "GET", f"/admin/contacts/{contact_id}")
    assert view["statusCode"] == 200, view
    body = json.loads(view["body"])
    assert body["contact_id"] == contact_id
    assert body["profile"]["email"] == "grace.admin@example.com"
    assert body["profile"]["first_name"] == "Grace"
    assert body["profile"]["consent_email"] == "granted"
    assert [e["type"] for e in body["events"]][-1] == "form_submitted"
    assert body["events_truncated"] is False


def test_admin_errors_are_json_naming_the_problem(system: LocalSystem) -> None:
    missing = admin(system, "GET", "/admin/contacts/c0000000000000000000000000")
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"] == "contact not found"
    unknown = admin(system, "POST", "/admin/contacts/lookup", {"email": "nobody@example.com"})
    assert unknown["statusCode"] == 404
    bad = admin(system, "POST", "/admin/contacts/lookup", {"email": "not an address"})
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["fields"][0]["field"] == "email"
    extra = admin(system, "POST", "/admin/contacts/lookup", {"email": "a@example.com", "scan": "*"})
    assert extra["statusCode"] == 400
    assert json.loads(extra["body"])["fields"][0]["field"] == "scan"
