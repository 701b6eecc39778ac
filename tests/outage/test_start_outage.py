"""A daemon that starts while its PostgreSQL server is down: it serves, spools, pages degraded, and opens the store later.

The test creates an empty database on the private server of `conftest.py`, stops
the server, and starts `irules daemon` as a child process. The daemon must serve
`/healthz`, report the outage on `/readyz`, and spool every webhook. Once the
server is started again, the same process migrates the schema, drains the spool
and applies each spooled alert once. Counts are checked in the database.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runtime.daemon.openapi import openapi_document
from tests.outage.conftest import PrivatePostgres
from tests.outage.test_spool_daemon import RULES, degraded_pages, payload, readyz, scalar, spooled_files, stored_numbers, wait_for
from tests.runtime.daemon_process import DaemonProcess, run_cli
from tests.runtime.fakes import FakeSaaS

pytestmark = pytest.mark.slow

ALERTS = 6


def daemon_without_database(tmp_path: Path, url: str, fake: FakeSaaS, *, spool_flag: bool = True) -> DaemonProcess:
    """Start a daemon on `url` and return once it serves HTTP, without waiting for `/readyz`.

    Without `spool_flag` the daemon gets no `--spool`, so its spool is the default beside `--state`.
    """
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.irules").write_text(RULES, encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WEBHOOK_URL").write_text(fake.secrets["WEBHOOK_URL"] + "\n", encoding="utf-8")
    daemon = DaemonProcess(
        rules,
        tmp_path / "state",
        secrets_dir=secrets,
        allow_unauthenticated=True,
        extra_args=["--database", url, *(("--spool", str(tmp_path / "spool")) if spool_flag else ()), "--no-watch"],
    )
    return daemon.start(until_ready=False)


def spooled_response_fields() -> set[str]:
    """Return the fields that the OpenAPI document declares for a webhook's 202 response."""
    response = openapi_document()["paths"]["/hooks/{source}"]["post"]["responses"]["202"]
    return set(response["content"]["application/json"]["schema"]["properties"])


def messages(daemon: DaemonProcess) -> list[str]:
    return [record.get("message", "") for record in daemon.log_records()]


