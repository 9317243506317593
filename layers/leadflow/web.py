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
# Keeps an anonymous first-party visitor id, sends a page view, and fills the hidden
# `visitor_id` field of every leadflow form (forms posting to /forms/...).
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
  function fill() {
    var forms = document.querySelectorAll("form[action*='/forms/']");
    Array.prototype.forEach.call(forms, function (f) {
      var i = f.querySelector("input[name=visitor_id]");
      if (!i) { i = document.createElement("input"); i.type = "hidden"; i.name = "visitor_id"; f.appendChild(i); }
      i.value = id;
      var u = f.querySelector("input[name=page_url]");
      if (!u) { u = document.createElement("input"); u.type = "hidden"; u.name = "page_url"; f.appendChild(u); }
      u.value = location.href;
    });
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
