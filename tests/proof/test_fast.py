"""Fast versions of the proof parts for ``make test``: a short load burst with accepted == stored, the
browser sign-up when Chromium is installed (else: the setup step that installs it is right), the runner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proof import __main__ as runner
from tests.proof import browser, load
from tests.proof.common import ROOT, Server, local_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with local_server("test-fast") as running:
        yield running


def test_load_burst_every_accepted_event_is_stored(server: Server) -> None:
    result = load.measure(server, steps=((10, 2),), workers=4)
    step = result["steps"][0]
    assert step["requests"] == 20
    assert result["5xx"] == 0
    assert result["errors"] == 0, result["error_samples"]
    assert result["accepted_total"] >= 20  # every request of the burst produced an event
    assert result["accepted_eq_stored"], result["by_type"]
    assert result["ok"]


def test_browser_sign_up_or_the_setup_that_installs_chromium(server: Server) -> None:
    if browser.chromium_present():
        result = browser.scenario(server)
        assert result["checks"]["thank-you page shows"]
        assert result["checks"]["contact exists"]
        assert result["checks"]["welcome execution exists"]
        assert result["checks"]["page view recorded"]
        assert result["ok"], result["checks"]
        assert (ROOT / result["screenshot"]).stat().st_size > 1000
    else:
        # no browser on this machine: the part says how to get one, and that way is Debian's package
        result = browser.run()
        assert result == {"part": "browser", "ok": False, "error": result["error"]}
        assert "make proof-setup" in result["error"]
    recipe = _recipe("proof-setup")
    assert "[ -x /usr/bin/chromium ]" in recipe.replace("$(CHROMIUM)", "/usr/bin/chromium")
    assert re.search(r"apt-get install -y --no-install-recommends chromium\b", recipe)
    assert "playwright install" not in (ROOT / "Makefile").read_text()
    assert str(browser.CHROMIUM) == "/usr/bin/chromium"
    assert {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"} <= set(browser.CHROMIUM_ARGS)


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"no {target} target"
    return match.group(1)


def test_runner_prints_one_json_line_per_part_and_a_failing_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parts that pass, fail, raise, print their own JSON line, or do not exist yet."""
    package = tmp_path / "fakeproof"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(
        'def run():\n    print("figures")\n    return {"part": "good", "ok": True, "n": 3}\n'
    )
    (package / "selfprint.py").write_text(
        "import json\ndef run():\n"
        '    r = {"part": "selfprint", "ok": True}\n    print(json.dumps(r))\n    return r\n'
    )
    (package / "bad.py").write_text(
        'def run():\n    return {"part": "bad", "ok": False, "summary": "target missed"}\n'
    )
    (package / "boom.py").write_text('def run():\n    raise RuntimeError("server died")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "PARTS", ("good", "selfprint", "bad", "boom", "absent"))
    monkeypatch.setattr(runner, "PACKAGE", "fakeproof")

    assert runner.main([]) == 1
    out = capsys.readouterr().out
    json_lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(j["part"], j["ok"]) for j in json_lines] == [
        ("good", True),
        ("selfprint", True),
        ("bad", False),
        ("boom", False),
    ]
    assert json_lines[3]["error"] == "RuntimeError: server died"
    table = out.split("== proof summary")[1]
    assert re.search(r"good\s+\| passed", table)
    assert re.search(r"bad\s+\| failed .*target missed", table)
    assert re.search(r"absent\s+\| absent .*module not present", table)
    assert "FAILED: bad, boom" in out
    assert runner.main(["good", "absent"]) == 0
    assert runner.main(["nope"]) == 2


def test_parts_run_piecewise_from_the_command_line() -> None:
    """``python -m tests.proof PART`` takes only known parts (a typo fails at once, before any server)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.proof", "lod"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown part(s): lod" in done.stderr
