"""Custom sources: `source NAME { map { ... } resolved when ... }` on arbitrary JSON bodies."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from compiler.api import check_path, check_text
from compiler.router import fingerprint
from runtime.alerts import FIRING, RESOLVED, identity_fingerprint
from runtime.sources import ALERTS, MAX_VALUE_BYTES, Inbound, Rejected, authenticate, normalise

REPO = Path(__file__).resolve().parents[2]
UTC = datetime.UTC

RULES = """
team ops { webhook "https://hooks.example.com/o" }
route { receiver ops }
source shop {
  auth bearer secret("SHOP_TOKEN")
  map {
    labels = body.tags
    annotations = body.notes
    label.alertname = body.check
    labels.host = body.host
    label.count = body.count
    label.flag = body.flag
    label.kind = "shop"
    annotation.summary = body.text
    alert.fingerprint = body.id
    alert.starts_at = body.at
    alert.status = body.state
  }
  resolved when body.state == "ok"
}
source named {
  map {
    alert.name = body.title
    alert.source = body.origin
    label.team = body.team
  }
}
source bare { auth none }
"""


@pytest.fixture(scope="module")
def ruleset() -> object:
    return check_text(RULES, "custom.irules").ruleset()


@pytest.fixture(scope="module")
def production() -> object:
    return check_path(REPO / "examples" / "production", "production").ruleset()


def run(source: str, document: object, ruleset: object) -> object:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return normalise(source, Inbound(body=body, headers={"content-type": "application/json"}), ruleset)


def test_production_ci_webhook_firing(production: object) -> None:
    body = {
        "check_name": "unit-tests",
        "level": "warning",
        "runner": {"region": "eu-1"},
        "message": "3 failed",
        "status": "failed",
    }
    outcome = run("ci-webhook", body, production)
    assert outcome.kind == ALERTS
    (alert,) = outcome.alerts
    assert alert.status == FIRING
    assert alert.name == "unit-tests"
    assert alert.source == "ci-webhook"
    assert alert.labels == {"alertname": "unit-tests", "severity": "warning", "service": "ci", "cluster": "eu-1"}
    assert alert.annotations == {"summary": "3 failed"}
    assert alert.fingerprint == fingerprint(alert.labels)


def test_production_ci_webhook_resolved_when_passed(production: object) -> None:
    body = {"check_name": "unit-tests", "level": "warning", "runner": {"region": "eu-1"}, "message": "ok", "status": "passed"}
    (firing,) = run("ci-webhook", {**body, "status": "failed"}, production).alerts
    (resolved,) = run("ci-webhook", body, production).alerts
    assert resolved.status == RESOLVED
    assert resolved.fingerprint == firing.fingerprint


def test_production_ci_webhook_missing_paths_left_out(production: object) -> None:
    (alert,) = run("ci-webhook", {"check_name": "lint"}, production).alerts
    assert alert.labels == {"alertname": "lint", "service": "ci"}
    assert alert.annotations == {}
    assert alert.status == FIRING


def test_production_ci_webhook_hmac_round_trip(production: object) -> None:
    body = json.dumps({"check_name": "lint", "status": "failed"}).encode()
    signature = "sha256=" + hmac.new(b"ci-secret", body, hashlib.sha256).hexdigest()
    inbound = Inbound(body=body, headers={"x-signature-256": signature})
    authenticate("ci-webhook", inbound, production, {"CI_WEBHOOK_SECRET": "ci-secret"}.get, now=datetime.datetime.now(UTC))
    assert normalise("ci-webhook", inbound, production).alerts[0].name == "lint"


def test_all_mapping_targets(ruleset: object) -> None:
    body = {
        "tags": {"env": "prod", "host": "overridden", "weight": 1.5},
        "notes": {"runbook": "https://runbooks.example.com/x"},
        "check": "checkout-slow",
        "host": "web-1",
        "count": 7,
        "flag": False,
        "text": "p99 above 2s",
        "id": "order-42",
        "at": "2024-05-14T09:00:00+02:00",
        "state": "firing",
    }
    (alert,) = run("shop", body, ruleset).alerts
    assert alert.labels == {
        "env": "prod",
        "host": "web-1",
        "weight": "1.5",
        "alertname": "checkout-slow",
        "count": "7",
        "flag": "false",
        "kind": "shop",
    }
    assert alert.annotations == {"runbook": "https://runbooks.example.com/x", "summary": "p99 above 2s"}
    assert alert.fingerprint == identity_fingerprint("order-42")
    assert alert.starts_at == datetime.datetime(2024, 5, 14, 7, 0, tzinfo=UTC)
    assert alert.status == FIRING
    assert alert.name == "checkout-slow"


def test_hex_fingerprint_used_as_is(ruleset: object) -> None:
    (alert,) = run("shop", {"check": "x", "id": "0123456789ABCDEF"}, ruleset).alerts
    assert alert.fingerprint == "0123456789abcdef"


def test_resolved_when_wins_over_status(ruleset: object) -> None:
    (alert,) = run("shop", {"check": "x", "state": "ok"}, ruleset).alerts
    assert alert.status == RESOLVED


def test_status_mapping_any_case(ruleset: object) -> None:
    (alert,) = run("shop", {"check": "x", "state": "RESOLVED"}, ruleset).alerts
    assert alert.status == RESOLVED


def test_unknown_status_value_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", {"check": "x", "state": "pending"}, ruleset)
    assert caught.value.status == 400
    assert '`alert.status` gave "pending"' in caught.value.reason
    assert "resolved when" in caught.value.reason


def test_list_body_gives_several_alerts(ruleset: object) -> None:
    outcome = run("shop", [{"check": "a", "id": "1"}, {"check": "b", "id": "2", "state": "ok"}], ruleset)
    assert [(alert.name, alert.status) for alert in outcome.alerts] == [("a", FIRING), ("b", RESOLVED)]
    assert outcome.alerts[0].fingerprint != outcome.alerts[1].fingerprint


def test_empty_list_gives_no_alerts(ruleset: object) -> None:
    assert run("shop", [], ruleset).alerts == []


def test_list_item_not_an_object_names_index(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", [{"check": "a"}, 5], ruleset)
    assert caught.value.status == 400
    assert "`body[1]` must be a JSON object, not the number 5" in caught.value.reason


def test_scalar_body_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", "just text", ruleset)
    assert caught.value.status == 400
    assert "body must be a JSON object or an array of objects" in caught.value.reason


def test_whole_labels_must_be_object(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", {"check": "a", "tags": ["x"]}, ruleset)
    assert caught.value.status == 400
    assert "the mapping `labels` must give a JSON object for `body`" in caught.value.reason


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (1715677200, datetime.datetime(2024, 5, 14, 9, 0, tzinfo=UTC)),
        (1715677200500, datetime.datetime(2024, 5, 14, 9, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-14T09:00:00.306+0000", datetime.datetime(2024, 5, 14, 9, 0, 0, 306000, tzinfo=UTC)),
        (None, None),
    ],
)
def test_starts_at_forms(ruleset: object, at: object, expected: datetime.datetime | None) -> None:
    assert run("shop", {"check": "x", "at": at}, ruleset).alerts[0].starts_at == expected


@pytest.mark.parametrize("at", ["next tuesday", {"t": 1}, 10**30])
def test_bad_starts_at_is_rejected(ruleset: object, at: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", {"check": "x", "at": at}, ruleset)
    assert caught.value.status == 400
    assert "alert.starts_at" in caught.value.reason


def test_alert_name_and_source_mapping(ruleset: object) -> None:
    (alert,) = run("named", {"title": "Backup failed", "origin": "veeam", "team": "storage"}, ruleset).alerts
    assert alert.name == "Backup failed"
    assert alert.labels == {"alertname": "Backup failed", "team": "storage"}
    assert alert.source == "veeam"
    assert alert.details["received_by"] == "named"


def test_name_falls_back_to_source_name(ruleset: object) -> None:
    (alert,) = run("named", {"team": "storage"}, ruleset).alerts
    assert alert.name == "named"
    assert alert.source == "named"


def test_source_without_mappings(ruleset: object) -> None:
    (alert,) = run("bare", {"anything": 1}, ruleset).alerts
    assert alert.name == "bare"
    assert alert.labels == {"alertname": "bare"}


def test_unknown_source_is_not_found(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("nope", {}, ruleset)
    assert caught.value.status == 404
    assert "unknown source `nope`" in caught.value.reason


def test_long_values_are_capped_and_recorded(ruleset: object) -> None:
    long_text = "é" * MAX_VALUE_BYTES
    (alert,) = run("shop", {"check": "x", "text": long_text, "host": long_text}, ruleset).alerts
    assert len(alert.annotations["summary"].encode()) <= MAX_VALUE_BYTES
    assert alert.annotations["summary"].endswith("…")
    assert len(alert.labels["host"].encode()) <= MAX_VALUE_BYTES
    assert alert.details["truncated"] == {"annotation.summary": 2 * MAX_VALUE_BYTES, "label.host": 2 * MAX_VALUE_BYTES}


def test_nul_and_lone_surrogates_are_replaced(ruleset: object) -> None:
    body = b'{"check": "a\\u0000b", "host": "x\\ud800y", "tags": {"k\\u0000": "v"}}'
    outcome = run("shop", body, ruleset)
    (alert,) = outcome.alerts
    assert alert.labels["alertname"] == "a\ufffdb"
    assert alert.labels["host"] == "x\ufffdy"
    assert alert.labels["k\ufffd"] == "v"
    assert outcome.details["replaced_characters"] == 3
    assert alert.fingerprint == fingerprint(alert.labels)
