"""The Azure Monitor source: common alert schema, the legacy metric alert schema, fixtures and case C22."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import pytest

from runtime.alerts import FIRING, RESOLVED, identity_fingerprint
from runtime.sources import Inbound, Rejected, normalise

FIXTURES = Path(__file__).parent / "fixtures" / "azure"
UTC = datetime.UTC
ALERT_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement/alerts/11111111-1111-1111-1111-111111111111"

# Case C22, input A: common schema, resolved, `alertContext.properties: null`.
C22_A = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": ALERT_ID,
            "alertRule": "vm-cpu-high",
            "severity": "Sev3",
            "signalType": "Metric",
            "monitorCondition": "Resolved",
            "monitoringService": "Platform",
            "alertTargetIDs": [
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/vm-1"
            ],
            "configurationItems": ["vm-1"],
            "originAlertId": "PLACEHOLDER",
            "firedDateTime": "2019-03-22T13:58:24.3713213Z",
            "resolvedDateTime": "2019-03-22T14:03:16.2246313Z",
            "description": "",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {"properties": None, "conditionType": "SingleResourceMultipleMetricCriteria"},
        "customProperties": None,
    },
}
# Input D: the legacy metric alert schema.
C22_D = {
    "schemaId": "AzureMonitorMetricAlert",
    "data": {
        "version": "2.0",
        "properties": None,
        "status": "Activated",
        "context": {
            "timestamp": "2019-02-05T21:19:47.4688345Z",
            "id": "/subscriptions/.../metricAlerts/vm-cpu-high",
            "name": "vm-cpu-high",
            "severity": "3",
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "resourceName": "vm-1",
        },
    },
}


def input_b() -> dict:
    document = copy.deepcopy(C22_A)
    document["data"]["essentials"]["monitorCondition"] = "Fired"
    del document["data"]["essentials"]["resolvedDateTime"]
    return document


def input_c() -> dict:
    document = input_b()
    document["data"]["essentials"]["alertRule"] = None
    return document


def run(document: object) -> object:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return normalise("azure", Inbound(body=body, headers={"content-type": "application/json"}), None)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_c22_a_resolved_times() -> None:
    (alert,) = run(C22_A).alerts
    assert alert.status == RESOLVED
    assert alert.starts_at == datetime.datetime(2019, 3, 22, 13, 58, 24, 371321, tzinfo=UTC)
    assert alert.ends_at == datetime.datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC)


def test_c22_a_severity_and_labels() -> None:
    (alert,) = run(C22_A).alerts
    assert alert.source_severity == "info"
    assert alert.name == "vm-cpu-high"
    assert alert.labels["resource"] == "vm-1"
    assert alert.labels["resource_group"] == "rg-app"
    assert alert.labels["subscription"] == "00000000-0000-0000-0000-000000000000"
    assert alert.details["alert_id"] == ALERT_ID
    assert alert.annotations == {}


def test_c22_b_fires_and_shares_fingerprint_with_a() -> None:
    (resolved,) = run(C22_A).alerts
    (firing,) = run(input_b()).alerts
    assert firing.status == FIRING
    assert firing.ends_at is None
    assert firing.fingerprint == resolved.fingerprint == identity_fingerprint(ALERT_ID)


def test_c22_c_null_rule_falls_back() -> None:
    (alert,) = run(input_c()).alerts
    assert alert.name == "azure-monitor-alert"
    document = input_c()
    document["data"]["essentials"]["alertRuleID"] = (
        "/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/metricAlerts/rule-x"
    )
    (named,) = run(document).alerts
    assert named.name == "rule-x"


def test_c22_d_legacy_metric_alert() -> None:
    (alert,) = run(C22_D).alerts
    assert alert.status == FIRING
    assert alert.name == "vm-cpu-high"
    assert alert.source_severity == "info"
    assert alert.labels["resource"] == "vm-1"
    assert alert.starts_at == datetime.datetime(2019, 2, 5, 21, 19, 47, 468834, tzinfo=UTC)


def test_c22_d_legacy_resolved_shares_fingerprint() -> None:
    document = copy.deepcopy(C22_D)
    document["data"]["status"] = "Resolved"
    (resolved,) = run(document).alerts
    (firing,) = run(C22_D).alerts
    assert resolved.status == RESOLVED
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.ends_at == datetime.datetime(2019, 2, 5, 21, 19, 47, 468834, tzinfo=UTC)


def test_legacy_pascal_case_keys() -> None:
    document = {
        "SchemaId": "AzureMonitorMetricAlert",
        "Data": {"Status": "Activated", "Context": {"Name": "cpu", "Severity": "0"}},
    }
    (alert,) = run(document).alerts
    assert alert.name == "cpu"
    assert alert.source_severity == "critical"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("Sev0", "critical"),
        ("Sev1", "error"),
        ("Sev2", "warning"),
        ("Sev3", "info"),
        ("Sev4", "info"),
        ("Sev9", None),
        (None, None),
    ],
)
def test_severity_map(severity: str | None, expected: str | None) -> None:
    document = copy.deepcopy(C22_A)
    document["data"]["essentials"]["severity"] = severity
    assert run(document).alerts[0].source_severity == expected


def test_nulls_everywhere_are_accepted() -> None:
    document = copy.deepcopy(C22_A)
    essentials = document["data"]["essentials"]
    for key in ("alertRule", "severity", "signalType", "alertTargetIDs", "configurationItems", "description", "firedDateTime"):
        essentials[key] = None
    document["data"]["alertContext"] = None
    (alert,) = run(document).alerts
    assert alert.name == "azure-monitor-alert"
    assert alert.starts_at is None
    assert alert.labels == {"alertname": "azure-monitor-alert", "subscription": "00000000-0000-0000-0000-000000000000"}


def test_fixture_fired_and_resolved() -> None:
    (fired,) = run(fixture("common-metric-fired.json")).alerts
    (resolved,) = run(fixture("common-metric-resolved.json")).alerts
    assert fired.status == FIRING
    assert resolved.status == RESOLVED
    assert fired.fingerprint == resolved.fingerprint
    assert fired.source_severity == "error"
    assert fired.starts_at == datetime.datetime(2024, 5, 14, 9, 21, 40, 123456, tzinfo=UTC)
    assert resolved.ends_at == datetime.datetime(2024, 5, 14, 9, 41, 12, 765432, tzinfo=UTC)
    assert fired.labels == {
        "alertname": "vm-checkout-cpu-high",
        "resource": "vm-checkout-01",
        "resource_group": "rg-payments-prod",
        "subscription": "00000000-0000-0000-0000-000000000000",
        "dimension_ResourceId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "team": "payments",
        "runbook": "https://runbooks.example.com/payments/cpu",
    }
    assert fired.annotations == {"description": "CPU above 90% on checkout VMs"}
    assert fired.generator_url.startswith("https://portal.azure.com/")
    assert fired.details["criteria"] == [
        {
            "metric": "Percentage CPU",
            "namespace": "Microsoft.Compute/virtualMachines",
            "operator": "GreaterThan",
            "threshold": "90",
            "aggregation": "Average",
            "value": 97.31,
        }
    ]


def test_fixture_dynamic_unicode() -> None:
    (alert,) = run(fixture("common-metric-dynamic-unicode.json")).alerts
    assert alert.name == "storage-egress-anomaly ✨"
    assert alert.source_severity == "info"
    assert alert.starts_at == datetime.datetime(2024, 5, 14, 23, 59, 59, 999999, tzinfo=UTC)
    assert alert.labels["resource"] == "starchiveexample"
    assert alert.labels["dimension_Authentication"] == "SAS"
    assert "alert_rule_id" not in alert.details
    assert alert.annotations["description"].startswith("Storage egress anomaly on the archive account — 転送量")


def test_custom_properties_never_replace_derived_labels() -> None:
    document = copy.deepcopy(C22_A)
    document["data"]["customProperties"] = {"resource": "spoofed", "team": "db", "count": 3}
    (alert,) = run(document).alerts
    assert alert.labels["resource"] == "vm-1"
    assert alert.labels["team"] == "db"
    assert alert.labels["count"] == "3"


@pytest.mark.parametrize(
    ("document", "status", "fragment"),
    [
        (
            {"schemaId": "Microsoft.Insights/activityLogs", "data": {}},
            422,
            '`schemaId` "Microsoft.Insights/activityLogs" is neither',
        ),
        ({"data": {}}, 422, "`schemaId` is null"),
        ({"schemaId": "azureMonitorCommonAlertSchema", "data": None}, 400, "`data` must be a JSON object"),
        (
            {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": []}},
            400,
            "`data.essentials` must be a JSON object",
        ),
    ],
)
def test_unknown_or_malformed_is_rejected(document: dict, status: int, fragment: str) -> None:
    with pytest.raises(Rejected) as caught:
        run(document)
    assert caught.value.status == status
    assert fragment in caught.value.reason


def test_bad_monitor_condition_names_the_field() -> None:
    document = copy.deepcopy(C22_A)
    document["data"]["essentials"]["monitorCondition"] = "Maybe"
    with pytest.raises(Rejected) as caught:
        run(document)
    assert caught.value.status == 400
    assert '`data.essentials.monitorCondition` must be "Fired" or "Resolved", not "Maybe"' in caught.value.reason


def test_missing_alert_id_falls_back_to_origin() -> None:
    document = copy.deepcopy(C22_A)
    del document["data"]["essentials"]["alertId"]
    assert run(document).alerts[0].fingerprint == identity_fingerprint("PLACEHOLDER")
    document["data"]["essentials"]["originAlertId"] = None
    with pytest.raises(Rejected) as caught:
        run(document)
    assert "`data.essentials.alertId` is missing" in caught.value.reason
