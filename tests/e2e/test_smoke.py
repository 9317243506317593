"""``leadflow ops smoke`` against the running local system (what ``make run`` serves): every step
passes on a healthy stage and cleans up after itself; a broken stage makes it exit 1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadflow.ops import cli
from leadflow.ops.smoke import SIMULATOR_DOMAIN
from tests.e2e.conftest import Site

# each run signs up 3 addresses from 127.0.0.1: the three runs here stay within the newsletter
# form's per-source budget of the module's local system (10 an hour)
STEPS = ["sign-ups", "iam", "contact", "journey", "email", "bounce", "complaint", "erase"]


def smoke(site: Site, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any], str]:
    status = cli.main(
        ["ops", "smoke", "--url", site.base, f"--key={site.system.admin_key}", "--timeout", "20", *extra]
    )
    out = capsys.readouterr().out
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return status, summary, out


def simulator_contacts(site: Site, label: str) -> list[dict[str, Any]]:
    return [c for c in site.system.contacts() if label in str(c.get("email", ""))]


def test_smoke_passes_on_a_healthy_stage_and_leaves_nothing_behind(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    status, summary, out = smoke(site, capsys)
    assert status == 0, out
    assert summary["ok"] is True
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["ok"] for s in summary["steps"]), summary["steps"]
    for name in STEPS:  # one printed line per step
        assert any(line.startswith("ok") and f" {name} " in line for line in out.splitlines()), name
    assert summary["contacts_created"] == summary["contacts_erased"] == 3

    # what the steps saw really happened: the three simulator outcomes went out through SES
    label = summary["label"]
    sent = [m for m in site.outbox() if any(label in to for to in m["to"])]
    assert sorted({to.split("+")[0] for m in sent for to in m["to"]}) == ["bounce", "complaint", "success"]
    assert all(to.endswith(f"@{SIMULATOR_DOMAIN}") for m in sent for to in m["to"])
    # and everything it created is erased: no profile left, the welcome executions stopped
    assert simulator_contacts(site, label) == []
    welcome = [e for e in site.executions() if e["journey"] == "welcome"]
    assert welcome
    assert {e["status"] for e in welcome} <= {"ABORTED", "SUCCEEDED"}


def test_smoke_fails_when_ses_feedback_does_not_reach_the_feedback_function(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage whose SES notifications go nowhere (the feedback topic not subscribed): the delivery
    never comes back, so the run fails at ``email``, still erases what it created, and exits 1."""
    monkeypatch.setattr(site.system.ses_simulator, "_publish", lambda document: None)
    status, summary, out = smoke(site, capsys, "--timeout", "3")
    assert status == 1, out
    assert summary["ok"] is False
    failed = [s for s in summary["steps"] if not s["ok"]]
    assert [s["name"] for s in failed] == ["email"]
    assert "email_delivered" in failed[0]["detail"]
    assert summary["steps"][-1]["name"] == "erase"
    assert summary["steps"][-1]["ok"] is True
    assert summary["contacts_erased"] == 3
    assert simulator_contacts(site, summary["label"]) == []
    assert any(line.startswith("FAIL email") for line in out.splitlines())


def test_smoke_fails_when_admin_routes_are_open(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin route that answers without credentials is a failed deployment (IAM not enforced)."""
    real = site.system.invoke_http

    def without_iam(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", None) or {})
        if path.startswith("/admin/"):
            headers.setdefault("Authorization", f"Bearer {site.system.admin_key}")
        return real(method, path, headers=headers, **kwargs)

    monkeypatch.setattr(site.system, "invoke_http", without_iam)
    status, summary, out = smoke(site, capsys)
    assert status == 1, out
    failed = [s for s in summary["steps"] if not s["ok"]]
    assert [s["name"] for s in failed] == ["iam"]
    assert "not 403" in failed[0]["detail"]
    assert summary["contacts_erased"] == 3


def test_smoke_without_a_local_key_is_a_usage_error(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADFLOW_LOCAL_ADMIN_KEY", raising=False)
    monkeypatch.delenv("LEADFLOW_ADMIN_KEY", raising=False)
    assert cli.main(["ops", "smoke", "--stage", "local", "--url", site.base]) == 2
    assert "admin key" in capsys.readouterr().err
