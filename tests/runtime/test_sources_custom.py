"""Custom sources: `source NAME { map { ... } resolved when ... }` on arbitrary JSON bodies."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from compiler.api import check_path, check_text
from compiler.router import fingerprint
from runtime.alerts import FIRING, RESOLVED, identity_fingerprint
from runtime.daemon.service import Daemon, DaemonConfig
from runtime.sources import ALERTS, MAX_VALUE_BYTES, Inbound, Rejected, authenticate, normalise
from tests.runtime.daemon_process import DaemonProcess, WebhookSigner
from tests.runtime.test_daemon_hooks import daemon_config, running

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
source derived {
  auth none
  map {
    label.alertname = "DiskFull"
    label.failed = body.state == "failed"
    label.zone = body["k8s.zone"]
    annotation.hosts = [body.primary, body.backup]
  }
}
"""


@pytest.fixture(scope="module")
def ruleset() -> object:
    return check_text(RULES, "custom.irules").ruleset()


@pytest.fixture(scope="module")
def production() -> object:
    return check_path(REPO / "examples" / "production", "production").ruleset()


def shop(**fields: object) -> dict[str, object]:
    """Return a body that gives every path `source shop` requires, with `fields` added or replaced."""
    return {"tags": {"env": "prod"}, "check": "x", "host": "web-1", "count": 7, "flag": False, **fields}


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


def test_production_ci_webhook_missing_annotation_left_out(production: object) -> None:
    body = {"check_name": "lint", "level": "warning", "runner": {"region": "eu-1"}}
    (alert,) = run("ci-webhook", body, production).alerts
    assert alert.labels == {"alertname": "lint", "severity": "warning", "service": "ci", "cluster": "eu-1"}
    assert alert.annotations == {}
    assert alert.status == FIRING


def test_production_ci_webhook_null_annotation_left_out(production: object) -> None:
    body = {"check_name": "lint", "level": "warning", "runner": {"region": "eu-1"}, "message": None}
    (alert,) = run("ci-webhook", body, production).alerts
    assert alert.annotations == {}


