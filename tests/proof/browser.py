"""Proof part ``browser``: a person signs up on the demo page in a real headless Chromium.

Debian's ``chromium`` (``make proof-setup`` installs it), driven by Playwright for Python over CDP:
no downloaded browser. The scenario runs against ``python -m leadflow.local`` on a free port: load
``/`` (the snippet ``/t/lf.js`` records a page view), type the email and first name, tick consent,
click *Subscribe*, see the thank-you page (screenshot in ``artifacts/proof/thank-you.png``), then
check through the operator routes that the contact, its welcome journey execution and the page
view exist."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.proof.common import Server, artifacts_dir, get_json, local_server, say, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EMAIL = "grace.hopper@example.com"
FIRST_NAME = "Grace"
THANKS_TEXT = "Thanks — you're on the list!"


def chromium_present() -> bool:
    return CHROMIUM.exists()


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"part": "browser", "ok": False}
    if not chromium_present():
        result["error"] = f"{CHROMIUM} missing: run `make proof-setup`"
        say(f"browser: {result['error']}")
        return result
    with local_server("browser") as server:
        result["server_start_s"] = round(server.started_s, 2)
        result |= scenario(server)
    return result


def scenario(server: Server) -> dict[str, Any]:
    """The sign-up as a person does it, then the checks; the figures and ``ok``."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    screenshot = artifacts_dir() / "thank-you.png"
    before = server.events_by_type()
    profile = tempfile.mkdtemp(prefix="leadflow-proof-chromium-")
    t0 = time.monotonic()
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1200, "height": 800},
            )
            try:
                out["browser_version"] = context.browser.version if context.browser else None
                out["launch_ms"] = _ms(t0)
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(30_000)

                t = time.monotonic()
                with page.expect_response(lambda r: "/t/p.gif" in r.url) as pixel:
                    page.goto(f"{server.base}/", wait_until="load")
                checks["page view pixel answered 200"] = pixel.value.status == 200
                out["page_load_ms"] = _ms(t)
                visitor_id = page.evaluate("window.leadflow && window.leadflow.visitorId")
                out["visitor_id"] = visitor_id
                # the snippet added the visitor id to the form: the sign-up is linked to the visit
                checks["snippet filled visitor_id"] = (
                    page.locator("input[name=visitor_id]").input_value() == visitor_id
                )

                t = time.monotonic()
                page.locator("#email").click()
                page.locator("#email").press_sequentially(EMAIL, delay=25)
                page.locator("#first_name").click()
                page.locator("#first_name").press_sequentially(FIRST_NAME, delay=25)
                page.locator("#consent").check()
                out["typing_ms"] = _ms(t)

                t = time.monotonic()
                with page.expect_navigation(url=f"{server.base}/thanks", wait_until="load"):
                    page.get_by_role("button", name="Subscribe").click()
                out["submit_to_thanks_ms"] = _ms(t)
                heading = page.locator("#thanks").inner_text()
                checks["thank-you page shows"] = heading.strip() == THANKS_TEXT
                out["thanks_heading"] = heading.strip()
                page.screenshot(path=str(screenshot), full_page=True)
                out["screenshot"] = str(screenshot.relative_to(artifacts_dir().parents[1]))
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    out["browser_total_ms"] = _ms(t0)

    t = time.monotonic()
    contact = wait_until(lambda: _contact(server, EMAIL), timeout=30)
    checks["contact exists"] = bool(contact)
    checks["contact has consent"] = bool(contact) and contact.get("consent_email") == "granted"
    contact_id = str(contact.get("contact_id")) if contact else ""
    execution = wait_until(lambda: _welcome_execution(server, contact_id), timeout=30) if contact_id else None
    checks["welcome execution exists"] = bool(execution)
    out["execution"] = {"name": execution["name"], "status": execution["status"]} if execution else None
    after = server.events_by_type()
    added = {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] != before.get(k, 0)}
    out["events_added"] = added  # the home page and the thank-you page each record a view
    checks["page view recorded"] = added.get("page_viewed", 0) >= 1
    checks["form submission recorded"] = added.get("form_submitted", 0) == 1
    out["checks_ms"] = _ms(t)
    out["checks"] = checks
    out["ok"] = all(checks.values())
    for name, passed in checks.items():
        say(f"browser: {'PASS' if passed else 'FAIL'} {name}")
    say(
        f"browser: chromium {out.get('browser_version')}: launch {out['launch_ms']} ms, page {out['page_load_ms']} ms, "
        f"submit → thank-you {out['submit_to_thanks_ms']} ms; screenshot {out.get('screenshot')}"
    )
    return out


def _contact(server: Server, email: str) -> dict[str, Any] | None:
    for contact in get_json(f"{server.base}/_local/contacts.json"):
        if contact.get("email") == email:
            found: dict[str, Any] = contact
            return found
    return None


def _welcome_execution(server: Server, contact_id: str) -> dict[str, Any] | None:
    for execution in get_json(f"{server.base}/_local/executions"):
        if execution.get("journey") == "welcome" and contact_id in str(execution.get("name")):
            found: dict[str, Any] = execution
            return found
    return None


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)
