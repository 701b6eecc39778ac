"""The Alertmanager source: webhook payload version 4, the shared fixtures and case C19."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from compiler.router import fingerprint
from runtime.alerts import FIRING, RESOLVED
from runtime.sources import ALERTS, Inbound, Rejected, normalise

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
UTC = datetime.UTC

# Case C19 as published: per-alert status, Go's zero endsAt, nanoseconds, QuoteMeta'd receiver.
C19 = {
    "version": "4",
    "groupKey": '{}/{team="db"}:{alertname="DiskFull"}',
    "truncatedAlerts": 2,
    "status": "firing",
    "receiver": "team\\.db",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "team": "db"},
    "commonAnnotations": {},
    "externalURL": "http://am.example.invalid:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "team": "db", "instance": "db-1"},
            "annotations": {"summary": "disk 91% full"},
            "startsAt": "2024-03-08T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "aaaaaaaaaaaaaaaa",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DiskFull", "team": "db", "instance": "db-2"},
            "annotations": {},
            "startsAt": "2024-03-08T09:00:00Z",
            "endsAt": "2024-03-08T10:05:00Z",
            "generatorURL": "",
            "fingerprint": "bbbbbbbbbbbbbbbb",
        },
    ],
}


def run(document: object) -> object:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return normalise("alertmanager", Inbound(body=body, headers={"content-type": "application/json"}), None)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_c19_status_comes_from_each_alert() -> None:
    outcome = run(C19)
    assert outcome.kind == ALERTS
    assert [alert.status for alert in outcome.alerts] == [FIRING, RESOLVED]
    assert [alert.labels["instance"] for alert in outcome.alerts] == ["db-1", "db-2"]


def test_c19_go_zero_end_is_none() -> None:
    firing, resolved = run(C19).alerts
    assert firing.ends_at is None
    assert resolved.ends_at == datetime.datetime(2024, 3, 8, 10, 5, tzinfo=UTC)


def test_c19_nanoseconds_are_cut_to_microseconds() -> None:
    firing, resolved = run(C19).alerts
    assert firing.starts_at == datetime.datetime(2024, 3, 8, 10, 0, 0, 123456, tzinfo=UTC)
    assert resolved.starts_at == datetime.datetime(2024, 3, 8, 9, 0, tzinfo=UTC)


def test_c19_receiver_is_unquoted_and_raw_kept() -> None:
    outcome = run(C19)
    assert outcome.details["receiver"] == "team.db"
    assert outcome.details["receiver_raw"] == "team\\.db"
    assert outcome.alerts[0].details["receiver"] == "team.db"
    assert outcome.alerts[0].details["receiver_raw"] == "team\\.db"


def test_c19_fingerprints_come_from_payload() -> None:
    assert [alert.fingerprint for alert in run(C19).alerts] == ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]


def test_c19_truncated_alerts_recorded_not_resolved() -> None:
    outcome = run(C19)
    assert outcome.details["truncated_alerts"] == 2
    assert outcome.details["group_key"] == '{}/{team="db"}:{alertname="DiskFull"}'
    assert len(outcome.alerts) == 2
    assert "left out 2 more" in outcome.note


def test_fingerprint_computed_when_absent_or_malformed() -> None:
    document = json.loads(json.dumps(C19))
    del document["alerts"][0]["fingerprint"]
    document["alerts"][1]["fingerprint"] = "not-hex-at-all!!"
    first, second = run(document).alerts
    assert first.fingerprint == fingerprint({"alertname": "DiskFull", "team": "db", "instance": "db-1"})
    assert second.fingerprint == fingerprint({"alertname": "DiskFull", "team": "db", "instance": "db-2"})


def test_upper_case_fingerprint_is_lowered() -> None:
    document = json.loads(json.dumps(C19))
    document["alerts"][0]["fingerprint"] = "ABCDEF0123456789"
    assert run(document).alerts[0].fingerprint == "abcdef0123456789"


def test_firing_alert_future_end_kept_as_expected_end() -> None:
    document = json.loads(json.dumps(C19))
    document["alerts"][0]["endsAt"] = "2024-03-08T10:04:00+01:00"
    firing = run(document).alerts[0]
    assert firing.ends_at is None
    assert firing.details["expected_end"] == "2024-03-08T09:04:00Z"


def test_fixture_two_firing_alerts() -> None:
    outcome = run(fixture("firing-two-alerts.json"))
    assert [alert.fingerprint for alert in outcome.alerts] == ["1b9ae21d2a813e82", "ce3bf5da5cbba24b"]
    first = outcome.alerts[0]
    assert first.name == "HighErrorRate"
    assert first.source == "alertmanager"
    assert first.starts_at == datetime.datetime(2024, 5, 14, 9, 21, 7, 123000, tzinfo=UTC)
    assert first.source_severity == "critical"
    assert first.generator_url.endswith("%3E+0.05&g0.tab=1")
    assert first.annotations["summary"] == "5xx ratio above 5% on checkout-api-0.example.com:8080"
    assert outcome.details["receiver"] == "payments-webhook"
    assert outcome.details["group_labels"] == {"alertname": "HighErrorRate", "cluster": "prod-eu-1"}


def test_fixture_fingerprints_match_alertmanager_hash() -> None:
    # The samples' fingerprints were produced by a real Alertmanager, so the local hash must agree.
    for name in ("firing-two-alerts.json", "resolved-one-alert.json", "firing-newer-fields-v0.34.json"):
        for alert in run(fixture(name)).alerts:
            assert fingerprint(alert.labels) == alert.fingerprint, name


def test_fixture_resolved_alert() -> None:
    (alert,) = run(fixture("resolved-one-alert.json")).alerts
    assert alert.status == RESOLVED
    assert alert.ends_at == datetime.datetime(2024, 5, 14, 9, 48, 52, 123000, tzinfo=UTC)


def test_fixture_unicode_mixed_and_truncated() -> None:
    outcome = run(fixture("firing-unicode-empty-long.json"))
    firing, resolved = outcome.alerts
    assert outcome.details["receiver"] == "ops.primary"
    assert outcome.details["receiver_raw"] == "ops\\.primary"
    assert outcome.details["group_key"] == "{}:{}"
    assert outcome.details["truncated_alerts"] == 3
    assert outcome.details["group_labels"] == {}
    assert firing.labels["team"] == "データベース"
    assert firing.annotations["summary"] == "ディスク残量が4時間以内に枯渇する見込み 💾🔥"
    assert len(firing.annotations["description"]) > 5000
    assert "truncated" not in firing.details
    assert firing.starts_at == datetime.datetime(2024, 5, 14, 22, 3, 11, 500000, tzinfo=UTC)
    assert resolved.status == RESOLVED
    assert resolved.annotations == {}
    assert resolved.ends_at == datetime.datetime(2024, 5, 14, 22, 5, 41, 987654, tzinfo=UTC)
    assert "&g0.tab=1" in firing.generator_url


def test_fixture_newer_fields_are_ignored() -> None:
    outcome = run(fixture("firing-newer-fields-v0.34.json"))
    (alert,) = outcome.alerts
    assert alert.fingerprint == "57102826545e2583"
    assert outcome.details["receiver"] == "monitoring/batch-team/webhook"
    assert outcome.details["notification_reason"] == "new alerts added"
    assert "routeLabels" not in outcome.details


def test_unknown_keys_everywhere_are_ignored() -> None:
    document = json.loads(json.dumps(C19))
    document["futureKey"] = {"x": [1, 2]}
    document["alerts"][0]["futureField"] = None
    assert len(run(document).alerts) == 2


def test_quote_meta_undone_only_for_meta_characters() -> None:
    document = json.loads(json.dumps(C19))
    document["receiver"] = "a\\.b\\+c\\\\d\\e/f"
    assert run(document).details["receiver"] == "a.b+c\\d\\e/f"


def test_empty_alert_list_gives_no_alerts() -> None:
    document = json.loads(json.dumps(C19))
    document["alerts"] = []
    assert run(document).alerts == []


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"version": "3"}, 422, "`version` must be '4', not \"3\""),
        ({"version": "1"}, 422, "/hooks/grafana"),
        ({"version": None}, 422, "not missing"),
        ({"alerts": {"a": 1}}, 400, "`alerts` must be an array"),
        ({"truncatedAlerts": -1}, 400, "`truncatedAlerts` must be a whole number"),
        ({"receiver": 5}, 400, "`receiver` must be a string"),
    ],
)
def test_malformed_group_is_rejected(change: dict, status: int, fragment: str) -> None:
    document = {**C19, **change}
    with pytest.raises(Rejected) as caught:
        run(document)
    assert caught.value.status == status
    assert fragment in caught.value.reason


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("status", "pending", '`alerts[1].status` must be "firing" or "resolved", not "pending"'),
        ("labels", None, "`alerts[1].labels` is missing"),
        ("labels", ["a"], "`alerts[1].labels` must be a JSON object of strings"),
        ("startsAt", "yesterday", '`alerts[1].startsAt` is not an RFC 3339 timestamp: "yesterday"'),
        ("endsAt", 17, "`alerts[1].endsAt` must be a timestamp string, not the number 17"),
        ("generatorURL", [], "`alerts[1].generatorURL` must be a string"),
    ],
)
def test_malformed_alert_names_the_field(field: str, value: object, fragment: str) -> None:
    document = json.loads(json.dumps(C19))
    document["alerts"][1][field] = value
    with pytest.raises(Rejected) as caught:
        run(document)
    assert caught.value.status == 400
    assert fragment in caught.value.reason


def test_body_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        run([C19])
    assert caught.value.status == 400
    assert "`body` must be a JSON object, not an array" in caught.value.reason


def test_form_body_is_unsupported_media_type() -> None:
    inbound = Inbound(body=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    with pytest.raises(Rejected) as caught:
        normalise("alertmanager", inbound, None)
    assert caught.value.status == 415


def test_label_values_are_stringified() -> None:
    document = json.loads(json.dumps(C19))
    document["alerts"][0]["labels"] = {"alertname": "X", "n": 3, "f": 2.5, "ok": True, "gone": None, "empty": ""}
    alert = run(document).alerts[0]
    assert alert.labels == {"alertname": "X", "n": "3", "f": "2.5", "ok": "true"}
