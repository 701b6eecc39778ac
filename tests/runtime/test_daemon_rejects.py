"""Requests the daemon rejects: the status and reason, a log line, a dead letter and nothing half-stored. Then a replay after a fix."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from runtime.cli import app
from runtime.ingest import MAX_BODY_BYTES
from tests.runtime.daemon_process import DaemonProcess, fixture_bytes, hmac_signature

pytestmark = pytest.mark.slow

ALERTMANAGER_TOKEN = "alertmanager-token-for-tests"
DEPLOYS_SECRET = "deploys-secret-for-tests"

# `alert.status = body.state` is the mistake, because the deploy tool sends "broken" and "ok", not firing and resolved.
RULES = """receiver default {
  webhook "http://127.0.0.1:9/default"
}

route {
  receiver default
}

source alertmanager {
  auth bearer secret("ALERTMANAGER_WEBHOOK_TOKEN")
}

source cloudwatch {
  auth bearer secret("CLOUDWATCH_WEBHOOK_TOKEN")
}

source deploys {
  path "/webhooks/deploys"
  auth hmac secret("DEPLOYS_WEBHOOK_SECRET") prefix "sha256="
  map {
    label.alertname = body.name
    label.service = body.service
    alert.status = body.state
  }
}
"""
FIXED_RULES = RULES.replace("    alert.status = body.state\n  }\n", '  }\n  resolved when body.state == "ok"\n')
STORED_TABLES = ("payloads", "alert_events", "alerts", "incidents", "timeline")
CLI_ENVIRONMENT: dict[str, str | None] = {
    name: None for name in ("IRULES_STATE", "IRULES_DATABASE", "IRULES_DAEMON", "IRULES_API_TOKEN")
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    base = tmp_path_factory.mktemp("rejects")
    (base / "rules").mkdir()
    (base / "rules" / "rules.irules").write_text(RULES, encoding="utf-8")
    secrets = base / "secrets"
    secrets.mkdir()
    (secrets / "ALERTMANAGER_WEBHOOK_TOKEN").write_text(ALERTMANAGER_TOKEN, encoding="utf-8")
    (secrets / "CLOUDWATCH_WEBHOOK_TOKEN").write_text("cloudwatch-token-for-tests", encoding="utf-8")
    (secrets / "DEPLOYS_WEBHOOK_SECRET").write_text(DEPLOYS_SECRET, encoding="utf-8")
    with DaemonProcess(base / "rules", base / "state", secrets_dir=secrets) as process:
        yield process


def stored_rows(daemon: DaemonProcess) -> dict[str, int]:
    """Count the rows of every table a payload or an incident writes, read-only beside the running daemon."""
    connection = sqlite3.connect(f"file:{daemon.state / 'irules.db'}?mode=ro", uri=True)
    try:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in STORED_TABLES}
    finally:
        connection.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def deploy_event(state: str) -> bytes:
    return json.dumps({"name": "DeployFailed", "service": "api", "state": state}).encode()


def off_host_sns_notification() -> bytes:
    """Return a signed-looking SNS notification whose certificate URL is not on an SNS host, so nothing is fetched."""
    envelope = json.loads(fixture_bytes("cloudwatch/sns-alarm.json"))
    envelope["SigningCertURL"] = "https://127.0.0.1/SimpleNotificationService.pem"
    return json.dumps(envelope).encode()


def alertmanager_with_bad_second_alert() -> bytes:
    document = json.loads(fixture_bytes("alertmanager/firing-two-alerts.json"))
    document["alerts"][1]["status"] = "bogus"
    return json.dumps(document).encode()


@dataclass(frozen=True)
class Rejection:
    path: str
    source: str
    body: Callable[[], bytes]
    headers: dict[str, str]
    status: int
    reason: str
    dead_letter: bool = True


REJECTIONS = {
    "malformed JSON": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        lambda: b'{"version": "4", ',
        bearer(ALERTMANAGER_TOKEN),
        400,
        "body is not valid JSON",
    ),
    # The first alert is valid and must not be stored on its own.
    "wrong shape": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        alertmanager_with_bad_second_alert,
        bearer(ALERTMANAGER_TOKEN),
        400,
        '`alerts[1].status` must be "firing" or "resolved"',
    ),
    "unknown format": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        lambda: fixture_bytes("grafana/firing.json"),
        bearer(ALERTMANAGER_TOKEN),
        422,
        "`version` must be '4'",
    ),
    "unknown source": Rejection("/hooks/nagios", "nagios", lambda: b'{"host": "db-1"}', {}, 404, "unknown source `nagios`"),
    "unknown path": Rejection(
        "/webhooks/nosuch",
        "path:/webhooks/nosuch",
        lambda: b'{"host": "db-1"}',
        {},
        404,
        "no source receives at /webhooks/nosuch",
    ),
    "missing auth": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        lambda: fixture_bytes("alertmanager/firing-two-alerts.json"),
        {},
        401,
        "missing Authorization header",
    ),
    "wrong bearer": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        lambda: fixture_bytes("alertmanager/firing-two-alerts.json"),
        bearer("not-the-token"),
        403,
        "invalid bearer token",
    ),
    "wrong HMAC": Rejection(
        "/webhooks/deploys",
        "deploys",
        lambda: deploy_event("broken"),
        {"X-Signature-256": hmac_signature("not-the-secret", deploy_event("broken"))},
        403,
        "does not match the HMAC-SHA256 of the body",
    ),
    "SNS certificate off SNS hosts": Rejection(
        "/hooks/cloudwatch",
        "cloudwatch",
        off_host_sns_notification,
        {},
        403,
        "is not an https URL on an sns.<region>.amazonaws.com host",
    ),
    "empty body": Rejection(
        "/hooks/alertmanager", "alertmanager", lambda: b"", bearer(ALERTMANAGER_TOKEN), 400, "body is empty", dead_letter=False
    ),
    # The daemon stops at the declared length and never reads the body, so there is nothing to keep.
    "oversized": Rejection(
        "/hooks/alertmanager",
        "alertmanager",
        lambda: b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}',
        bearer(ALERTMANAGER_TOKEN),
        413,
        f"larger than the limit of {MAX_BODY_BYTES} bytes",
        dead_letter=False,
    ),
}


def check_rejected(
    daemon: DaemonProcess,
    rejection: Rejection,
    body: bytes,
    response: httpx.Response,
    rows_before: dict[str, int],
    letters_before: int,
) -> None:
    """Check one rejected request's response, log line and dead letter, and that it stored nothing."""
    assert response.status_code == rejection.status, response.text
    reason = response.json()["error"]
    assert rejection.reason in reason

    letters = daemon.dead_letters()
    if rejection.dead_letter:
        number = response.json()["dead_letter"]
        (letter,) = [row for row in letters if row["id"] == number]
        assert (letter["source"], letter["status"], letter["reason"]) == (rejection.source, rejection.status, reason)
        assert (letter["size"], letter["body_truncated"], letter["replayed_at"]) == (len(body), False, None)
        expected_line = f"source {rejection.source}: request rejected with {rejection.status}: {reason} (dead letter {number})"
    else:
        assert "dead_letter" not in response.json()
        assert len(letters) == letters_before
        expected_line = f"source {rejection.source}: request rejected with {rejection.status}: {reason}"
    daemon.wait_for_log(lambda entry: entry["logger"] == "irules.http" and entry["message"] == expected_line, repr(expected_line))
    assert stored_rows(daemon) == rows_before


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejected_request(daemon: DaemonProcess, rejection: Rejection):
    rows_before = stored_rows(daemon)
    letters_before = len(daemon.dead_letters())
    body = rejection.body()

    response = daemon.post(rejection.path, body, rejection.headers)

    check_rejected(daemon, rejection, body, response, rows_before, letters_before)


