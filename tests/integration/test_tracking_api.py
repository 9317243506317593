"""The public API through the track handler, with HTTP API v2 events, on moto."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from leadflow.capture.web import TRANSPARENT_GIF
from leadflow.local.system import LocalSystem
from tests.integration.conftest import stream_records

JSON = {"content-type": "application/json"}


def event_count(system: LocalSystem) -> int:
    return len(stream_records(system))


def is_gif(reply: dict[str, Any]) -> bool:
    return (
        reply["statusCode"] == 200
        and reply["headers"]["Content-Type"] == "image/gif"
        and reply["isBase64Encoded"] is True
        and base64.b64decode(reply["body"]) == TRANSPARENT_GIF
    )


@pytest.mark.parametrize(
    "token",
    [
        "garbage.gif",
        "x",
        "eyJrIjoibyJ9.AAAAAAAAAAAAAAAAAAAAAA.gif",
        "%00%0d%0a",
        "a" * 5000 + ".gif",
        "..%2f..%2fetc",
    ],
)
def test_open_pixel_always_answers_the_gif_and_records_nothing_for_bad_tokens(
    system: LocalSystem, token: str
) -> None:
    before = event_count(system)
    reply = system.invoke_http("GET", f"/t/o/{token}")
    assert is_gif(reply)
    assert reply["headers"]["Cache-Control"].startswith("no-store")
    assert event_count(system) == before


@pytest.mark.parametrize(
    "query",
    [
        "",
        "vid=bad id&url=javascript:alert(1)",
        "url=" + "x" * 10000,
        "vid=v1234567890&utm_source=<script>",
        "%ff%fe=%00",
    ],
)
def test_page_view_pixel_answers_the_gif_for_any_input(system: LocalSystem, query: str) -> None:
    reply = system.invoke_http("GET", "/t/p.gif", query=query)
    assert is_gif(reply)


def test_page_view_records_one_event_and_sets_a_visitor_cookie_when_new(system: LocalSystem) -> None:
    before = event_count(system)
    reply = system.invoke_http(
        "GET", "/t/p.gif", query="url=https%3A%2F%2Fexample.com%2Fpricing&utm_source=ads"
    )
    assert is_gif(reply)
    [cookie] = reply["cookies"]
    assert cookie.startswith("lf_vid=v")
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    records = stream_records(system)
    assert len(records) == before + 1
    image = records[-1]["dynamodb"]["NewImage"]
    assert image["type"]["S"] == "page_viewed"
    assert image["properties"]["M"]["url"]["S"] == "https://example.com/pricing"
    assert image["properties"]["M"]["utm_source"]["S"] == "ads"


def test_a_page_url_is_stored_without_personal_data_or_credentials(system: LocalSystem) -> None:
    """Sites put addresses and sign-in tokens in URLs (a newsletter link ``?email=…``, an OAuth
    redirect's ``#access_token=…``): the stored page view keeps the page and its campaign
    parameters, never those."""
    page = (
        "https://example.com/welcome?utm_campaign=spring&email=ada%40example.com&plan=pro"
        "&ref=ada@example.com&token=s3cr3t#access_token=abc"
    )
    reply = system.invoke_http("GET", "/t/p.gif", query=urlencode({"url": page, "ref": page}))
    assert is_gif(reply)
    image = stream_records(system)[-1]["dynamodb"]["NewImage"]
    stored = image["properties"]["M"]
    assert stored["url"]["S"] == "https://example.com/welcome?utm_campaign=spring&plan=pro"
    assert stored["referrer"]["S"] == stored["url"]["S"]
    assert "ada" not in json.dumps(image)
    assert "s3cr3t" not in json.dumps(image)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "Bad Type", "visitor_id": "v1234567890"}, "type"),
        ({"type": "purchase"}, "body"),
        ({"type": "purchase", "email": "nope"}, "email"),
        ({"type": "purchase", "visitor_id": "v1234567890", "properties": {"a": [1, 2]}}, "properties.a"),
        ({"type": "purchase", "visitor_id": "v1234567890", "extra": 1}, "extra"),
    ],
)
def test_invalid_events_get_a_400_naming_the_field(
    system: LocalSystem, body: dict[str, Any], field: str
) -> None:
    before = event_count(system)
    reply = system.invoke_http("POST", "/events", headers=JSON, body=json.dumps(body))
    assert reply["statusCode"] == 400
    payload = json.loads(reply["body"])
    assert payload["error"] == "invalid request"
    assert any(f["field"].startswith(field) for f in payload["fields"]), payload
    assert event_count(system) == before


def test_malformed_json_is_a_400(system: LocalSystem) -> None:
    reply = system.invoke_http("POST", "/events", headers=JSON, body="{not json")
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["error"] == "invalid request"


def test_tampered_unsubscribe_token_shows_an_error_page(system: LocalSystem) -> None:
    for method in ("GET", "POST"):
        reply = system.invoke_http(method, "/unsubscribe/abc.def")
        assert reply["statusCode"] == 400
        assert "not valid" in reply["body"]


def test_click_without_valid_token_never_redirects(system: LocalSystem) -> None:
    reply = system.invoke_http("GET", "/t/c/abc.def", query="url=https://evil.example")
    assert reply["statusCode"] == 400
    assert "Location" not in (reply.get("headers") or {})


@pytest.mark.parametrize("path", ["/events", "/forms/newsletter", "/unsubscribe/abc.def"])
def test_oversized_posts_are_refused_before_parsing_and_store_nothing(system: LocalSystem, path: str) -> None:
    before = event_count(system)
    reply = system.invoke_http("POST", path, headers=JSON, body='{"type": "' + "x" * 70_000 + '"}')
    assert reply["statusCode"] == 413
    body = json.loads(reply["body"])
    assert body["error"] == "request body too large"
    assert body["fields"] == [{"field": "body", "message": "larger than 65536 bytes"}]
    assert event_count(system) == before


def test_the_pixel_answers_the_gif_even_with_a_huge_body(system: LocalSystem) -> None:
    reply = system.invoke_http("GET", "/t/p.gif", query="vid=v-big-body-0001", body="x" * 200_000)
    assert is_gif(reply)


def test_admin_routes_refuse_oversized_bodies_too(system: LocalSystem) -> None:
    reply = system.invoke_http(
        "POST",
        "/admin/contacts/lookup",
        headers={**JSON, "authorization": f"Bearer {system.admin_key}"},
        body='{"email": "' + "a" * 70_000 + '@example.com"}',
    )
    assert reply["statusCode"] == 413
