"""Checks a journey needs beyond its own file: the templates its send steps use exist."""

from __future__ import annotations

from pathlib import Path

from leadflow.journeys.model import Journey, SendEmailStep, SendSmsStep

EMAIL_PARTS = ("subject.txt", "body.html", "body.txt")
SMS_PART = "sms.txt"


def missing_templates(journey: Journey, templates_dir: Path) -> list[str]:
    """Problems like ``step 'welcome': template 'welcome' has no subject.txt`` (empty when fine).

    An email template needs ``subject.txt`` and at least one of ``body.html``/``body.txt``; an SMS
    template needs ``sms.txt`` (the default-locale files: locale folders only override them)."""
    problems = []
    for step in journey.walk():
        if isinstance(step, SendEmailStep):
            folder = templates_dir / step.send_email.template
            where = f"step {step.send_email.id!r}: template {step.send_email.template!r}"
            if not folder.is_dir():
                problems.append(f"{where} does not exist in {templates_dir}")
            elif not (folder / "subject.txt").is_file():
                problems.append(f"{where} has no subject.txt")
            elif not any((folder / part).is_file() for part in EMAIL_PARTS[1:]):
                problems.append(f"{where} has neither body.html nor body.txt")
        elif isinstance(step, SendSmsStep):
            folder = templates_dir / step.send_sms.template
            if not (folder / SMS_PART).is_file():
                problems.append(
                    f"step {step.send_sms.id!r}: template {step.send_sms.template!r} has no {SMS_PART}"
                )
    return problems