def test_oversized_chunked_body_rejected(daemon: DaemonProcess):
    rejection = REJECTIONS["oversized"]
    rows_before = stored_rows(daemon)
    letters_before = len(daemon.dead_letters())
    body = rejection.body()

    # Without a Content-Length the daemon counts while it reads and stops past the limit.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1024 * 1024):
            yield body[start : start + 1024 * 1024]

    response = daemon.client.post(
        rejection.path, content=chunks(), headers={"content-type": "application/json", **rejection.headers}
    )

    check_rejected(daemon, rejection, body, response, rows_before, letters_before)


def test_rejections_are_counted(daemon: DaemonProcess):
    def rejected_count() -> float:
        prefix = 'irules_payloads_total{outcome="rejected",source="alertmanager"} '
        lines = daemon.client.get("/metrics").text.splitlines()
        return next((float(line.removeprefix(prefix)) for line in lines if line.startswith(prefix)), 0.0)

    before = rejected_count()
    assert daemon.post("/hooks/alertmanager", b"[]", bearer("not-the-token")).status_code == 403
    assert rejected_count() == before + 1


# ---------------------------------------------------------------- replay after a fix


def irules(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=CLI_ENVIRONMENT)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def replay(daemon: DaemonProcess, number: int) -> tuple[int, dict[str, Any]]:
    result = irules("replay", str(number), "--daemon", daemon.url, "--format", "json")
    (outcome,) = json.loads(result.stdout)
    return result.exit_code, outcome


