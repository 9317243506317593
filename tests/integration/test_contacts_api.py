"""The contacts API: upsert by email, validation, list/search, tags, timeline, bulk import."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from leadflow.local.system import LocalSystem
from tests.integration.conftest import events_of, sign_up


def admin(
    system: LocalSystem,
    method: str,
    path: str,
    body: object = None,
    *,
    query: str = "",
    raw: str | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    headers = {"content-type": content_type, "authorization": f"Bearer {system.admin_key}"}
    payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return system.invoke_http(method, path, query=query, headers=headers, body=payload)


def body(reply: dict[str, Any]) -> Any:
    return json.loads(reply["body"])


def profiles_where(system: LocalSystem, condition: str, value: str) -> list[dict[str, Any]]:
    """The profiles meeting ``condition`` on ``:v`` (a filtered scan: cheap on moto however many
    contacts exist)."""
    from leadflow.platform.dynamo import deserialize

    pages = (
        system.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName="leadflow-local-contacts",
            FilterExpression=f"sk = :p AND {condition}",
            ExpressionAttributeValues={":p": {"S": "PROFILE"}, ":v": {"S": value}},
        )
    )
    return [deserialize(i) for page in pages for i in page["Items"]]


def profiles_with_email(system: LocalSystem, email: str) -> list[dict[str, Any]]:
    return profiles_where(system, "email = :v", email)


def stored_emails(system: LocalSystem, suffix: str) -> set[str]:
    return {profile["email"] for profile in profiles_where(system, "contains(email, :v)", suffix)}


def test_upsert_by_email_creates_once_and_updates_only_changed_fields(system: LocalSystem) -> None:
    """Given the same address typed three ways, then there is one contact; an update writes only
    the changed fields and records contact_updated naming them; a replay writes nothing."""
    created = admin(
        system,
        "POST",
        "/admin/contacts",
        {
            "email": "  Mia.Upsert@Example.COM ",
            "first_name": "  Mia ",
            "country": "de",
            "gender": "W",
            "phone": "+49 30 1234 5678",
            "tags": ["VIP", "webinar"],
            "consent_email": "granted",
            "consent_source": "trade fair 2026, badge scan",
            "attributes": {"company_size": "250", "role": "decision_maker"},
        },
    )
    assert created["statusCode"] == 201, created
    contact_id = body(created)["contact_id"]
    assert body(created)["created"] is True

    again = admin(
        system, "POST", "/admin/contacts", {"email": "mia.upsert@example.com", "job_title": "Head of IT"}
    )
    assert again["statusCode"] == 200, again
    assert body(again) == {"contact_id": contact_id, "created": False, "changed": ["job_title"]}
    replay = admin(
        system, "POST", "/admin/contacts", {"email": "MIA.UPSERT@example.com ", "job_title": "Head of IT"}
    )
    assert body(replay) == {"contact_id": contact_id, "created": False, "changed": []}

    found = profiles_with_email(system, "mia.upsert@example.com")
    assert len(found) == 1
    stored = found[0]
    assert stored["first_name"] == "Mia"
    assert stored["country"] == "DE"
    assert stored["gender"] == "female"
    assert stored["phone"] == "+493012345678"
    assert sorted(stored["tags"]) == ["vip", "webinar"]
    assert stored["company_size"] == 250
    assert stored["role"] == "decision_maker"
    assert stored["consent_email"] == "granted"
    assert stored["consent_source"] == "trade fair 2026, badge scan"
    types = sorted(e["type"] for e in events_of(system, contact_id))
    assert types == ["contact_created", "contact_updated"]
    updated = next(e for e in events_of(system, contact_id) if e["type"] == "contact_updated")
    assert updated["properties"] == {"fields": ["job_title"], "source": "admin"}


def test_an_invalid_contact_is_refused_naming_the_field_and_nothing_is_stored(system: LocalSystem) -> None:
    cases = [
        ({"email": "bad.country@example.com", "country": "XX"}, "country"),
        (
            {"email": "bad.attr@example.com", "attributes": {"company_size": "many"}},
            "attributes.company_size",
        ),
        ({"email": "bad.attr2@example.com", "attributes": {"shoe_size": 42}}, "attributes.shoe_size"),
        ({"email": "no.source@example.com", "consent_email": "granted"}, "consent_source"),
        ({"email": "bad.phone@example.com", "phone": "12"}, "phone"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "bad.extra@example.com", "password": "x"}, "password"),
    ]
    for payload, field in cases:
        reply = admin(system, "POST", "/admin/contacts", payload)
        assert reply["statusCode"] == 400, (payload, reply)
        assert field in [f["field"] for f in body(reply)["fields"]], (payload, reply)
        assert profiles_with_email(system, str(payload["email"])) == []


def test_list_search_and_pagination(system: LocalSystem) -> None:
    for i in range(7):
        reply = admin(
            system,
            "POST",
            "/admin/contacts",
            {
                "email": f"pager{i}@search.example",
                "first_name": "Zoë" if i % 2 else "Paul",
                "last_name": f"Searchable{i}",
                "country": "AT" if i < 3 else "CH",
                "tags": ["pager"],
            },
        )
        assert reply["statusCode"] == 201
    everyone = admin(system, "GET", "/admin/contacts", query="q=SEARCHABLE&limit=500")
    assert everyone["statusCode"] == 200, everyone
    assert len(body(everyone)["contacts"]) == 7
    pages: list[str] = []
    cursor = None
    while True:
        query = "tag=pager&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = body(admin(system, "GET", "/admin/contacts", query=query))
        pages += [c["email"] for c in page["contacts"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert sorted(pages) == sorted(f"pager{i}@search.example" for i in range(7))
    austrians = body(admin(system, "GET", "/admin/contacts", query="country=at&tag=pager&limit=50"))
    assert sorted(c["email"] for c in austrians["contacts"]) == [f"pager{i}@search.example" for i in range(3)]
    zoe = body(admin(system, "GET", "/admin/contacts", query="q=zo%C3%AB%20searchable&limit=50"))
    assert len(zoe["contacts"]) == 3
    bad = admin(system, "GET", "/admin/contacts", query="cursor=nonsense")
    assert bad["statusCode"] == 400


def test_tags_add_and_remove(system: LocalSystem) -> None:
    contact_id = body(admin(system, "POST", "/admin/contacts", {"email": "tags@example.com", "tags": ["a"]}))[
        "contact_id"
    ]
    reply = admin(system, "POST", f"/admin/contacts/{contact_id}/tags", {"add": ["B", "c"], "remove": ["a"]})
    assert reply["statusCode"] == 200, reply
    assert body(reply) == {"contact_id": contact_id, "tags": ["b", "c"], "changed": True}
    same = admin(system, "POST", f"/admin/contacts/{contact_id}/tags", {"add": ["b"]})
    assert body(same)["changed"] is False
    bad = admin(system, "POST", f"/admin/contacts/{contact_id}/tags", {"add": ["no spaces"]})
    assert bad["statusCode"] == 400
    assert body(bad)["fields"][0]["field"] == "add"
    missing = admin(system, "POST", "/admin/contacts/c000000000000000000000000x/tags", {"add": ["x"]})
    assert missing["statusCode"] == 404
    updates = [e for e in events_of(system, contact_id) if e["type"] == "contact_updated"]
    assert updates[0]["properties"]["fields"] == ["tags"]


def test_timeline_shows_the_profile_score_and_events(system: LocalSystem) -> None:
    contact_id = sign_up(system, "timeline@example.com", visitor_id="v-timeline-0001")
    for i in range(4):
        system.invoke_http(
            "POST",
            "/admin/events",
            headers={"content-type": "application/json", "authorization": f"Bearer {system.admin_key}"},
            body=json.dumps(
                {"type": "webinar_attended", "email": "timeline@example.com", "properties": {"n": i}}
            ),
        )
    first = admin(system, "GET", f"/admin/contacts/{contact_id}/timeline", query="limit=3")
    assert first["statusCode"] == 200, first
    page = body(first)
    assert page["contact_id"] == contact_id
    assert page["profile"]["email"] == "timeline@example.com"
    assert isinstance(page["score"], int)
    assert len(page["events"]) == 3
    assert page["cursor"]
    rest = body(
        admin(
            system, "GET", f"/admin/contacts/{contact_id}/timeline", query=f"limit=50&cursor={page['cursor']}"
        )
    )
    everything = page["events"] + rest["events"]
    assert rest["cursor"] is None
    occurred = [e["occurred_at"] for e in everything]
    assert occurred == sorted(occurred, reverse=True)
    assert {"form_submitted", "webinar_attended", "contact_identified"} <= {e["type"] for e in everything}
    view = body(admin(system, "GET", f"/admin/contacts/{contact_id}"))
    assert view["score"] == page["score"]


def test_attribute_schema(system: LocalSystem) -> None:
    reply = admin(system, "GET", "/admin/attributes")
    assert reply["statusCode"] == 200
    schema = body(reply)
    assert schema["built_in"]["country"]["type"] == "country"
    assert schema["custom"]["company_size"]["type"] == "integer"


# --- bulk import ------------------------------------------------------------------------------------

BAD_KINDS = [
    ("email", "not-an-email"),
    ("country", "ZZ"),
    ("attributes.company_size", "-5"),
    ("attributes.role", "astronaut"),
    ("phone", "12ab"),
    ("gender", "robot"),
    ("timezone", "Mars/Olympus"),
    ("consent_source", ""),  # consent granted without a source
    ("attributes.budget", "lots"),
    ("tags", "bad tag!"),
]


def _import_file(rows: int, bad_every: int) -> tuple[str, dict[int, str]]:
    header = "email,first_name,last_name,country,phone,gender,timezone,consent_email,consent_source,tags,company_size,attributes.role,budget"
    lines = [header]
    bad: dict[int, str] = {}
    for n in range(1, rows + 1):
        cells = {
            "email": f"Import.{n}@Bulk.Example",
            "first_name": f" Person{n} ",
            "last_name": "Imported",
            "country": "de" if n % 2 else "US",
            "phone": f"+4930{n:07d}",
            "gender": "f" if n % 3 else "m",
            "timezone": "Europe/Berlin",
            "consent_email": "granted",
            "consent_source": "crm export 2026-03",
            "tags": "imported|batch1",
            "company_size": str(10 + n % 500),
            "role": "user",
            "budget": "1000.50",
        }
        if n % bad_every == 0:
            field, value = BAD_KINDS[(n // bad_every) % len(BAD_KINDS)]
            key = field.removeprefix("attributes.")
            cells[key] = value
            bad[n] = field
        lines.append(",".join(cells.values()))
    return "\n".join(lines) + "\n", bad


def test_the_cli_imports_in_chunks_and_reports_rows_of_the_file(
    system: LocalSystem, tmp_path: Any, monkeypatch: Any, capsys: Any
) -> None:
    from leadflow.ops import cli

    text, bad = _import_file(95, 20)
    text = text.replace("@Bulk.Example", "@cli.example")
    path = tmp_path / "contacts.csv"
    path.write_text(text.replace("\n", "\n\n", 3), encoding="utf-8")  # blank lines are not rows
    sent: list[int] = []

    def post(url: str, payload: str, content_type: str, key: str | None, region: str | None) -> Any:
        assert url.endswith("/admin/contacts/import")
        assert key == system.admin_key
        sent.append(payload.count("\n") - 1)
        reply = admin(system, "POST", "/admin/contacts/import", raw=payload, content_type=content_type)
        assert reply["statusCode"] == 200, reply
        return body(reply)

    monkeypatch.setattr(cli, "_post", post)
    status = cli.main(["contacts", "import", str(path), "--key", system.admin_key, "--chunk-rows", "40"])
    out, err = capsys.readouterr()
    assert status == 1
    assert sent == [40, 40, 15]
    assert "rows 80/" not in err
    assert "rows 95" in err
    assert "rows/s" in err
    reported = [line.split(":")[0] for line in out.splitlines() if line.startswith("row ")]
    assert reported == [f"row {n}" for n in sorted(bad)]
    assert json.loads(out.splitlines()[-1])["created"] == 95 - len(bad)


def test_the_cli_says_plainly_when_no_api_answers_at_the_url(tmp_path: Any) -> None:
    """``make run`` on another PORT, or a typo in ``--url``: one line naming the URL, no traceback."""
    from leadflow.ops import cli

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "contacts.csv"
    path.write_text("email\nada@example.com\n", encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(SystemExit) as stopped:
        cli.main(["contacts", "import", str(path), "--key", "k", "--url", url])
    assert str(stopped.value).startswith(f"error: cannot reach the API at {url}/admin/contacts/import")


def test_import_jsonl_applies_rows_in_order_and_validates(system: LocalSystem) -> None:
    lines = [
        {"email": "order@jsonl.example", "first_name": "First", "tags": ["one"]},
        {"email": "other@jsonl.example", "attributes": {"plan": "PRO"}},
        "not json",
        {"email": " ORDER@jsonl.example", "first_name": "Second", "tags": ["two"]},
        {"email": "x@jsonl.example", "attributes": {"unknown_attr": 1}},
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    reply = admin(system, "POST", "/admin/contacts/import", raw=text, content_type="application/x-ndjson")
    assert reply["statusCode"] == 200, reply
    report = body(reply)
    assert report["created"] == 2
    assert report["updated"] == 1
    assert report["failed"] == 2
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "row"), (5, "attributes.unknown_attr")]
    order = profiles_with_email(system, "order@jsonl.example")
    assert len(order) == 1
    assert order[0]["first_name"] == "Second"
    assert sorted(order[0]["tags"]) == ["one", "two"]
    assert profiles_with_email(system, "other@jsonl.example")[0]["plan"] == "pro"


def test_import_refuses_unknown_columns_and_content_types(system: LocalSystem) -> None:
    reply = admin(
        system,
        "POST",
        "/admin/contacts/import",
        raw="email,shoe_size\na@b.example,42\n",
        content_type="text/csv",
    )
    assert reply["statusCode"] == 400
    assert body(reply)["fields"][0]["field"] == "columns.shoe_size"
    assert profiles_with_email(system, "a@b.example") == []
    wrong = admin(system, "POST", "/admin/contacts/import", raw="{}", content_type="application/xml")
    assert wrong["statusCode"] == 400
    assert body(wrong)["fields"][0]["field"] == "content-type"


def test_import_of_10000_rows_reports_exactly_the_bad_rows(system: LocalSystem) -> None:
    """A 10,000-row CSV with 37 bad rows of ten kinds: the report names exactly those rows (and
    their fields); exactly the good rows exist afterwards; a re-import creates nothing."""
    text, bad = _import_file(10_000, 270)
    assert len(bad) == 37
    started = time.perf_counter()
    reply = admin(system, "POST", "/admin/contacts/import", raw=text, content_type="text/csv")
    elapsed = time.perf_counter() - started
    assert reply["statusCode"] == 200, reply["body"][:500]
    report = body(reply)
    print(f"\nimport: 10,000 rows in {elapsed:.2f}s = {10_000 / elapsed:,.0f} rows/s")
    assert report["rows"] == 10_000
    assert report["failed"] == 37
    assert report["created"] == 10_000 - 37
    assert {e["row"]: e["field"] for e in report["errors"]} == bad
    assert stored_emails(system, "@bulk.example") == {
        f"import.{n}@bulk.example" for n in range(1, 10_001) if n not in bad
    }
    [sample] = profiles_with_email(system, "import.1@bulk.example")
    assert sample["country"] == "DE"
    assert sample["first_name"] == "Person1"
    assert sample["company_size"] == 11
    assert sorted(sample["tags"]) == ["batch1", "imported"]
    assert sample["budget"] == 1000.5

    # re-importing (the first 1,000 rows of) the file changes and creates nothing
    head = "\n".join(text.splitlines()[:1001]) + "\n"
    started = time.perf_counter()
    again = body(admin(system, "POST", "/admin/contacts/import", raw=head, content_type="text/csv"))
    print(f"re-import: {1_000 / (time.perf_counter() - started):,.0f} rows/s")
    assert again["created"] == 0
    assert again["updated"] == 0
    assert again["unchanged"] == 1_000 - 3
    assert again["failed"] == 3
