"""A daemon on a PostgreSQL server that stops while alerts arrive: spool, degraded pages, drain, `/readyz`.

Each test runs `irules daemon` as a child process against the private server
of `conftest.py`, stops the server with `pg_ctl -m immediate`, and starts it
again. Counts are checked in the database afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.outage.conftest import PrivatePostgres
from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import FakeSaaS

pytestmark = pytest.mark.slow

RULES = """
receiver oncall {
  webhook url secret("WEBHOOK_URL")
}

route {
  receiver oncall
  group_by [alertname, n]
  group_wait 0s
  group_interval 1s
  repeat_interval 4h
}
"""

WAIT_S = 30.0


def wait_for(check: Callable[[], bool], description: str, daemon: DaemonProcess | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {description}" + (f"; the log:\n{daemon.log_text()}" if daemon else ""))


def payload(number: int, status: str = "firing") -> bytes:
    """Return an Alertmanager webhook with one alert, which its label `n` identifies."""
    alert = {
        "status": status,
        "labels": {"alertname": "DiskFull", "n": str(number), "severity": "critical"},
        "annotations": {"summary": f"disk {number} is full"},
        "startsAt": "2024-05-14T09:21:07Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    document = {"version": "4", "status": status, "receiver": "oncall", "groupKey": f"{{}}:{{n={number}}}", "alerts": [alert]}
    return orjson.dumps(document)


def start_daemon(tmp_path: Path, url: str, fake: FakeSaaS, *extra: str) -> DaemonProcess:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rules.irules").write_text(RULES, encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "WEBHOOK_URL").write_text(fake.secrets["WEBHOOK_URL"] + "\n", encoding="utf-8")
    daemon = DaemonProcess(
        rules,
        tmp_path / "state",
        secrets_dir=secrets,
        allow_unauthenticated=True,
        extra_args=["--database", url, "--spool", str(tmp_path / "spool"), "--no-watch", *extra],
    )
    return daemon.start()


def spooled_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob("*.spool"))


def stored_numbers(url: str) -> list[str]:
    """Return the label `n` of every stored alert event, one entry per event."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT alert FROM alert_events ORDER BY id")).scalars().all()
    engine.dispose()
    return [row["labels"]["n"] for row in rows]


def scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(sa.text(query)).scalar()
    engine.dispose()
    return value


def degraded_pages(fake: FakeSaaS) -> list[dict[str, Any]]:
    return [request.data for request in fake.requests(fake.webhook_path) if request.data.get("event") == "degraded"]


