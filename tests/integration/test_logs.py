"""Logs are for ops, not a copy of the contact database: no email address, name or IP in any log
record the functions write, whatever happens (sign-up, journey, unsubscribe, rejected records)."""

from __future__ import annotations

from leadflow.local.system import LocalSystem
from leadflow.platform.tables import keys
from tests.integration.conftest import sign_up

EMAIL = "Pii.Canary+logs@Example.org"
NAME = "Zyxwvutsr"


def test_no_personal_data_reaches_the_logs(log_lines: list[str]) -> None:
    with LocalSystem(background_pump=False) as system:
        contact = sign_up(system, EMAIL, first_name=NAME, visitor_id="v-logs-000001")
        system.settle()
        # a record that is not an event, carrying personal data, is rejected: logged without its values
        system.client("dynamodb").put_item(
            TableName="leadflow-local-events",
            Item={
                "pk": {"S": keys.contact(contact)},
                "sk": {"S": "EV#broken"},
                "email": {"S": EMAIL.lower()},
                "first_name": {"S": NAME},
            },
        )
        system.settle()
        system.advance(3 * 86400)
        assert len(system.outbox()) == 2  # welcome and the follow-up: the flow really ran

    text = "\n".join(log_lines)
    assert "stream record rejected" in text
    assert "email sent" in text
    for secret in (EMAIL, EMAIL.lower(), "pii.canary", NAME, "127.0.0.1"):
        assert secret.lower() not in text.lower(), secret
