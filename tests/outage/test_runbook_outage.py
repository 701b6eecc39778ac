"""No mutating runbook step runs while the database is unreachable.

The executor writes a step's RUNNING state, and waits for the write, before
it starts the step's program. With the private PostgreSQL server stopped that
write fails, so the program, which would leave a marker file, never starts.
Once the server is back, the same run executes the step, which shows that the
marker would have appeared had the step run.
"""

from __future__ import annotations

import traceback
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
