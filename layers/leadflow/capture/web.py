"""Static web assets of the public API: the transparent GIF, the JS snippet and the small HTML pages
(unsubscribe confirmation, double opt-in confirmation). Every dynamic value is HTML-escaped."""

from __future__ import annotations

import base64
from html import escape

TRANSPARENT_GIF_B64 = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="
TRANSPARENT_GIF = base64.b64decode(TRANSPARENT_GIF_B64)  # 43 bytes


PIXEL_HEADERS = {
    "Content-Type": "image/gif",
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
}

VISITOR_COOKIE = "lf_vid"

# The website snippet: <script async src="https://TRACKING-API/t/lf.js"></script>
# Keeps an anonymous first-party visitor id, sends a page view, and fills every leadflow form
# (forms posting to /forms/...): the hidden `visitor_id` and `page_url` fields, the signed render
# stamp `lf_stamp` (GET /t/stamp: forms with a minimum fill time check it) and, where the form's
# HTML lacks it, the honeypot `website_url` (a text input people never see or reach).
# `leadflow.track(type, properties)` posts browser events to /events: only `identify` and the
# types the stage declares public are accepted; business events come from servers.
SNIPPET_JS = r"""(function () {
  var s = document.currentScript;
  var base = s ? s.src.replace(/\/t\/lf\.js(\?.*)?$/, "") : "";
  function vid() {
    var m = document.cookie.match(/(?:^|; )lf_vid=([A-Za-z0-9_-]{8,64})/);
    if (m) return m[1];
    var a = new Uint8Array(16); (window.crypto || window.msCrypto).getRandomValues(a);
    var v = "v" + Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    document.cookie = "lf_vid=" + v + "; path=/; max-age=63072000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    return v;
  }
  var id = vid();
  var q = new URLSearchParams(location.search);
  var p = new URLSearchParams({ vid: id, url: location.href, ref: document.referrer, title: document.title });
  ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"].forEach(function (k) {
    if (q.get(k)) p.set(k, q.get(k));
  });
  new Image(1, 1).src = base + "/t/p.gif?" + p.toString();
  function field(f, name, type) {
    var i = f.querySelector("input[name=" + name + "]");
    if (!i) { i = document.createElement("input"); i.type = type; i.name = name; f.appendChild(i); }
    return i;
  }
  function fill() {
    var forms = document.querySelectorAll("form[action*='/forms/']");
    if (!forms.length) return;
    Array.prototype.forEach.call(forms, function (f) {
      field(f, "visitor_id", "hidden").value = id;
      field(f, "page_url", "hidden").value = location.href;
      if (!f.querySelector("input[name=website_url]")) {
        var h = field(f, "website_url", "text");
        h.tabIndex = -1; h.autocomplete = "off"; h.setAttribute("aria-hidden", "true");
        h.style.cssText = "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden";
      }
    });
    fetch(base + "/t/stamp", { credentials: "omit", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        Array.prototype.forEach.call(forms, function (f) { field(f, "lf_stamp", "hidden").value = j.stamp; });
      })
      .catch(function () {});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fill); else fill();
  window.leadflow = { visitorId: id, track: function (type, properties) {
    var body = JSON.stringify({ type: type, visitor_id: id, properties: properties || {} });
    if (navigator.sendBeacon) navigator.sendBeacon(base + "/events", new Blob([body], { type: "application/json" }));
    else fetch(base + "/events", { method: "POST", headers: { "Content-Type": "application/json" }, body: body });
  } };
})();
"""


def _page(title: str, body_html: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
        "color:#1f2933}button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:.4rem;"
        "background:#2563eb;color:#fff;cursor:pointer}</style></head>"
        f"<body>{body_html}</body></html>"
    )


def unsubscribe_confirm_page(action_path: str) -> str:
    return _page(
        "Unsubscribe",
        "<h1>Unsubscribe?</h1><p>You will no longer receive marketing email from us.</p>"
        f'<form method="post" action="{escape(action_path)}"><button type="submit">Unsubscribe</button></form>',
    )


def unsubscribed_page(already: bool) -> str:
    text = "You were already unsubscribed." if already else "You have been unsubscribed."
    return _page(
        "Unsubscribed", f"<h1>Done</h1><p>{escape(text)} No further marketing email will be sent.</p>"
    )


def subscription_confirmed_page(already: bool) -> str:
    text = (
        "Your subscription was already confirmed."
        if already
        else "Thank you, your subscription is confirmed."
    )
    return _page("Subscription confirmed", f"<h1>Confirmed</h1><p>{escape(text)}</p>")


def invalid_link_page() -> str:
    return _page("Invalid link", "<h1>This link is not valid</h1><p>Please use the link from your email.</p>")
