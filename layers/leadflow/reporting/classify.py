"""Honest engagement and channel classification: pure functions, no AWS.

Opens
    ``human``          a person's mail client fetched the pixel. Gmail's image proxy
                       (``GoogleImageProxy``) and Yahoo's proxy fetch on the reader's behalf when the
                       message is displayed: those are real opens and count as human.
    ``privacy_proxy``  Apple Mail Privacy Protection prefetches every pixel on delivery, whether or
                       not the message is read: opens from Apple's proxy network (17.0.0.0/8), with
                       the bare user agent ``Mozilla/5.0``, or any open (other than a Gmail/Yahoo
                       proxy) within ``PREFETCH_SECONDS`` of the send.
    ``scanner``        a security scanner or bot (user agent of Barracuda, Mimecast, Proofpoint,
                       Microsoft Defender/Safe Links, crawlers, HTTP libraries).

Clicks
    ``scanner``        scanner/bot user agent; or within ``SCAN_SECONDS`` of the send (link scanners
                       follow every link on delivery); or on another link of the same message within
                       ``BURST_SECONDS`` of its previous click (a scan sweeping all links).
    ``human``          everything else.

Machine opens and clicks are counted apart, never dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

OpenKind = Literal["human", "privacy_proxy", "scanner"]
ClickKind = Literal["human", "scanner"]
Channel = Literal["search", "paid", "social", "email", "referral", "direct"]
CHANNELS: tuple[Channel, ...] = ("search", "paid", "social", "email", "referral", "direct")

PREFETCH_SECONDS = 3.0
SCAN_SECONDS = 10.0
BURST_SECONDS = 2.0

HUMAN_PROXIES = re.compile(r"GoogleImageProxy|YahooMailProxy", re.IGNORECASE)
SCANNERS = re.compile(
    r"barracuda|mimecast|proofpoint|ppops|safelinks|safe ?links|microsoft defender|"
    r"\bdefender\b|ms-office-protection|symantec|messagelabs|forcepoint|trend ?micro|zscaler|"
    r"fireeye|ironport|sophos|checkpoint|bingpreview|\bbot\b|bot/|crawler|spider|slurp|"
    r"headlesschrome|phantomjs|python-requests|python-urllib|aiohttp|go-http-client|curl/|wget/|"
    r"java/|okhttp|libwww|scrapy",
    re.IGNORECASE,
)
APPLE_PROXY_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
BARE_APPLE_UA = "Mozilla/5.0"


def _in_apple_network(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in APPLE_PROXY_NETWORKS)


def classify_open(user_agent: str | None, ip: str | None, seconds_after_send: float | None) -> OpenKind:
    ua = (user_agent or "").strip()
    if HUMAN_PROXIES.search(ua):
        return "human"
    if SCANNERS.search(ua):
        return "scanner"
    if ua == BARE_APPLE_UA or _in_apple_network(ip):
        return "privacy_proxy"
    if seconds_after_send is not None and seconds_after_send <= PREFETCH_SECONDS:
        return "privacy_proxy"
    return "human"


def classify_click(
    user_agent: str | None,
    seconds_after_send: float | None,
    *,
    other_link_seconds_before: float | None = None,
) -> ClickKind:
    """``other_link_seconds_before``: seconds since the message's previous click on another link."""
    if SCANNERS.search(user_agent or ""):
        return "scanner"
    if seconds_after_send is not None and seconds_after_send <= SCAN_SECONDS:
        return "scanner"
    if other_link_seconds_before is not None and other_link_seconds_before <= BURST_SECONDS:
        return "scanner"
    return "human"


# --- channels ------------------------------------------------------------------------------------

SEARCH_ENGINES = re.compile(
    r"(^|\.)(google\.[a-z.]+|bing\.com|duckduckgo\.com|search\.yahoo\.com|yahoo\.[a-z.]+|baidu\.com|"
    r"yandex\.[a-z.]+|ecosia\.org|search\.brave\.com|startpage\.com|qwant\.com)$"
)
SOCIAL_SITES = re.compile(
    r"(^|\.)(facebook\.com|fb\.me|instagram\.com|t\.co|twitter\.com|x\.com|linkedin\.com|lnkd\.in|"
    r"reddit\.com|youtube\.com|pinterest\.[a-z.]+|tiktok\.com|threads\.net|mastodon\.social|"
    r"bsky\.app|news\.ycombinator\.com|xing\.com)$"
)
WEBMAIL = re.compile(r"(^|\.)(mail\.google\.com|outlook\.live\.com|outlook\.office\.com|mail\.yahoo\.com)$")
PAID_MEDIA = frozenset(
    {"cpc", "ppc", "paid", "paidsearch", "paid_search", "sem", "cpm", "display", "paid_social"}
)
PAID_CLICK_IDS = ("gclid", "msclkid", "gbraid", "wbraid", "dclid")
SOCIAL_MEDIA = frozenset({"social", "social-network", "social_network", "social-media", "sm"})
EMAIL_MEDIA = frozenset({"email", "e-mail", "newsletter"})
SEARCH_MEDIA = frozenset({"organic", "seo"})


def _host(url: str | None) -> str:
    if not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").lower().removeprefix("www.")
    except ValueError:
        return ""


def is_internal(properties: Mapping[str, Any]) -> bool:
    """A page view whose referrer is the same site: navigation, not a new touch."""
    here, there = _host(properties.get("url")), _host(properties.get("referrer"))
    has_campaign = any(properties.get(k) for k in ("utm_source", "utm_medium", "utm_campaign"))
    return bool(here) and here == there and not has_campaign


def classify_touch(properties: Mapping[str, Any]) -> Channel:
    """The marketing channel of a page view (``url``, ``referrer``, ``utm_*``)."""
    query: dict[str, list[str]] = {}
    try:
        query = parse_qs(urlsplit(str(properties.get("url") or "")).query)
    except ValueError:
        query = {}
    # the snippet sends utm_* apart; a page URL that still carries them counts the same
    medium = str(properties.get("utm_medium") or query.get("utm_medium", [""])[0]).strip().lower()
    source = str(properties.get("utm_source") or query.get("utm_source", [""])[0]).strip().lower()
    if medium in PAID_MEDIA or any(k in query for k in PAID_CLICK_IDS):
        return "paid"
    if medium in EMAIL_MEDIA or source in EMAIL_MEDIA:
        return "email"
    if medium in SOCIAL_MEDIA:
        return "social"
    if medium in SEARCH_MEDIA:
        return "search"
    referrer = _host(properties.get("referrer"))
    if referrer:
        if SEARCH_ENGINES.search(referrer):
            return "search"
        if SOCIAL_SITES.search(referrer):
            return "social"
        if WEBMAIL.search(referrer):
            return "email"
        return "referral"
    if medium or source:
        return "referral"  # tagged but unknown medium (a partner, a QR code...)
    return "direct"