def test_replay_after_mapping_fix(daemon: DaemonProcess):
    body = deploy_event("broken")
    signed = {"X-Signature-256": hmac_signature(DEPLOYS_SECRET, body)}
    rows_before = stored_rows(daemon)

    response = daemon.post("/webhooks/deploys", body, signed)
    assert response.status_code == 400, response.text
    assert 'the mapping `alert.status` gave "broken"' in response.json()["error"]
    number = response.json()["dead_letter"]
    assert stored_rows(daemon) == rows_before

    # Replayed under the same rules it fails again and stays pending.
    exit_code, outcome = replay(daemon, number)
    assert (exit_code, outcome["outcome"]) == (1, "failed")
    assert "alert.status" in outcome["detail"]
    assert next(row for row in daemon.dead_letters() if row["id"] == number)["replayed_at"] is None

    generation = daemon.status()["rules"]["generation"]
    (daemon.rules / "rules.irules").write_text(FIXED_RULES, encoding="utf-8")
    daemon.wait_for_generation(generation + 1)
    assert daemon.status()["rules"]["last_error"] == []

    exit_code, outcome = replay(daemon, number)
    assert (exit_code, outcome["outcome"]) == (0, "replayed")
    payload = outcome["payload_id"]
    daemon.wait_until_applied()
    assert stored_rows(daemon)["payloads"] == rows_before["payloads"] + 1
    (incident,) = [row for row in daemon.incidents() if row["title"] == "DeployFailed"]
    (alert,) = daemon.incident(incident["id"])["alerts"]
    assert (alert["status"], alert["labels"]["service"]) == ("firing", "api")

    listed = irules("dead-letters", "list", "--daemon", daemon.url, "--format", "json")
    (letter,) = [row for row in json.loads(listed.stdout) if row["id"] == number]
    assert letter["payload_id"] == payload
    assert letter["replayed_at"] is not None

    # A second replay finds it done and stores nothing more.
    rows = stored_rows(daemon)
    exit_code, outcome = replay(daemon, number)
    assert (exit_code, outcome["outcome"], outcome["payload_id"]) == (0, "already replayed", payload)
    assert stored_rows(daemon) == rows


def test_replay_skips_failed_authentication(daemon: DaemonProcess):
    body = fixture_bytes("alertmanager/firing-two-alerts.json")
    response = daemon.post("/hooks/alertmanager", body, bearer("not-the-token"))
    assert response.status_code == 403
    number = response.json()["dead_letter"]
    rows_before = stored_rows(daemon)

    exit_code, outcome = replay(daemon, number)

    assert exit_code == 0
    assert outcome["outcome"] == "skipped"
    assert "never replayed" in outcome["detail"]
    assert stored_rows(daemon) == rows_before
    assert next(row for row in daemon.dead_letters() if row["id"] == number)["replayed_at"] is None
    # The list shows it as never replayed too, not as "pending".
    listed = irules("dead-letters", "list", "--daemon", daemon.url).stdout.splitlines()
    (line,) = [line for line in listed if line.split()[0] == str(number)]
    assert "never (not authenticated)" in line


def test_bulk_replay_leaves_out_untrusted(daemon: DaemonProcess):
    response = daemon.post("/hooks/alertmanager", fixture_bytes("alertmanager/firing-two-alerts.json"), {})
    assert response.status_code == 401
    number = response.json()["dead_letter"]

    result = irules("replay", "--daemon", daemon.url, "--format", "json")

    replayed = [outcome["id"] for outcome in json.loads(result.stdout)]
    assert number not in replayed
