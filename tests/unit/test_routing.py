"""Routing rules pick owners; the hand-off document fits the 256 KB message limit; sales feedback
outcomes map to lifecycle stages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadflow.leads.handoff import MAX_DOCUMENT_BYTES, contact_view, encode, fit
from leadflow.leads.model import parse_lead_model
from leadflow.leads.routing import DEFAULT_RULE, OwnerPicker, matching_rule, routing_facts
from leadflow.leads.sales_feedback import target_stage

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MODEL = parse_lead_model(
    {
        "scoring": {"half_life": {"days": 10}},
        "lifecycle": {"stages": ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]},
        "routing": {
            "assignment": [
                {
                    "id": "dach",
                    "when": {"attribute": "country", "in": ["DE", "AT"]},
                    "owners": ["anna", "ben"],
                },
                {"id": "hot", "when": {"score": {"gte": 50}}, "owners": ["hannah"], "strategy": "fixed"},
                {
                    "id": "enterprise",
                    "when": {"attribute": "employees", "gte": 1000},
                    "owners": ["eve", "finn"],
                },
            ],
            "default_owner": "inbox",
        },
    },
    "leads.yaml",
)


class Counter:
    """A stand-in for DynamoDB's atomic ADD on the counter item."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["UpdateExpression"] == "ADD n :one"
        assert kwargs["ReturnValues"] == "UPDATED_NEW"
        key = kwargs["Key"]["pk"]["S"]
        self.values[key] = self.values.get(key, 0) + 1
        return {"Attributes": {"n": {"N": str(self.values[key])}}}


def picker() -> tuple[OwnerPicker, Counter]:
    counter = Counter()
    return OwnerPicker(client=counter, contacts_table="contacts", model=lambda: MODEL), counter


def rule_for(profile: dict[str, Any]) -> str | None:
    rule = matching_rule(MODEL.routing, routing_facts(profile, NOW, MODEL))
    return rule.id if rule else None


def test_the_first_matching_rule_wins() -> None:
    assert (
        rule_for({"contact_id": "c1", "country": "DE", "score_value": 80, "score_at": NOW.isoformat()})
        == "dach"
    )
    assert (
        rule_for({"contact_id": "c1", "country": "US", "score_value": 80, "score_at": NOW.isoformat()})
        == "hot"
    )
    assert rule_for({"contact_id": "c1", "employees": 5000}) == "enterprise"
    assert rule_for({"contact_id": "c1", "country": "US"}) is None


def test_score_conditions_use_the_decayed_score() -> None:
    ten_days_ago = "2026-02-20T12:00:00.000Z"
    assert rule_for({"contact_id": "c1", "score_value": 80, "score_at": ten_days_ago}) is None  # 40 now
    assert rule_for({"contact_id": "c1", "score_value": 100, "score_at": ten_days_ago}) == "hot"  # 50 now


def test_round_robin_takes_turns_per_rule_and_fixed_and_default_need_no_counter() -> None:
    owners, counter = picker()
    dach = [owners.pick({"contact_id": f"c{i}", "country": "AT"}, NOW) for i in range(5)]
    assert [a.owner for a in dach] == ["anna", "ben", "anna", "ben", "anna"]
    assert {a.rule for a in dach} == {"dach"}
    big = owners.pick({"contact_id": "c9", "employees": 2000}, NOW)
    assert big.owner == "eve"  # its own counter
    assert counter.values == {"ROUTING#dach": 5, "ROUTING#enterprise": 1}
    hot = owners.pick({"contact_id": "c10", "score": 70}, NOW)
    assert (hot.owner, hot.rule) == ("hannah", "hot")
    nobody = owners.pick({"contact_id": "c11"}, NOW)
    assert (nobody.owner, nobody.rule) == ("inbox", DEFAULT_RULE)
    assert counter.values == {"ROUTING#dach": 5, "ROUTING#enterprise": 1}


def test_no_rule_and_no_default_owner_leaves_the_lead_unassigned() -> None:
    model = parse_lead_model({"routing": {"assignment": []}}, "leads.yaml")
    owners = OwnerPicker(client=Counter(), contacts_table="contacts", model=lambda: model)
    assignment = owners.pick({"contact_id": "c1"}, NOW)
    assert assignment.owner is None
    assert assignment.rule is None


def test_the_hand_off_document_keeps_the_newest_events_that_fit() -> None:
    events = [
        {
            "event_id": f"e{i:05d}",
            "type": "page_viewed",
            "properties": {"url": "https://x.example/" + "p" * 400},
        }
        for i in range(1000)
    ]
    document = {"handoff_id": "h", "contact": {"contact_id": "c1"}, "events": events, "history_count": 1000}
    small = fit(document)
    assert len(encode(small).encode()) <= MAX_DOCUMENT_BYTES
    assert small["history_truncated"] is True
    assert small["events"] == events[: small["history_count"]]  # the newest (first) ones
    assert 400 < small["history_count"] < 1000
    assert fit({**document, "events": events[:10]})["events"] == events[:10]


def test_the_contact_view_drops_lead_engine_bookkeeping_and_shows_the_current_score() -> None:
    profile = {
        "pk": "C#c1",
        "sk": "PROFILE",
        "contact_id": "c1",
        "email": "a@example.com",
        "score": 80,
        "score_value": 80.0,
        "score_at": "2026-02-20T12:00:00.000Z",
        "rule_points": {"demo": {"points": 60}},
        "activity": {"demo": {"all": 1}},
        "lead_version": 7,
        "fit_score": 10,
        "industry": "retail",
    }
    view = contact_view(profile, NOW, MODEL)
    assert view == {
        "contact_id": "c1",
        "email": "a@example.com",
        "score": 40,
        "fit_score": 10,
        "industry": "retail",
    }


def test_sales_outcomes_map_to_lifecycle_stages() -> None:
    assert target_stage("accepted", "mql", MODEL) == "sql"
    assert target_stage("won", "sql", MODEL) == "customer"
    assert target_stage("rejected", "mql", MODEL) == "lead"
    assert target_stage("lost", "opportunity", MODEL) == "opportunity"


def test_a_webhook_compiles_with_a_dead_letter_that_continues_the_journey() -> None:
    import json

    from leadflow.journeys import compile_journey
    from leadflow.journeys.model import parse_journey

    journey = parse_journey(
        {
            "id": "crm",
            "name": "CRM",
            "entry": {"event": "trial_started"},
            "steps": [
                {
                    "webhook": {
                        "url": "https://crm.example.com/h?k=1",
                        "secret": "crm",
                        "include_handoff": True,
                    }
                },
                {"update_contact": {"add_tags": ["synced"]}},
            ],
        },
        "crm.yaml",
    )
    states = json.loads(compile_journey(journey))["States"]
    webhook = states["Webhook: crm.example.com"]
    assert webhook["Parameters"]["Payload"]["step"]["include_handoff"] is True
    catch = webhook["Catch"][0]
    assert catch["ErrorEquals"] == ["WebhookFailed", "WebhookRejected"]
    dead_letter = states[catch["Next"]]
    assert catch["Next"] == "Dead-letter: crm.example.com"
    assert dead_letter["Parameters"]["Payload"]["action"] == "dead_letter"
    assert dead_letter["Parameters"]["Payload"]["failure.$"] == catch["ResultPath"]
    assert dead_letter["Next"] == webhook["Next"] == "Update contact: tag synced"
