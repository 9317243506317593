"""Data-protection requests through the admin API: the consent log, the right of access (export)
and the right to erasure (delete everywhere, stop journeys, never mail the address again)."""

from __future__ import annotations

import json
from typing import Any

from leadflow.local.system import LocalSystem
from leadflow.platform.dynamo import deserialize

EMAIL = "Erika.Mustermann@example.org"
PHONE = "+4915123456789"
NAME = "Erika"
VISITOR = "v-erika-0000001"


def admin(system: LocalSystem, method: str, path: str, body: Any = None) -> dict[str, Any]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {system.admin_key}"}
    return system.invoke_http(
        method, path, headers=headers, body=json.dumps(body) if body is not None else None
    )


def everything(system: LocalSystem) -> list[dict[str, Any]]:
    """Every item of every table (a test may scan; the product never does)."""
    ddb = system.client("dynamodb")
    items = []
    for table in ddb.list_tables()["TableNames"]:
        pages = ddb.get_paginator("scan").paginate(TableName=table)
        items += [{"table": table, **deserialize(i)} for page in pages for i in page["Items"]]
    return items


def test_export_then_erase_a_contact_everywhere(log_lines: list[str]) -> None:
    with LocalSystem(background_pump=False) as system:
        # anonymous browsing, then a sign-up with phone and SMS consent from the same browser
        system.invoke_http("GET", "/t/p.gif", query=f"vid={VISITOR}&url=https%3A%2F%2Fexample.com%2Fpricing")
        reply = system.invoke_http(
            "POST",
            "/forms/newsletter",
            headers={"content-type": "application/json"},
            body=json.dumps(
                {
                    "email": EMAIL,
                    "first_name": NAME,
                    "consent": True,
                    "visitor_id": VISITOR,
                    "phone": PHONE,
                    "sms_consent": True,
                }
            ),
            source_ip="203.0.113.77",
        )
        assert reply["statusCode"] == 201, reply
        contact_id = json.loads(reply["body"])["contact_id"]
        system.settle()
        [welcome] = [m for m in system.outbox() if EMAIL.lower() in m["to"]]

        export = admin(system, "GET", f"/admin/contacts/{contact_id}/export")
        assert export["statusCode"] == 200, export
        document = json.loads(export["body"])
        assert document["profile"]["email"] == EMAIL.lower()
        assert document["profile"]["visitor_ids"] == [VISITOR]
        consent = {(c["channel"], c["action"]) for c in document["consent_log"]}
        assert consent == {("email", "granted"), ("sms", "granted")}
        [email_consent] = [c for c in document["consent_log"] if c["channel"] == "email"]
        assert email_consent["ip"] == "203.0.113.0"  # truncated, never the full address
        assert email_consent["text"].startswith("Yes, send me the Northwind Analytics newsletter")
        assert len(email_consent["text_version"]) == 12
        assert {e["type"] for e in document["events"]} >= {"form_submitted", "email_sent"}
        assert [e["type"] for e in document["anonymous_events"]] == ["page_viewed"]
        assert [m["message_id"] for m in document["messages"]] == [
            welcome["headers"]["X-Leadflow-Message-Id"]
        ]
        assert [j["journey_id"] for j in document["journeys"]] == ["welcome"]
        assert {i["pk"].split("#")[0] for i in document["indexes"]} == {"EMAIL", "PHONE", "V"}

        erased = admin(
            system, "POST", f"/admin/contacts/{contact_id}/erase", {"reason": "art. 17 request #4711"}
        )
        assert erased["statusCode"] == 200, erased
        result = json.loads(erased["body"])
        assert result["executions_stopped"] == 1
        assert result["suppressed"] is True
        assert result["deleted"]["profile"] == 1
        assert result["deleted"]["visitor_events"] == 1
        system.settle()

        logged = "\n".join(log_lines).lower()
        assert "contact erased" in logged
        for secret in (EMAIL.lower(), "erika", PHONE):
            assert secret not in logged
        # no personal data is left in any table: only the erasure record (an id) and a hash
        dump = json.dumps(everything(system), default=str).lower()
        for secret in (EMAIL.lower(), "erika", PHONE, VISITOR, "203.0.113"):
            assert secret not in dump, secret
        leftovers = [i for i in everything(system) if contact_id in json.dumps(i, default=str)]
        assert [(i["table"].rsplit("-", 1)[-1], i["pk"]) for i in leftovers] == [
            ("contacts", f"ERASURE#{contact_id}")
        ]
        [execution] = [e for e in system.executions() if contact_id in e["name"]]
        assert execution["status"] == "ABORTED"
        record = admin(system, "GET", f"/admin/erasures/{contact_id}")
        assert json.loads(record["body"])["reason"] == "art. 17 request #4711"
        assert admin(system, "GET", f"/admin/contacts/{contact_id}/export")["statusCode"] == 404

        # the address signs up again: a new contact, but it is never mailed
        again = system.invoke_http(
            "POST",
            "/forms/newsletter",
            headers={"content-type": "application/json"},
            body=json.dumps({"email": EMAIL, "first_name": NAME, "consent": True}),
        )
        assert again["statusCode"] == 201
        system.advance(3 * 86400)
        assert len([m for m in system.outbox() if EMAIL.lower() in m["to"]]) == 1  # only the first welcome
        new_id = json.loads(again["body"])["contact_id"]
        skipped = [
            i
            for i in everything(system)
            if i.get("type") == "email_skipped" and i.get("contact_id") == new_id
        ]
        # the welcome and the follow-up of the welcome journey: both skipped, with the reason
        assert [s["properties"]["reason"] for s in skipped] == ["suppressed_erased"] * 2


def test_privacy_routes_need_the_admin_credential() -> None:
    with LocalSystem(background_pump=False) as system:
        for method, path in (
            ("GET", "/admin/contacts/c1/export"),
            ("POST", "/admin/contacts/c1/erase"),
            ("GET", "/admin/erasures/c1"),
        ):
            reply = system.invoke_http(method, path, headers={"content-type": "application/json"}, body="{}")
            assert reply["statusCode"] == 403, path
        bad = admin(system, "POST", "/admin/contacts/c1/erase", {"reason": ""})
        assert bad["statusCode"] == 400
        missing = admin(system, "POST", "/admin/contacts/c-nobody/erase", {"reason": "request"})
        assert missing["statusCode"] == 404