def test_production_ci_webhook_missing_name_is_rejected(production: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("ci-webhook", {"level": "warning", "status": "failed"}, production)
    assert caught.value.status == 422
    assert caught.value.reason == (
        "the mapping `label.alertname` needs `body.check_name`, which is missing; "
        "the mapping `label.cluster` needs `body.runner.region`, but `body.runner` is missing"
    )


def test_production_ci_webhook_wrong_kinds_are_rejected(production: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("ci-webhook", {"check_name": 42, "level": ["x"], "runner": "eu"}, production)
    assert caught.value.status == 422
    assert caught.value.reason == (
        "the mapping `label.severity` needs `body.level` to be a string, number or boolean, not an array; "
        'the mapping `label.cluster` needs `body.runner.region`, but `body.runner` is the string "eu"'
    )


def test_production_ci_webhook_numbers_become_text(production: object) -> None:
    body = {"check_name": 42, "level": True, "runner": {"region": 1.5}}
    (alert,) = run("ci-webhook", body, production).alerts
    assert alert.name == "42"
    assert alert.labels == {"alertname": "42", "severity": "true", "service": "ci", "cluster": "1.5"}


@pytest.mark.parametrize(
    ("level", "reason"),
    [
        (None, "the mapping `label.severity` needs `body.level`, which is null"),
        ("", "the mapping `label.severity` needs `body.level`, which is empty"),
        ({"name": "x"}, "the mapping `label.severity` needs `body.level` to be a string, number or boolean, not an object"),
    ],
)
def test_production_ci_webhook_label_without_value(production: object, level: object, reason: str) -> None:
    body = {"check_name": "lint", "level": level, "runner": {"region": "eu-1"}}
    with pytest.raises(Rejected) as caught:
        run("ci-webhook", body, production)
    assert caught.value.status == 422
    assert caught.value.reason == reason


def test_production_ci_webhook_annotation_object_is_rejected(production: object) -> None:
    body = {"check_name": "lint", "level": "warning", "runner": {"region": "eu-1"}, "message": {"text": "3 failed"}}
    with pytest.raises(Rejected) as caught:
        run("ci-webhook", body, production)
    assert caught.value.status == 422
    assert caught.value.reason == (
        "the mapping `annotation.summary` needs `body.message` to be a string, number or boolean, not an object"
    )


def test_production_ci_webhook_hmac_round_trip(production: object) -> None:
    body = json.dumps({"check_name": "lint", "level": "warning", "runner": {"region": "eu-1"}, "status": "failed"}).encode()
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


def test_optional_targets_absent_or_null(ruleset: object) -> None:
    body = shop(notes=None, text=None, id=None, at=None, state=None)
    (alert,) = run("shop", body, ruleset).alerts
    assert alert.annotations == {}
    assert alert.fingerprint == fingerprint(alert.labels)
    assert alert.starts_at is None
    assert alert.status == FIRING


def test_hex_fingerprint_used_as_is(ruleset: object) -> None:
    (alert,) = run("shop", shop(id="0123456789ABCDEF"), ruleset).alerts
    assert alert.fingerprint == "0123456789abcdef"


def test_number_fingerprint_is_hashed_as_text(ruleset: object) -> None:
    (alert,) = run("shop", shop(id=42), ruleset).alerts
    assert alert.fingerprint == identity_fingerprint("42")


def test_resolved_when_wins_over_status(ruleset: object) -> None:
    (alert,) = run("shop", shop(state="ok"), ruleset).alerts
    assert alert.status == RESOLVED


def test_status_mapping_any_case(ruleset: object) -> None:
    (alert,) = run("shop", shop(state="RESOLVED"), ruleset).alerts
    assert alert.status == RESOLVED


def test_unknown_status_value_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(state="pending"), ruleset)
    assert caught.value.status == 400
    assert '`alert.status` gave "pending"' in caught.value.reason
    assert "resolved when" in caught.value.reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"state": ["firing"]}, "the mapping `alert.status` needs `body.state` to be a string, not an array"),
        ({"state": 1}, "the mapping `alert.status` needs `body.state` to be a string, not the number 1"),
        ({"at": True}, "the mapping `alert.starts_at` needs `body.at` to be a string or number, not a boolean"),
        ({"at": {"t": 1}}, "the mapping `alert.starts_at` needs `body.at` to be a string or number, not an object"),
        (
            {"id": {"order": 42}},
            "the mapping `alert.fingerprint` needs `body.id` to be a string, number or boolean, not an object",
        ),
    ],
)
def test_alert_field_of_wrong_kind_is_rejected(ruleset: object, fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(**fields), ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == reason


def test_list_body_gives_several_alerts(ruleset: object) -> None:
    outcome = run("shop", [shop(check="a", id="1"), shop(check="b", id="2", state="ok")], ruleset)
    assert [(alert.name, alert.status) for alert in outcome.alerts] == [("a", FIRING), ("b", RESOLVED)]
    assert outcome.alerts[0].fingerprint != outcome.alerts[1].fingerprint


def test_list_item_without_label_names_index(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", [shop(check="a"), shop(check=None)], ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == "the mapping `label.alertname` needs `body[1].check`, which is null"


def test_empty_list_gives_no_alerts(ruleset: object) -> None:
    assert run("shop", [], ruleset).alerts == []


def test_list_item_not_an_object_names_index(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", [shop(check="a"), 5], ruleset)
    assert caught.value.status == 400
    assert "`body[1]` must be a JSON object, not the number 5" in caught.value.reason


def test_scalar_body_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", "just text", ruleset)
    assert caught.value.status == 400
    assert "body must be a JSON object or an array of objects" in caught.value.reason


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        (["x"], "the mapping `labels` needs `body.tags` to be an object, not an array"),
        (None, "the mapping `labels` needs `body.tags`, which is null"),
        (
            {"env": {"name": "prod"}},
            "the mapping `labels` needs `body.tags.env` to be a string, number or boolean, not an object",
        ),
        ({"k8s.zone": [1]}, 'the mapping `labels` needs `body.tags["k8s.zone"]` to be a string, number or boolean, not an array'),
    ],
)
def test_whole_labels_without_usable_object(ruleset: object, tags: object, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(tags=tags), ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == reason


def test_whole_labels_missing_is_rejected(ruleset: object) -> None:
    body = shop()
    del body["tags"]
    with pytest.raises(Rejected) as caught:
        run("shop", body, ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == "the mapping `labels` needs `body.tags`, which is missing"


def test_whole_labels_leave_out_null_entries(ruleset: object) -> None:
    (alert,) = run("shop", shop(tags={"env": "prod", "zone": None, "rack": "", "replicas": 3}), ruleset).alerts
    assert alert.labels["env"] == "prod"
    assert alert.labels["replicas"] == "3"
    assert "zone" not in alert.labels
    assert "rack" not in alert.labels


def test_whole_annotations_must_be_object(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(notes=["see runbook"]), ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == "the mapping `annotations` needs `body.notes` to be an object, not an array"


def test_whole_annotations_entry_of_wrong_kind(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(notes={"runbook": {"url": "https://runbooks.example.com/x"}}), ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == (
        "the mapping `annotations` needs `body.notes.runbook` to be a string, number or boolean, not an object"
    )


def test_all_problems_of_an_item_are_named(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(check=None, host=[], text={}), ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == (
        "the mapping `label.alertname` needs `body.check`, which is null; "
        "the mapping `labels.host` needs `body.host` to be a string, number or boolean, not an array; "
        "the mapping `annotation.summary` needs `body.text` to be a string, number or boolean, not an object"
    )


def test_other_expressions_are_not_checked(ruleset: object) -> None:
    (alert,) = run("derived", {"k8s.zone": "eu-1a", "primary": {"host": "db-1"}}, ruleset).alerts
    assert alert.labels == {"alertname": "DiskFull", "failed": "false", "zone": "eu-1a"}
    assert alert.annotations == {"hosts": '[{"host":"db-1"},null]'}


def test_quoted_path_part_is_named_as_written(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("derived", {}, ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == 'the mapping `label.zone` needs `body["k8s.zone"]`, which is missing'


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
    assert run("shop", shop(at=at), ruleset).alerts[0].starts_at == expected


@pytest.mark.parametrize("at", ["next tuesday", 10**30])
def test_bad_starts_at_is_rejected(ruleset: object, at: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("shop", shop(at=at), ruleset)
    assert caught.value.status == 400
    assert "alert.starts_at" in caught.value.reason


def test_alert_name_and_source_mapping(ruleset: object) -> None:
    (alert,) = run("named", {"title": "Backup failed", "origin": "veeam", "team": "storage"}, ruleset).alerts
    assert alert.name == "Backup failed"
    assert alert.labels == {"alertname": "Backup failed", "team": "storage"}
    assert alert.source == "veeam"
    assert alert.details["received_by"] == "named"


def test_missing_alert_name_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("named", {"team": "storage"}, ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == "the mapping `alert.name` needs `body.title`, which is missing"


def test_missing_alert_source_keeps_declared_name(ruleset: object) -> None:
    (alert,) = run("named", {"title": "Backup failed", "team": "storage"}, ruleset).alerts
    assert alert.source == "named"
    assert "received_by" not in alert.details


def test_alert_source_of_wrong_kind_is_rejected(ruleset: object) -> None:
    with pytest.raises(Rejected) as caught:
        run("named", {"title": "Backup failed", "team": "storage", "origin": ["veeam"]}, ruleset)
    assert caught.value.status == 422
    assert caught.value.reason == "the mapping `alert.source` needs `body.origin` to be a string, number or boolean, not an array"


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
    (alert,) = run("shop", shop(text=long_text, host=long_text), ruleset).alerts
    assert len(alert.annotations["summary"].encode()) <= MAX_VALUE_BYTES
    assert alert.annotations["summary"].endswith("…")
    assert len(alert.labels["host"].encode()) <= MAX_VALUE_BYTES
    assert alert.details["truncated"] == {"annotation.summary": 2 * MAX_VALUE_BYTES, "label.host": 2 * MAX_VALUE_BYTES}


def test_nul_and_lone_surrogates_are_replaced(ruleset: object) -> None:
    body = b'{"check": "a\\u0000b", "host": "x\\ud800y", "tags": {"k\\u0000": "v"}, "count": 1, "flag": true}'
    outcome = run("shop", body, ruleset)
    (alert,) = outcome.alerts
    assert alert.labels["alertname"] == "a\ufffdb"
    assert alert.labels["host"] == "x\ufffdy"
    assert alert.labels["k\ufffd"] == "v"
    assert outcome.details["replaced_characters"] == 3
    assert alert.fingerprint == fingerprint(alert.labels)


# ---------------------------------------------------------------- over HTTP, in process

HTTP_RULES = """
receiver ops { webhook "http://127.0.0.1:9/ops" }
route { receiver ops }
source ci {
  path "/webhooks/ci"
  auth none
  map { label.alertname = body.check }
}
source plain {
  auth none
  map { label.alertname = body.check }
}
"""
JSON = {"content-type": "application/json"}
Check = Callable[[httpx.AsyncClient, Daemon], Awaitable[None]]
UNKNOWN_PATH_REASON = (
    "no source receives at /webhooks/nosuch: built-in sources receive at /hooks/<source>, "
    "and so do custom sources unless they declare a `path` of their own"
)


@pytest.fixture
def http_config(tmp_path: Path) -> DaemonConfig:
    return daemon_config(tmp_path, HTTP_RULES, {})


def rows(config: DaemonConfig, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(config.database_url.removeprefix("sqlite:///")) as connection:
        return connection.execute(query).fetchall()


def run_app(config: DaemonConfig, check: Check, root_path: str = "") -> None:
    """Start an in-process daemon on `config` and run `check` against its app, under `root_path` if set."""

    async def main() -> None:
        async with running(config, root_path) as (client, daemon):
            await check(client, daemon)

    anyio.run(main)


@pytest.mark.parametrize("root_path", ["", "/irules"], ids=["own-app", "under-root-path"])
def test_source_with_path_receives_only_there(http_config: DaemonConfig, root_path: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        at_own_path = await client.post(f"{root_path}/webhooks/ci", content=b'{"check": "Lint"}', headers=JSON)
        at_hooks = await client.post(f"{root_path}/hooks/ci", content=b'{"check": "Lint"}', headers=JSON)
        without_path = await client.post(f"{root_path}/hooks/plain", content=b'{"check": "Lint"}', headers=JSON)

        assert at_own_path.status_code == 202, at_own_path.text
        assert at_hooks.status_code == 404
        assert at_hooks.json() == {"error": "source `ci` receives at /webhooks/ci, not at /hooks/ci", "dead_letter": 1}
        assert without_path.status_code == 202, without_path.text

    run_app(http_config, check, root_path)
    assert rows(http_config, "SELECT source FROM payloads ORDER BY id") == [("ci",), ("plain",)]
    assert rows(http_config, "SELECT source, status FROM dead_letters") == [("ci", 404)]


def test_unknown_path_names_where_sources_receive(http_config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/webhooks/nosuch", content=b'{"check": "Lint"}', headers=JSON)

        assert response.status_code == 404
        assert response.json() == {"error": UNKNOWN_PATH_REASON, "dead_letter": 1}

    run_app(http_config, check)
    assert rows(http_config, "SELECT source, status, reason FROM dead_letters") == [
        ("path:/webhooks/nosuch", 404, UNKNOWN_PATH_REASON)
    ]


def test_unmappable_body_is_dead_letter(http_config: DaemonConfig) -> None:
    reason = "the mapping `label.alertname` needs `body.check`, which is null"

    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/webhooks/ci", content=b'{"check": null}', headers=JSON)

        assert response.status_code == 422
        assert response.json() == {"error": reason, "dead_letter": 1}

    run_app(http_config, check)
    assert rows(http_config, "SELECT source, status, reason FROM dead_letters") == [("ci", 422, reason)]
    assert rows(http_config, "SELECT count(*) FROM payloads") == [(0,)]


# ---------------------------------------------------------------- over HTTP, a daemon running examples/production

PRODUCTION = REPO / "examples" / "production"
STORED_TABLES = ("payloads", "alert_events", "alerts", "incidents")


@pytest.fixture(scope="module")
def production_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, WebhookSigner]]:
    """Run `irules daemon` on a copy of examples/production, sending nothing and running no runbook."""
    base = tmp_path_factory.mktemp("custom-sources")
    rules = base / "rules"
    shutil.copytree(PRODUCTION, rules, ignore=shutil.ignore_patterns("build"))
    signer = WebhookSigner(check_path(rules, "production").ruleset().sources, base / "secrets")
    arguments = ["--no-notify", "--no-runbooks"]
    with DaemonProcess(
        rules, base / "state", environment="production", secrets_dir=signer.folder, extra_args=arguments
    ) as daemon:
        yield daemon, signer


def stored_rows(daemon: DaemonProcess) -> dict[str, int]:
    """Count the rows that a payload or an incident writes, read-only beside the running daemon."""
    connection = sqlite3.connect(f"file:{daemon.state / 'irules.db'}?mode=ro", uri=True)
    try:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in STORED_TABLES}
    finally:
        connection.close()


def rejected_count(daemon: DaemonProcess) -> float:
    prefix = 'irules_payloads_total{outcome="rejected",source="ci-webhook"} '
    lines = daemon.client.get("/metrics").text.splitlines()
    return next((float(line.removeprefix(prefix)) for line in lines if line.startswith(prefix)), 0.0)


def post_ci(daemon: DaemonProcess, signer: WebhookSigner, path: str, document: object) -> httpx.Response:
    body = json.dumps(document).encode()
    return daemon.post(path, body, signer.headers("ci-webhook", body))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            {"level": "warning", "status": "failed"},
            "the mapping `label.alertname` needs `body.check_name`, which is missing; "
            "the mapping `label.cluster` needs `body.runner.region`, but `body.runner` is missing",
        ),
        (
            {"check_name": 42, "level": ["x"], "runner": "eu"},
            "the mapping `label.severity` needs `body.level` to be a string, number or boolean, not an array; "
            'the mapping `label.cluster` needs `body.runner.region`, but `body.runner` is the string "eu"',
        ),
    ],
    ids=["no-check-name", "wrong-kinds"],
)
def test_production_unmappable_body_is_422(
    production_daemon: tuple[DaemonProcess, WebhookSigner], document: object, reason: str
) -> None:
    daemon, signer = production_daemon
    rows_before = stored_rows(daemon)
    rejected_before = rejected_count(daemon)

    response = post_ci(daemon, signer, "/webhooks/ci", document)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == reason
    number = response.json()["dead_letter"]
    (letter,) = [row for row in daemon.dead_letters() if row["id"] == number]
    assert (letter["source"], letter["status"], letter["reason"]) == ("ci-webhook", 422, reason)
    expected_line = f"source ci-webhook: request rejected with 422: {reason} (dead letter {number})"
    daemon.wait_for_log(lambda entry: entry["logger"] == "irules.http" and entry["message"] == expected_line, expected_line)
    assert rejected_count(daemon) == rejected_before + 1
    assert stored_rows(daemon) == rows_before


@pytest.mark.slow
def test_production_numbers_stored_as_text(production_daemon: tuple[DaemonProcess, WebhookSigner]) -> None:
    daemon, signer = production_daemon
    document = {"check_name": 42, "level": "warning", "runner": {"region": "eu-1"}, "status": "failed"}

    response = post_ci(daemon, signer, "/webhooks/ci", document)

    assert response.status_code == 202, response.text
    daemon.wait_until_applied()
    alerts = [alert for row in daemon.incidents() for alert in daemon.incident(row["id"])["alerts"] if alert["name"] == "42"]
    (alert,) = alerts
    assert alert["labels"] == {"alertname": "42", "severity": "warning", "service": "ci", "cluster": "eu-1"}
    assert alert["annotations"] == {}


@pytest.mark.slow
def test_production_hooks_path_is_404(production_daemon: tuple[DaemonProcess, WebhookSigner]) -> None:
    daemon, signer = production_daemon
    rows_before = stored_rows(daemon)
    document = {"check_name": "Lint", "level": "warning", "runner": {"region": "eu-1"}, "status": "failed"}

    response = post_ci(daemon, signer, "/hooks/ci-webhook", document)

    assert response.status_code == 404, response.text
    reason = "source `ci-webhook` receives at /webhooks/ci, not at /hooks/ci-webhook"
    assert response.json()["error"] == reason
    (letter,) = [row for row in daemon.dead_letters() if row["id"] == response.json()["dead_letter"]]
    assert (letter["source"], letter["status"], letter["reason"]) == ("ci-webhook", 404, reason)
    assert stored_rows(daemon) == rows_before


@pytest.mark.slow
def test_production_unknown_path_is_404(production_daemon: tuple[DaemonProcess, WebhookSigner]) -> None:
    daemon, _signer = production_daemon

    response = daemon.post("/webhooks/nosuch", b'{"check_name": "Lint"}')

    assert response.status_code == 404, response.text
    assert response.json()["error"] == UNKNOWN_PATH_REASON


@pytest.mark.parametrize("root_path", ["", "/irules"])
def test_wrong_method_at_source_path_gets_405(http_config: DaemonConfig, root_path: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: object) -> None:
        at_source = await client.get(f"{root_path}/webhooks/ci")
        elsewhere = await client.get(f"{root_path}/webhooks/nosuch")

        # As at /hooks/<source>: the path exists, so a GET gets 405 and the methods it takes.
        assert at_source.status_code == 405
        assert at_source.headers["allow"] == "POST, PUT"
        assert at_source.json() == {"error": f"Method Not Allowed: GET {root_path}/webhooks/ci"}
        assert elsewhere.status_code == 404

    run_app(http_config, check, root_path)
    assert rows(http_config, "SELECT count(*) FROM dead_letters") == [(0,)]
