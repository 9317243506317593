"""The pure parts of the forms' protection: the signed render stamp, the budget window, which
forms' sign-ups send email, the signals of a post."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leadflow.capture.protection import (
    PostSignals,
    forms_that_send_email,
    render_stamp,
    stamp_age,
)
from leadflow.capture.store import SignupBudgets, recipient_domain_key
from leadflow.journeys import load_journeys
from leadflow.kernel.settings import FormConfig
from leadflow.platform.tokens import KeyRing, TokenSigner

ROOT = Path(__file__).resolve().parents[2]
OLD_KEY = "o" * 40
RING = KeyRing(current="n" * 40, previous=[OLD_KEY])


def signer(ring: KeyRing = RING) -> TokenSigner:
    return TokenSigner(lambda refresh: ring.keys)


def form(**values: object) -> FormConfig:
    base = {"thank_you_url": "/t", "error_url": "/e", "consent_required": True, "consent_text": "x" * 20}
    return FormConfig.model_validate(base | values)


def test_a_stamp_tells_its_age_and_nothing_forged_or_stale_passes() -> None:
    stamp = render_stamp(signer(), 1_000_000)
    assert stamp_age(signer(), stamp, 1_000_007.5) == 7.5
    at, mac = stamp.split(".")
    assert stamp_age(signer(), f"{int(at) - 60}.{mac}", 1_000_007) is None  # another time, same MAC
    assert stamp_age(signer(), stamp, 1_000_000 + 86_401) is None  # a day old
    assert stamp_age(signer(), stamp, 1_000_000 - 120) is None  # from the future
    for bad in (None, "", "abc", f"{at}.", f".{mac}", f"{at}.{mac}.x", f"-5.{mac}"):
        assert stamp_age(signer(), bad, 1_000_001) is None, bad
    # signed with a key rotated out of the current slot: still valid; with a foreign key: not
    old = render_stamp(signer(KeyRing(current=OLD_KEY)), 1_000_000)
    assert stamp_age(signer(), old, 1_000_003) == 3
    foreign = render_stamp(signer(KeyRing(current="f" * 40)), 1_000_000)
    assert stamp_age(signer(), foreign, 1_000_003) is None


def test_the_budget_window_is_the_clock_hour() -> None:
    assert SignupBudgets.window(datetime(2026, 12, 3, 18, 59, 30, tzinfo=UTC)) == ("H#2026120318", 30)
    assert SignupBudgets.window(datetime(2026, 12, 3, 19, 0, 0, tzinfo=UTC)) == ("H#2026120319", 3600)
    ops = SignupBudgets("t").ops(
        "f",
        form().budget,
        network="198.51.100.0",
        email="a@Example.COM",
        now=datetime(2026, 12, 3, tzinfo=UTC),
    )
    keys = [op["Update"]["Key"]["pk"]["S"] for op in ops]
    assert keys[1] == f"BUDGET#f#dom#{recipient_domain_key('b@example.com')}"
    assert not any("198.51" in k or "example" in k for k in keys)
    assert [op["Update"]["ExpressionAttributeValues"][":limit"]["N"] for op in ops] == ["10", "100"]


def test_which_forms_sign_ups_send_email() -> None:
    journeys = load_journeys(ROOT / "journeys")
    forms = {
        "newsletter": form(),  # the welcome journey enters on it and sends
        "whitepaper": form(double_opt_in=True),  # the confirmation
        "contact": form(consent_required=False),  # no journey enters on it
    }
    assert forms_that_send_email(forms, journeys) == {"newsletter", "whitepaper"}


def test_a_posts_signals() -> None:
    signals = PostSignals.from_fields(
        {"website_url": " http://x ", "lf_stamp": "1.abc", "h-captcha-response": "tok", "email": "a@b.c"}
    )
    assert signals == PostSignals(honeypot="http://x", stamp="1.abc", captcha_response="tok")
    assert PostSignals.from_fields({"website_url": "   ", "lf_stamp": 5}) == PostSignals()
