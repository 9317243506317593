"""Fast variants of the fault, hostile-input and access proofs (``make proof`` runs the full ones)."""

from __future__ import annotations

from tests.proof import access, faults, hostile


def test_faults_lose_nothing_and_double_nothing() -> None:
    result = faults.run(contacts=8, seed=11, verbose=False)
    assert result["injected_total"] > 0
    assert result["contacts_stored"] == 8
    assert result["lost"] == 0, result["lost_by_type"]
    assert result["duplicate_sends"] == 0
    assert result["wrong_score"] == 0
    assert result["wrong_consent"] == 0
    assert result["wrong_branch"] == 0
    assert result["replay_changed_scores"] == 0
    assert not any(result["dead_letter_queues_after"].values())
    assert result["executions_unexpected"] == []  # SUCCEEDED, or ABORTED by an exit on purpose
    assert result["missing_sends"] == []
    assert result["never_sent_stuck_claim"] == []
    assert result["rejected_sent"] == []
    assert result["rejected_not_reported"] == []
    assert result["rejected_not_alerted"] == 0
    assert result["outcomes_not_recorded"] == 0
    assert result["sales_handoffs_distinct"] == result["sales_handoffs_expected"]
    assert result["ok"], result


def test_hostile_input_is_refused_cleanly() -> None:
    result = hostile.run(examples=5, verbose=False)
    assert result["inputs"] > 300
    assert result["schemathesis_cases"] > 0
    assert result["stored_garbage"] == 0, result["examples"]
    assert result["foreign_redirects"] == 0, result["examples"]
    assert result["pixel_not_gif"] == 0, result["examples"]
    assert result["header_injection"] == 0
    assert result["reflected_script"] == 0
    assert result["server_errors"] == 0, result["examples"]
    abuse = result["abuse"]
    assert abuse["honeypot"]["same_answer"], abuse
    assert abuse["budget"]["emails"] <= 10, abuse
    assert abuse["ok"], abuse


def test_admin_routes_need_credentials_and_tokens_stay_with_their_contact() -> None:
    result = access.run(verbose=False)
    assert result["template_admin_not_iam"] == []
    assert result["template_public_with_auth"] == []
    assert result["admin_refused_403"] == result["admin_attempts"] > 0
    assert result["unauthorized_reads"] == 0
    assert result["pii_in_pages"] == 0
    assert result["cross_kind_accepted"] == []
    assert result["forged_accepted"] == []
    assert result["b_changed"] == []
    assert result["ok"], result