def test_daemon_starts_without_database(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    postgres.stop()
    daemon = daemon_without_database(tmp_path, database_url, fake_saas)
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        health = daemon.client.get("/healthz")
        waiting_status, waiting_text = readyz(daemon)
        waiting = daemon.status()
        responses = [daemon.post("/hooks/alertmanager", payload(number)) for number in range(1, ALERTS + 1)]
        bodies: list[dict[str, Any]] = [response.json() for response in responses]
        wait_for(lambda: len(degraded_pages(fake_saas)) >= ALERTS, "a degraded page per alert", daemon)
        spooled = len(spooled_files(tmp_path))

        postgres.start()
        wait_for(lambda: readyz(daemon)[0] == 200, "/readyz once the database is back", daemon)
        wait_for(lambda: not spooled_files(tmp_path), "the spool to drain", daemon)
        daemon.wait_until_applied()
        opened = daemon.status()
        running = daemon.process.poll() is None
        log = messages(daemon)
    finally:
        daemon.stop()

    assert health.status_code == 200
    assert waiting_status == 503
    assert waiting_text.startswith("not ready: the database is unreachable: connection failed: ")
    assert waiting["pending_events"] == 0
    assert waiting["cluster"]["nodes"] == []
    # `/status` agrees with `/readyz`.
    assert waiting["ready"] is False
    assert opened["ready"] is True
    assert [response.status_code for response in responses] == [202] * ALERTS
    assert [body["spooled"] for body in bodies] == [True] * ALERTS
    assert [body["payload_id"] for body in bodies] == [None] * ALERTS
    assert [set(body) - spooled_response_fields() for body in bodies] == [set()] * ALERTS
    assert spooled == ALERTS
    assert sorted(page["alert"]["labels"]["n"] for page in degraded_pages(fake_saas)) == [str(n) for n in range(1, ALERTS + 1)]

    # The same process, never restarted, opened the store and applied each spooled alert once.
    assert running
    assert daemon.process.pid == pid
    assert sum(message.startswith("listening on ") for message in log) == 1
    assert sum(message.startswith("store open: ") for message in log) == 1
    assert sum(message.startswith("database unreachable;") for message in log) == 1
    assert sum(message.startswith("database reachable again") for message in log) == 1
    assert opened["cluster"]["node"] in [node["id"] for node in opened["cluster"]["nodes"]]
    assert stored_numbers(database_url) == [str(n) for n in range(1, ALERTS + 1)]
    assert scalar(database_url, "SELECT count(*) FROM alert_events WHERE processed_at IS NULL") == 0
    assert scalar(database_url, "SELECT count(*) FROM payloads WHERE spool_id IS NOT NULL") == ALERTS
    assert scalar(database_url, "SELECT count(*) FROM payloads") == ALERTS
    assert scalar(database_url, "SELECT count(*) FROM incidents") == ALERTS


def test_sqlite_store_that_cannot_open_stops_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.irules"
    rules.write_text(RULES, encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")

    result = run_cli("daemon", "--rules", str(rules), "--state", str(blocker / "state"), "--no-watch", "--listen", "127.0.0.1:1")

    assert result.returncode == 2, result.stderr
    assert f"irules: cannot create the state folder {blocker / 'state'}: Not a directory" in result.stderr


def test_stop_while_waiting_for_database(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    postgres.stop()
    daemon = daemon_without_database(tmp_path, database_url, fake_saas)
    try:
        responses = [daemon.post("/hooks/alertmanager", payload(number)) for number in (1, 2)]
        incidents = daemon.client.get("/api/v1/incidents")
        metrics = daemon.client.get("/metrics")
    finally:
        status = daemon.terminate()
    log = messages(daemon)

    assert status == 0, daemon.log_text()
    assert [response.status_code for response in responses] == [202, 202]
    assert [path.name.split("-")[0] for path in spooled_files(tmp_path)] == ["000000000001", "000000000002"]
    assert incidents.status_code == 503
    assert incidents.json() == {"error": "the database is unreachable, so the store is not open yet; retry later"}
    assert metrics.status_code == 200
    assert "irules_alert_events_pending 0.0" in metrics.text
    assert "store open: " not in " ".join(log)
    assert log[-1] == "stopped"


def test_incident_api_returns_503_in_outage(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    daemon = daemon_without_database(tmp_path, database_url, fake_saas)
    try:
        wait_for(lambda: readyz(daemon)[0] == 200, "/readyz with the database up", daemon)
        before = daemon.client.get("/api/v1/incidents")
        postgres.stop()
        during = daemon.client.get("/api/v1/incidents")
    finally:
        daemon.kill()

    assert before.status_code == 200
    assert during.status_code == 503
    assert during.json()["error"].startswith("the database is unreachable: connection failed: ")
    assert during.json()["error"].endswith("; retry later")


def test_spool_defaults_to_state_folder(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    # With `--state` beside `--database`, the spool is `<state>/spool`, as `--help` states, and not
    # /var/lib/irules/spool, which every node and every test on the machine would share.
    postgres.stop()
    daemon = daemon_without_database(tmp_path, database_url, fake_saas, spool_flag=False)
    try:
        response = daemon.post("/hooks/alertmanager", payload(1))
        in_state = sorted((tmp_path / "state" / "spool").glob("*.spool"))
        # A rejected request during the outage (an Alertmanager body to the Grafana hook) gets its 4xx,
        # and its dead letter, which cannot be stored, one log line without a traceback.
        rejected = daemon.post("/hooks/grafana", payload(2))
        records = [record for record in daemon.log_records() if "dead letter" in record.get("message", "")]
    finally:
        daemon.stop()

    assert response.status_code == 202
    assert response.json()["spooled"] is True
    assert [path.stem for path in in_state] == [response.json()["spool_id"]]
    # Owner-only, because the file contains alert bodies.
    assert [oct(path.stat().st_mode & 0o777) for path in in_state] == ["0o600"]
    assert 400 <= rejected.status_code < 500
    assert [record["message"] for record in records][:1] == [
        "source grafana: dead letter of a rejected request not stored, the database is unreachable"
    ]
    assert [record for record in records if "exception" in record] == []


def _mark_newer_schema(url: str) -> None:
    """Give the database the Alembic revision of a newer irules, which this one cannot migrate from."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('9999')"))
    engine.dispose()


def test_newer_schema_stops_start(tmp_path: Path, postgres: PrivatePostgres, database_url: str) -> None:
    _mark_newer_schema(database_url)
    rules = tmp_path / "rules.irules"
    rules.write_text(RULES, encoding="utf-8")

    result = run_cli(
        "daemon", "--rules", str(rules), "--database", database_url, "--state", str(tmp_path / "state"), "--no-watch"
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"irules: the database {database_url} has schema revision 9999, which this irules does not know "
        "(its newest is 0010): a newer irules migrated it. Run that version or a newer one on this database"
    )


def test_newer_schema_found_late_stops_daemon(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    # The server was down at the start, so the daemon spooled. Once the server is up and has a schema
    # this irules cannot migrate, the daemon stops as it would have at the start, and keeps the spool.
    _mark_newer_schema(database_url)
    postgres.stop()
    daemon = daemon_without_database(tmp_path, database_url, fake_saas)
    response = daemon.post("/hooks/alertmanager", payload(1))
    postgres.start()
    assert daemon.process is not None
    try:
        status = daemon.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError(f"the daemon kept running on a schema it cannot migrate:\n{daemon.log_text()}") from None
    finally:
        daemon.client.close()
    log = daemon.log_text()

    assert response.status_code == 202
    assert response.json()["spooled"] is True
    assert status == 2, log
    assert "Traceback" not in log
    assert f"the database {database_url} has schema revision 9999, which this irules does not know" in log
    assert [path.stem for path in spooled_files(tmp_path)] == [response.json()["spool_id"]]
