"""The journey pages under ``/_local/``, over real HTTP on the local system: the list of loaded
journeys and one journey's diagram (inline SVG) with its compiled state machine."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest

from leadflow.journeys import load_journeys
from tests.e2e.conftest import Site, local_site


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with local_site(background_pump=False) as running:
        yield running


def page(site: Site, path: str, status: int = 200) -> str:
    reply = site.get(path)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    return reply.body.decode()


def test_the_dashboard_links_the_journeys(site: Site) -> None:
    assert 'href="/_local/journeys"' in page(site, "/_local/")


def test_the_journey_list_shows_every_loaded_journey(site: Site) -> None:
    body = page(site, "/_local/journeys")
    journeys = load_journeys(site.system.content_dir / "journeys")
    assert journeys
    for journey in journeys:
        assert f'href="/_local/journey?id={journey.id}"' in body
        assert html.escape(journey.name) in body
        assert site.system.state_machines[journey.id] in body
    assert "form_submitted where form_id = newsletter" in body  # the welcome series' entry


def test_a_journey_page_draws_the_diagram_and_shows_the_asl(site: Site) -> None:
    body = page(site, "/_local/journey?id=welcome")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in body
    assert "</svg>" in body
    assert "Send email: welcome" in body
    assert ">yes</text>" in body
    assert ">no</text>" in body
    assert "<details><summary>Compiled state machine (ASL)</summary>" in body
    assert '"StartAt": "Send email: welcome"' in html.unescape(body)


def test_an_unknown_journey_is_a_404_with_the_id_escaped(site: Site) -> None:
    body = page(site, "/_local/journey?id=%3Cscript%3Ealert(1)%3C/script%3E", status=404)
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)" in body
