"""Runbook runs and a database outage: no step runs while its state cannot be written, and the run resumes after.

The executor writes a step's RUNNING state, and waits for the write, before
it starts the step's program. With the private PostgreSQL server stopped that
write fails, so the program, which would leave a marker file, never starts.
Once the server is back, the same run executes the step, which shows that the
marker would have appeared had the step run.

A daemon whose run failed that way leases the run again once the server is
back and resumes it from its journal, without a restart.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from compiler.api import check_path
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.clock import RealClock
from runtime.runbooks.executor import execute_run
from runtime.runbooks.steps import RunnerSettings, StoreRunner, run_stored
from runtime.store import Store
from runtime.store.schema import runbook_runs, step_runs
from tests.outage.conftest import PrivatePostgres
from tests.runtime.daemon_process import DaemonProcess, alertmanager_webhook
from tests.runtime.fakes import FakeSaaS

pytestmark = pytest.mark.slow

RULES = """
team infrastructure {
  webhook url "http://127.0.0.1:9/unused"
}

route {
  receiver infrastructure
}

runbook leave-marker "Leave a marker" {
  when label.alertname == "Drift"
  manual

  step mark {
    run ["touch", "MARKER"]
    mutating
    risk low
  }
}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    folder = tmp_path / "rules"
    folder.mkdir()
    marker = tmp_path / "marker"
    (folder / "rules.irules").write_text(RULES.replace("MARKER", str(marker)), encoding="utf-8")
    return Policy(check_path(folder, None).ruleset())


def step_states(store: Store, run_id: int) -> dict[str, str]:
    with store.read() as connection:
        rows = connection.execute(sa.select(step_runs.c.name, step_runs.c.state).where(step_runs.c.run_id == run_id)).all()
    return {row.name: row.state for row in rows}


@pytest.mark.anyio
async def test_mutating_step_waits_for_database(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, policy: Policy
) -> None:
    marker = tmp_path / "marker"
    store = Store.open(database_url)
    clock = RealClock()
    runbook = policy.ruleset.runbooks[0]
    values = {"labels": {"alertname": "Drift"}, "annotations": {}}
    run_id = runs.start_run(
        store, runbook, incident_id=None, values=values, trigger="manual", requested_by="alice", now=clock.now()
    )
    with store.read() as connection:
        started_at = connection.execute(sa.select(runbook_runs.c.created_at).where(runbook_runs.c.id == run_id)).scalar_one()

    async with httpx.AsyncClient() as client:
        runner = StoreRunner(store, policy, run_id, clock, client, RunnerSettings())
        journal = runs.StoreJournal(store, run_id)
        # The journal is read while the server is up, so the first statement of the outage is the RUNNING write.
        snapshot = await journal.snapshot()

        async def snapshot_taken() -> dict:
            return snapshot

        journal.snapshot = snapshot_taken  # type: ignore[method-assign]
        postgres.stop()
        with pytest.raises(BaseException) as raised:
            await execute_run(runbook, runner, journal, clock, values, started_at=started_at)
        assert not marker.exists()

        postgres.start()
        result = await run_stored(store, policy, run_id, clock, client, RunnerSettings())
    try:
        assert "OperationalError" in repr(raised.value)
        assert "in record" in "".join(traceback.format_exception(raised.value))
        assert result.state == "succeeded"
        assert marker.exists()
        assert step_states(store, run_id) == {"mark": "succeeded"}
    finally:
        store.close()


DAEMON_RULES = """
receiver oncall {
  webhook url secret("WEBHOOK_URL")
}

route {
  receiver oncall
  group_wait 0s
}

runbook resume "Resume after an outage" {
  when label.alertname == "Drift"
  auto
  timeout 10m

  step wait_for_go {
    run ["PYTHON", "-c", "import os, sys, time; print(os.getpid(), file=open(sys.argv[2], 'a'), flush=True); [time.sleep(0.05) for _ in iter(lambda: os.path.exists(sys.argv[1]), True)]", "GO", "PIDS"]
    read_only
    timeout 5m
  }

  step mark {
    run ["PYTHON", "-c", "import sys; print('ran', file=open(sys.argv[1], 'a'))", "MARKER"]
    mutating
  }
}
"""

WAIT_S = 30.0


def wait_for(check: Callable[[], bool], description: str, daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {description}; the log:\n{daemon.log_text()}")


def query(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_run_resumes_after_outage_without_restart(
    tmp_path: Path, postgres: PrivatePostgres, database_url: str, fake_saas: FakeSaaS
) -> None:
    go, pids, marker = tmp_path / "go", tmp_path / "pids", tmp_path / "marker"
    rules = tmp_path / "rules"
    rules.mkdir()
    text = DAEMON_RULES.replace("PYTHON", sys.executable).replace("GO", str(go)).replace("PIDS", str(pids))
    (rules / "rules.irules").write_text(text.replace("MARKER", str(marker)), encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WEBHOOK_URL").write_text(fake_saas.secrets["WEBHOOK_URL"] + "\n", encoding="utf-8")
    daemon = DaemonProcess(
        rules,
        tmp_path / "state",
        secrets_dir=secrets,
        allow_unauthenticated=True,
        extra_args=["--database", database_url, "--spool", str(tmp_path / "spool"), "--no-watch", "--lease-time", "3s"],
    )
    with daemon:
        assert daemon.post("/hooks/alertmanager", alertmanager_webhook("Drift", {})).status_code == 202
        wait_for(lambda: len(lines(pids)) == 1, "the first step's program", daemon)
        assert query(database_url, "SELECT name, state, attempt FROM step_runs") == [("wait_for_go", "running", 1)]
        (run_id,) = query(database_url, "SELECT id FROM runbook_runs")[0]

        postgres.stop()
        # The program ends during the outage, so writing its outcome fails and the run's task stops.
        go.touch()
        stopped = f"run {run_id} stopped because the database is unreachable: "
        daemon.wait_for_log(lambda entry: entry["message"].startswith(stopped), repr(stopped))
        postgres.start()

        def run_ended() -> bool:
            return query(database_url, "SELECT status FROM runbook_runs") != [("running",)]

        wait_for(run_ended, "the run's end", daemon)
        assert daemon.process is not None
        assert daemon.process.poll() is None
        assert query(database_url, "SELECT status FROM runbook_runs") == [("succeeded",)]
        assert query(database_url, "SELECT name, state, attempt FROM step_runs ORDER BY id") == [
            ("wait_for_go", "succeeded", 2),
            ("mark", "succeeded", 1),
        ]
        # The read-only step ran again from its journal record, and the mutating step ran once.
        assert len(lines(pids)) == 2
        assert lines(marker) == ["ran"]
        assert query(database_url, "SELECT count(*) FROM approvals") == [(0,)]
        runbook_log = [entry for entry in daemon.log_records() if entry["logger"] == "irules.runbooks"]
        stops = [entry["message"] for entry in runbook_log if entry["message"].startswith(f"run {run_id} stopped")]
        assert len(stops) == 1
        assert stops[0].startswith(stopped)
        assert [entry["message"] for entry in runbook_log if entry["level"] == "error"] == []
