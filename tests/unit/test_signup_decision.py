"""A sign-up form post's writes (``leadflow.capture.tracking.plan_signup``) decided without a database:
new and returning contacts, double opt-in, SMS consent, a visitor id that is new, already this
contact's, or another contact's (a shared device)."""

from __future__ import annotations

from typing import Any

import pytest

from leadflow.capture.model import FormSubmission
from leadflow.capture.tracking import Signup, plan_signup
from leadflow.kernel.errors import InvalidInput
from leadflow.kernel.settings import FormConfig

NEWSLETTER = FormConfig(
    thank_you_url="https://example.com/thanks",
    error_url="https://example.com/oops",
    consent_required=True,
    consent_text="Yes, send me the newsletter. I can unsubscribe at any time.",
)
DOUBLE_OPT_IN = NEWSLETTER.model_copy(update={"double_opt_in": True})
AT = "2026-03-14T23:59:59.870Z"
VID = "v-3f9c0a7e2b5d4c1a8e6f0b9d7c5a3e1f"


def signup(form: FormConfig = NEWSLETTER, *, existing: bool = False, **kwargs: Any) -> Signup:
    post: dict[str, Any] = {"email": "Max.Mustermann@Example.COM", "first_name": " Max ", "consent": True}
    post |= kwargs.pop("post", {})
    options: dict[str, Any] = {
        "contact_id": "c-existing" if existing else "c-new",
        "existing": existing,
        "already_granted": False,
        "visitor_id": None,
        "linked_contact": None,
        "ip": "203.0.113.0",
        "at": AT,
        "form_event_id": "01HV-form",
    } | kwargs
    return plan_signup("newsletter", form, FormSubmission.model_validate(post), **options)


def test_a_new_subscriber_with_consent_is_granted_and_logged() -> None:
    planned = signup(post={"page_url": " https://example.com/blog/post?utm_source=x "})
    assert planned.contact_id == "c-new"
    assert planned.email == "max.mustermann@example.com"
    assert planned.fields["first_name"] == "Max"
    assert planned.fields["consent_email"] == "granted"
    assert (planned.fields["consent_source"], planned.fields["consent_ip"]) == (
        "form:newsletter",
        "203.0.113.0",
    )
    assert planned.consent_log == [("email", "granted")]
    assert planned.link_visitor is None
    [(name, event)] = planned.events
    assert name == "form_submitted"
    assert (event.event_id, event.contact_id, event.occurred_at) == ("01HV-form", "c-new", AT)
    assert event.properties["form_id"] == "newsletter"
    assert event.properties["consent"] is True
    assert event.properties["page_url"] == "https://example.com/blog/post?utm_source=x"
    script = signup(post={"page_url": "javascript:alert(1)"})
    assert "page_url" not in script.events[-1][1].properties  # only http(s) pages are kept


def test_double_opt_in_keeps_consent_pending_unless_the_contact_confirmed_before() -> None:
    first = signup(DOUBLE_OPT_IN)
    assert first.fields["consent_email"] == "pending"
    assert first.consent_log == [("email", "pending")]
    assert first.events[-1][1].properties["double_opt_in"] is True
    again = signup(DOUBLE_OPT_IN, existing=True, already_granted=True)
    assert again.fields["consent_email"] == "granted"


def test_without_consent_a_returning_contacts_consent_is_left_alone() -> None:
    new = signup(post={"consent": False})
    assert new.fields["consent_email"] == "unknown"
    assert new.consent_log == []
    returning = signup(existing=True, post={"consent": False})
    assert "consent_email" not in returning.fields


def test_a_phone_with_sms_consent_is_indexed_granted_and_logged() -> None:
    planned = signup(post={"phone": "+49 30 1234567", "sms_consent": True, "country": "DE"})
    assert planned.phone == planned.fields["phone"]
    assert planned.phone is not None
    assert planned.phone.startswith("+49")
    assert planned.fields["consent_sms"] == "granted"
    assert planned.consent_log == [("email", "granted"), ("sms", "granted")]
    no_sms = signup(post={"phone": "+49 30 1234567"})
    assert "consent_sms" not in no_sms.fields
    assert no_sms.consent_log == [("email", "granted")]


def test_a_new_visitor_is_linked_and_identified_right_before_the_form_event() -> None:
    planned = signup(visitor_id=VID)
    assert planned.link_visitor == VID
    assert planned.profile_visitor_id == VID
    assert [name for name, _ in planned.events] == ["identified", "form_submitted"]
    identified = planned.events[0][1]
    assert identified.event_id == "01HV-form.identified"  # sorts right after the form event
    assert identified.properties == {"visitor_id": VID}


def test_a_visitor_linked_already_is_not_linked_again_and_another_contacts_stays_theirs() -> None:
    mine = signup(existing=True, visitor_id=VID, linked_contact="c-existing")
    assert mine.link_visitor is None
    assert mine.profile_visitor_id == VID
    assert [name for name, _ in mine.events] == ["form_submitted"]
    shared = signup(existing=True, visitor_id=VID, linked_contact="c-someone-else")
    assert shared.link_visitor is None
    assert shared.profile_visitor_id is None
    assert shared.events[-1][1].visitor_id == VID  # the post came from that browser


def test_a_national_phone_without_a_country_is_read_in_the_stored_one() -> None:
    national = {"phone": "030 7654321", "sms_consent": True}
    planned = signup(existing=True, stored_country="DE", post=national)
    assert (planned.phone, planned.fields["phone"]) == ("+49307654321", "+49307654321")
    assert ("sms", "granted") in planned.consent_log
    # the form's own country wins over the stored one
    assert signup(
        existing=True, stored_country="DE", post={"country": "AT", "phone": "01 5124567"}
    ).phone == ("+4315124567")
    for stored_country, message in ((None, "international format"), ("DE", "not a valid phone number")):
        phone = "030 7654321" if stored_country is None else "030 12"
        with pytest.raises(InvalidInput, match=message) as refused:
            signup(existing=True, stored_country=stored_country, post={"phone": phone})
        assert refused.value.field == "phone"
