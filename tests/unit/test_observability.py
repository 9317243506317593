"""Metrics ops can slice: skipped sends by reason, as CloudWatch EMF."""

from __future__ import annotations

import json

import pytest

from leadflow.observability import NAMESPACE, count_by, pii_hash


def test_count_by_emits_one_emf_document_with_the_dimension(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    count_by("SendsSkippedByReason", "reason", "unsubscribed")
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    emf = json.loads(line)
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert sorted(directive["Dimensions"][0]) == ["reason", "service"]
    assert directive["Metrics"] == [{"Name": "SendsSkippedByReason", "Unit": "Count"}]
    assert (emf["reason"], emf["service"], emf["SendsSkippedByReason"]) == ("unsubscribed", "leadflow", [1.0])


def test_pii_hash_is_stable_and_hides_the_address() -> None:
    assert pii_hash(" Ada@Example.com ") == pii_hash("ada@example.com")
    assert "ada" not in pii_hash("ada@example.com")
    assert len(pii_hash("ada@example.com")) == 12