class SteadySender:
    """Posts one alert after another from a thread and keeps every response."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.responses: dict[int, tuple[int, dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        with httpx.Client(base_url=self.daemon.url, timeout=30) as client:
            while not self._stop.is_set():
                number += 1
                response = client.post(
                    "/hooks/alertmanager", content=payload(number), headers={"content-type": "application/json"}
                )
                self.responses[number] = (response.status_code, response.json())
                time.sleep(0.02)

    def __enter__(self) -> SteadySender:
        self._thread.start()
        return self

    def __exit__(self, *_details: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)

    def accepted(self) -> list[str]:
        return [str(number) for number, (status, _) in self.responses.items() if 200 <= status < 300]

    def spooled(self) -> list[str]:
        return [str(number) for number, (status, body) in self.responses.items() if status == 202 and body.get("spooled")]


def readyz(daemon: DaemonProcess) -> tuple[int, str]:
    response = daemon.client.get("/readyz")
    return response.status_code, response.text


def test_outage_drains_spool_without_restart(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    daemon = start_daemon(tmp_path, database_url, fake_saas)
    try:
        with SteadySender(daemon) as sender:
            wait_for(lambda: len(sender.accepted()) >= 10, "alerts stored before the outage", daemon)
            postgres.stop()
            wait_for(lambda: readyz(daemon)[0] == 503, "/readyz to fail during the outage", daemon)
            status, text = readyz(daemon)
            wait_for(lambda: len(sender.spooled()) >= 10, "alerts spooled during the outage", daemon)
            assert daemon.client.get("/healthz").status_code == 200
            postgres.start()
            wait_for(lambda: readyz(daemon)[0] == 200, "/readyz after the outage", daemon)
            wait_for(lambda: len(sender.accepted()) >= len(sender.spooled()) + 20, "alerts stored after the outage", daemon)
        wait_for(lambda: not spooled_files(tmp_path), "the spool to drain", daemon)
        daemon.wait_until_applied()
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM outbox WHERE status = 'sending'") == 0, "sends in flight to end"
        )
        accepted = sender.accepted()
        numbers = stored_numbers(database_url)
        log = daemon.log_records()
    finally:
        daemon.stop()

    assert status == 503
    assert text.startswith("not ready: the database is unreachable: ")
    assert sorted(numbers, key=int) == sorted(accepted, key=int)
    assert len(numbers) == len(set(numbers))
    assert scalar(database_url, "SELECT count(*) FROM alert_events WHERE processed_at IS NULL") == 0
    assert scalar(database_url, "SELECT count(*) FROM outbox WHERE status IN ('sending', 'failed')") == 0
    assert scalar(database_url, "SELECT count(DISTINCT incident_id) FROM outbox") == len(accepted)
    assert scalar(database_url, "SELECT count(*) FROM payloads WHERE spool_id IS NOT NULL") == len(sender.spooled())
    assert scalar(database_url, "SELECT count(*) FROM incidents") == len(accepted)
    messages = [record.get("message", "") for record in log]
    assert sum(message.startswith("database unreachable;") for message in messages) == 1
    assert sum(message.startswith("database reachable again") for message in messages) == 1


def test_killed_daemon_spool_drains_at_next_start(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    daemon = start_daemon(tmp_path, database_url, fake_saas)
    try:
        assert daemon.post("/hooks/alertmanager", payload(1)).status_code == 202
        postgres.stop()
        responses = [daemon.post("/hooks/alertmanager", payload(number)) for number in (2, 3, 4)]
    finally:
        daemon.kill()
    assert [response.status_code for response in responses] == [202, 202, 202]
    assert [response.json()["spooled"] for response in responses] == [True, True, True]
    assert len(spooled_files(tmp_path)) == 3

    postgres.start()
    restarted = start_daemon(tmp_path, database_url, fake_saas)
    try:
        wait_for(lambda: not spooled_files(tmp_path), "the spool to drain at the start", restarted)
        restarted.wait_until_applied()
    finally:
        restarted.stop()
    assert stored_numbers(database_url) == ["1", "2", "3", "4"]


def test_degraded_page_once_per_alert(tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS) -> None:
    daemon = start_daemon(tmp_path, database_url, fake_saas)
    try:
        postgres.stop()
        for number in (1, 2, 1, 2, 1):
            response = daemon.post("/hooks/alertmanager", payload(number))
            assert response.status_code == 202, response.text
            assert response.json()["spooled"] is True
        assert daemon.post("/hooks/alertmanager", payload(3, status="resolved")).status_code == 202
        wait_for(lambda: len(degraded_pages(fake_saas)) >= 2, "two degraded pages", daemon)
        time.sleep(1.0)  # room for a wrong third page to arrive before counting
        pages = degraded_pages(fake_saas)
    finally:
        daemon.kill()
    assert sorted(page["alert"]["labels"]["n"] for page in pages) == ["1", "2"]
    assert {page["receiver"] for page in pages} == {"oncall"}
    assert pages[0]["title"] == "[degraded] DiskFull is firing (critical)"
    assert pages[0]["text"].startswith("irules cannot reach its database, so this page was sent without an incident.")


def test_full_spool_rejects_with_503(tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS) -> None:
    daemon = start_daemon(tmp_path, database_url, fake_saas, "--spool-limit", "2000")
    try:
        postgres.stop()
        first = daemon.post("/hooks/alertmanager", payload(1))
        second = daemon.post("/hooks/alertmanager", payload(2))
    finally:
        daemon.kill()
    assert first.status_code == 202
    assert second.status_code == 503
    error = second.json()["error"]
    assert error.startswith(f"the database is unreachable and the spool {tmp_path / 'spool'} is full (")
    assert error.endswith(" of 2000 bytes used, --spool-limit); retry later")
    assert len(spooled_files(tmp_path)) == 1
