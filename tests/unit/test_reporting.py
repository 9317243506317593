"""Honest open/click classification with realistic user agents and timings, channel rules, and the
confidence intervals of holdout lift."""

from __future__ import annotations

import pytest

from leadflow.reporting.classify import classify_click, classify_open, classify_touch, is_internal
from leadflow.reporting.reports import lift
from leadflow.reporting.stats import newcombe, wilson

GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
IPHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


@pytest.mark.parametrize(
    ("ua", "ip", "seconds", "kind"),
    [
        (GMAIL, "66.249.84.0", 1.0, "human"),  # Gmail's proxy fetches when a person opens: real
        (GMAIL, "66.249.84.0", 7200.0, "human"),
        (YAHOO, "98.136.0.0", 600.0, "human"),
        ("Mozilla/5.0", "17.58.63.0", 2.0, "privacy_proxy"),  # Apple MPP prefetch on delivery
        ("Mozilla/5.0", "104.28.0.0", 5400.0, "privacy_proxy"),  # bare UA, Private Relay egress
        (IPHONE_MAIL, "17.120.4.0", 30.0, "privacy_proxy"),  # Apple's proxy network
        (IPHONE_MAIL, "203.0.113.0", 1.0, "privacy_proxy"),  # a prefetch within seconds of the send
        (IPHONE_MAIL, "203.0.113.0", 95.0, "human"),
        (OUTLOOK, "2001:db8:abcd::", 3600.0, "human"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "64.235.144.0", 4.0, "scanner"),
        ("Mimecast-URL-Protect/1.0", None, 20.0, "scanner"),
        ("python-requests/2.31.0", None, 500.0, "scanner"),
        (None, None, None, "human"),
    ],
)
def test_open_classification(ua: str | None, ip: str | None, seconds: float | None, kind: str) -> None:
    assert classify_open(ua, ip, seconds) == kind


def test_click_classification() -> None:
    assert classify_click(CHROME, 3600.0) == "human"
    assert classify_click(CHROME, 4.0) == "scanner"  # a link scanner follows links on delivery
    assert classify_click(CHROME, 3600.0, other_link_seconds_before=0.4) == "scanner"  # sweeping links
    assert classify_click(CHROME, 3600.0, other_link_seconds_before=45.0) == "human"
    for ua in (
        "Mozilla/5.0 (compatible; Proofpoint URL Defense)",
        "Microsoft Defender for Office 365 Safe Links",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
    ):
        assert classify_click(ua, 3600.0) == "scanner", ua


@pytest.mark.parametrize(
    ("properties", "channel"),
    [
        ({"url": "https://n.example/", "referrer": "https://www.google.de/"}, "search"),
        ({"url": "https://n.example/", "referrer": "https://duckduckgo.com/"}, "search"),
        ({"url": "https://n.example/?gclid=x", "referrer": "https://www.google.com/"}, "paid"),
        ({"url": "https://n.example/?msclkid=x"}, "paid"),
        ({"url": "https://n.example/", "utm_medium": "cpc", "utm_source": "bing"}, "paid"),
        ({"url": "https://n.example/", "referrer": "https://t.co/abc"}, "social"),
        ({"url": "https://n.example/", "referrer": "https://www.linkedin.com/feed/"}, "social"),
        ({"url": "https://n.example/", "utm_medium": "email", "utm_source": "leadflow"}, "email"),
        ({"url": "https://n.example/", "referrer": "https://partner.example.org/post"}, "referral"),
        ({"url": "https://n.example/", "utm_source": "qr-flyer"}, "referral"),
        ({"url": "https://n.example/"}, "direct"),
    ],
)
def test_channels(properties: dict[str, str], channel: str) -> None:
    assert classify_touch(properties) == channel


def test_internal_navigation_is_not_a_touch() -> None:
    assert is_internal({"url": "https://n.example/b", "referrer": "https://www.n.example/a"})
    assert not is_internal({"url": "https://n.example/b", "referrer": "https://google.com/"})


def test_wilson_and_newcombe_against_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17, table II, example (a): 56/70 vs 48/80
    low, high = newcombe(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    low, high = wilson(0, 10)
    assert (round(low, 4), round(high, 4)) == (0.0, 0.2775)


def test_lift_from_counters() -> None:
    counts = {"entered": 1000, "held_out": 100, "goal.purchase.treated": 90, "goal.purchase.held_out": 5}
    result = lift("purchase", counts)
    assert (result.treated, result.held_out) == (900, 100)
    assert (result.treated_rate, result.held_out_rate) == (0.1, 0.05)
    assert result.difference == 0.05
    assert result.relative_lift == 1.0
    assert result.difference_ci95 is not None
    assert result.difference_ci95[0] < 0.05 < result.difference_ci95[1]
    assert lift("purchase", {"entered": 10}).difference_ci95 is None


def test_utm_parameters_left_in_the_page_url_classify_the_touch() -> None:
    from leadflow.reporting.classify import classify_touch

    assert classify_touch({"url": "https://example.com/?utm_source=google&utm_medium=cpc"}) == "paid"
    assert classify_touch({"url": "https://example.com/?utm_medium=social"}) == "social"
    assert classify_touch({"url": "https://example.com/pricing"}) == "direct"
