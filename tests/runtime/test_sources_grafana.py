"""The Grafana source: unified alerting webhook version 1 and the shared fixtures."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from runtime.alerts import FIRING, RESOLVED
from runtime.sources import Inbound, Rejected, normalise

FIXTURES = Path(__file__).parent / "fixtures" / "grafana"
UTC = datetime.UTC


def run(body: bytes) -> object:
    return normalise("grafana", Inbound(body=body, headers={"content-type": "application/json"}), None)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_firing_fixture_alerts() -> None:
    outcome = run(fixture("firing.json"))
    assert [alert.fingerprint for alert in outcome.alerts] == ["c6eadffa33fcdf37", "bc97ff14869b13e3"]
    first = outcome.alerts[0]
    assert first.status == FIRING
    assert first.name == "High memory usage"
    assert first.source == "grafana"
    assert first.starts_at == datetime.datetime(2024, 5, 14, 7, 21, 3, 157076, tzinfo=UTC)
    assert first.ends_at is None
    assert first.labels == {"alertname": "High memory usage", "grafana_folder": "Payments", "team": "payments", "zone": "eu-1"}


def test_grafana_extras_go_to_details() -> None:
    first = run(fixture("firing.json")).alerts[0]
    assert first.details["values"] == {"B": 93.41, "C": 1}
    assert first.details["value_string"].startswith("[ var='B' labels={zone=eu-1} value=93.41 ]")
    assert (
        first.details["dashboard_url"] == "https://grafana.example.com/d/pay-overview?from=1715667663157&orgId=1&to=1715671593412"
    )
    assert first.details["panel_url"].endswith("&viewPanel=4")
    assert first.details["silence_url"].startswith(
        "https://grafana.example.com/alerting/silence/new?alertmanager=grafana&matcher="
    )
    assert first.details["rule_uid"] == "bdm2x1qj7a8e8c"
    assert first.details["org_id"] == 1
    assert "dashboardURL" not in first.annotations
    assert set(first.annotations) == {"description", "runbook_url", "summary"}


def test_group_details() -> None:
    outcome = run(fixture("firing.json"))
    assert outcome.details["org_id"] == 1
    assert outcome.details["state"] == "alerting"
    assert outcome.details["receiver"] == "incident-daemon"
    assert outcome.details["truncated_alerts"] == 0


def test_resolved_fixture() -> None:
    outcome = run(fixture("resolved.json"))
    (alert,) = outcome.alerts
    assert alert.status == RESOLVED
    assert alert.fingerprint == "c6eadffa33fcdf37"
    assert alert.ends_at == datetime.datetime(2024, 5, 14, 7, 51, tzinfo=UTC)
    assert outcome.details["state"] == "ok"


def test_nodata_fixture_null_values_and_truncation() -> None:
    outcome = run(fixture("firing-nodata-unicode-truncated.json"))
    (alert,) = outcome.alerts
    assert alert.name == "DatasourceNoData"
    assert "values" not in alert.details
    assert "dashboard_url" not in alert.details
    assert "value_string" not in alert.details
    assert alert.labels["grafana_folder"] == "Plattform & Infra"
    assert alert.labels["rulename"] == "Kafka-Lag 📈 (Ü)"
    assert alert.annotations["summary"] == "Keine Daten seit 10 Minuten — データなし <b>bold?</b>"
    assert outcome.details["truncated_alerts"] == 7
    assert outcome.details["group_key"] == "{}:{}"


def test_alertmanager_version_is_rejected() -> None:
    document = json.loads(fixture("firing.json"))
    document["version"] = "4"
    with pytest.raises(Rejected) as caught:
        run(json.dumps(document).encode())
    assert caught.value.status == 422
    assert "/hooks/alertmanager" in caught.value.reason


def test_values_of_wrong_type_name_the_field() -> None:
    document = json.loads(fixture("firing.json"))
    document["alerts"][1]["values"] = [1, 2]
    with pytest.raises(Rejected) as caught:
        run(json.dumps(document).encode())
    assert caught.value.status == 400
    assert "`alerts[1].values` must be a JSON object" in caught.value.reason
