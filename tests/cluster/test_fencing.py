"""Fenced writes of leased runbook runs: a node that lost a run's lease writes nothing more of it.

The first tests drive the store's journal and the run manager in this process,
on SQLite and PostgreSQL. The last one runs two `irules daemon` processes on
one PostgreSQL schema and stops the node that executes a step with SIGSTOP.
The other node takes the run over and finishes it. Then the stopped node
wakes with the step's result in hand.
"""

from __future__ import annotations

import datetime
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa

from compiler.api import check_path
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.manager import RunManager
from runtime.runbooks.model import RUNNING, SUCCEEDED, StepOutcome
from runtime.runbooks.steps import RunnerSettings
from runtime.store import Store
from runtime.store.schema import runbook_runs, step_runs
from tests.cluster.harness import Cluster, alertmanager_body, start_cluster, wait_for
from tests.cluster.test_takeover import running
from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import FakeSaaS

# The time stamp of the journal records that the tests without a daemon write.
NOW = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)

# The step's program appends a line to the marker file and writes its pid to MARKER.pid. On its
# first run it then waits until the release file exists. It prints which run it was.
STEP_PROGRAM = """
import os, pathlib, sys, time
marker, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with open(f"{marker}.pid", "a") as pids:
    print(os.getpid(), file=pids)
with open(marker, "a+") as lines:
    print("ran", file=lines, flush=True)
    lines.seek(0)
    first = len(lines.readlines()) == 1
while first and not release.exists():
    time.sleep(0.05)
print("first run" if first else "second run")
"""

RUNBOOK = """
runbook mark "Append a line to the marker file" {
  when label.alertname == "Mark"
  auto
  timeout 10m

  step mark {
    run ["PYTHON", "PROGRAM", "MARKER", "RELEASE"]
    mutating
    timeout 5m
  }
}
"""

LOCAL_RULES = """
team ops {
  webhook url "http://127.0.0.1:9/unused"
}

route {
  receiver ops
}
"""


def runbook_text(tmp_path: Path) -> str:
    """Return the runbook with its program, marker and release file in `tmp_path`."""
    program = tmp_path / "step.py"
    program.write_text(STEP_PROGRAM, encoding="utf-8")
    return (
        RUNBOOK.replace("PYTHON", sys.executable)
        .replace("PROGRAM", str(program))
        .replace("MARKER", str(tmp_path / "marker.txt"))
        .replace("RELEASE", str(tmp_path / "release"))
    )


def marker_lines(tmp_path: Path) -> int:
    marker = tmp_path / "marker.txt"
    return len(marker.read_text(encoding="utf-8").splitlines()) if marker.exists() else 0


def program_pids(tmp_path: Path) -> list[int]:
    pids = tmp_path / "marker.txt.pid"
    return [int(line) for line in pids.read_text(encoding="utf-8").split()] if pids.exists() else []


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.irules").write_text(LOCAL_RULES + runbook_text(tmp_path), encoding="utf-8")
    return Policy(check_path(folder, None).ruleset())


def start(store: Store, policy: Policy, lease_owner: str | None) -> int:
    """Start a run of the runbook now, leased by `lease_owner` for an hour, and return its id.

    The run starts at the current time because its runbook's timeout counts from its start.
    """
    run_id = runs.start_run(
        store,
        policy.ruleset.runbooks[0],
        incident_id=None,
        values={"labels": {"alertname": "Mark"}, "annotations": {}},
        trigger="manual",
        requested_by="alice",
        now=datetime.datetime.now(datetime.UTC),
    )
    set_lease(store, run_id, lease_owner)
    return run_id


def set_lease(store: Store, run_id: int, lease_owner: str | None) -> None:
    """Give the run's lease to `lease_owner`, as a node's takeover does."""
    with store.write() as connection:
        connection.execute(
            runbook_runs.update()
            .where(runbook_runs.c.id == run_id)
            .values(lease_owner=lease_owner, lease_until=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
        )


def step_rows(store: Store, run_id: int) -> list[tuple[str, str, int, str | None]]:
    """Return each step's name, state, attempt and output."""
    with store.read() as connection:
        rows = connection.execute(
            sa.select(step_runs.c.name, step_runs.c.state, step_runs.c.attempt, step_runs.c.outcome)
            .where(step_runs.c.run_id == run_id)
            .order_by(step_runs.c.id)
        ).all()
    return [(row.name, row.state, row.attempt, (row.outcome or {}).get("output")) for row in rows]


def run_row(store: Store, run_id: int) -> tuple[str, str | None]:
    with store.read() as connection:
        row = connection.execute(
            sa.select(runbook_runs.c.status, runbook_runs.c.lease_owner).where(runbook_runs.c.id == run_id)
        ).one()
    return row.status, row.lease_owner


@pytest.mark.anyio
async def test_journal_rejects_writes_after_takeover(store: Store, policy: Policy) -> None:
    run_id = start(store, policy, "node-a")
    journal = runs.StoreJournal(store, run_id, lease_owner="node-a")
    await journal.record("mark", RUNNING, attempt=1, at=NOW, operation={"argv": ["true"]})

    set_lease(store, run_id, "node-b")
    late = StepOutcome(ok=True, output="late\n", exit_code=0)
    with pytest.raises(runs.LeaseLost) as raised:
        await journal.record("mark", SUCCEEDED, attempt=1, at=NOW, outcome=late)
    with pytest.raises(runs.LeaseLost):
        await journal.finish("succeeded", "every step succeeded or was skipped", at=NOW)

    assert raised.value.run_id == run_id
    assert raised.value.owner == "node-a"
    assert raised.value.holder == "node-b"
    assert str(raised.value) == f"run {run_id}: node node-a no longer holds the run's lease (held by node-b)"
    assert step_rows(store, run_id) == [("mark", "running", 1, None)]
    assert run_row(store, run_id) == ("running", "node-b")


@pytest.mark.anyio
async def test_journal_without_lease_writes(store: Store, policy: Policy) -> None:
    run_id = start(store, policy, "node-b")
    journal = runs.StoreJournal(store, run_id)
    outcome = StepOutcome(ok=True, output="done\n", exit_code=0)

    await journal.record("mark", SUCCEEDED, attempt=1, at=NOW, outcome=outcome, operation={"argv": ["true"]})
    await journal.finish("succeeded", "every step succeeded or was skipped", at=NOW)

    assert step_rows(store, run_id) == [("mark", "succeeded", 1, "done\n")]
    assert run_row(store, run_id) == ("succeeded", "node-b")


def test_decision_request_fenced(store: Store, policy: Policy) -> None:
    run_id = start(store, policy, "node-b")

    with pytest.raises(runs.LeaseLost):
        runs.request(store, run_id, "mark", runs.DECISION, None, {}, NOW, None, lease_owner="node-a")
    runs.request(store, run_id, "mark", runs.DECISION, None, {}, NOW, None, lease_owner="node-b")

    assert [row["kind"] for row in runs.show_run(store, run_id)["approvals"]] == [runs.DECISION]


@pytest.fixture
def postgres_store(postgres_schema_url: str) -> Iterator[Store]:
    """Return a store on PostgreSQL, where a lease held by another node is not free.

    On SQLite the manager leases every active run, because one daemon serves a SQLite file.
    """
    opened = Store.open(postgres_schema_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.anyio
async def test_manager_stops_run_on_lost_lease(
    tmp_path: Path, postgres_store: Store, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    store = postgres_store
    run_id = start(store, policy, None)
    # A lease of an hour keeps the renewal (every third of it) from noticing the takeover first.
    async with httpx.AsyncClient() as client:
        manager = RunManager(store, lambda: policy, client, RunnerSettings(), node_id="node-a", lease_s=3600.0)
        stop = anyio.Event()
        with caplog.at_level(logging.WARNING, logger="irules.runbooks"):
            async with anyio.create_task_group() as group:
                group.start_soon(manager.run, stop)
                with anyio.fail_after(30):
                    while marker_lines(tmp_path) < 1:
                        await anyio.sleep(0.05)
                assert run_row(store, run_id) == ("running", "node-a")

                set_lease(store, run_id, "node-b")
                (tmp_path / "release").touch()
                with anyio.fail_after(30):
                    while run_id in manager.active:
                        await anyio.sleep(0.05)
                stop.set()

    assert step_rows(store, run_id) == [("mark", "running", 1, None)]
    assert run_row(store, run_id) == ("running", "node-b")
    assert marker_lines(tmp_path) == 1
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == [
        f"run {run_id}: lease lost to node node-b; stopping it here without writing its progress"
    ]


def node_id(daemon: DaemonProcess) -> str:
    return daemon.status()["cluster"]["node"]


def timeline_kinds(cluster: Cluster) -> list[str]:
    return [row[0] for row in cluster.rows("SELECT kind FROM timeline WHERE kind LIKE 'step.%' ORDER BY id")]


@pytest.mark.slow
@pytest.mark.parametrize("lease_a", ["10m", "2s"], ids=["fence", "fence-or-renewal"])
def test_stalled_node_late_result_rejected(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS, lease_a: str) -> None:
    """Node A stalls past its lease, B takes the run over and finishes it, and A's late result is not recorded.

    With a lease of 10 minutes on A, the test moves A's lease end into the past while A
    is stopped. A's renewal, due every third of its lease, is then not due when A wakes,
    so its late result meets the fence. With 2 s on both nodes, the lease expires on its
    own. A's renewal and its late write then race when A wakes, and either one stops the run.
    """
    runbook = runbook_text(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with start_cluster(
        tmp_path / "a", postgres_schema_url, fake_saas, nodes=1, extra_args=("--lease-time", lease_a), extra_rules=runbook
    ) as cluster_a:
        node_a = cluster_a.daemons[0]
        assert node_a.post("/hooks/alertmanager", alertmanager_body("Mark", instance="db-1")).status_code == 202
        wait_for(lambda: marker_lines(tmp_path) == 1, "the step's program on node A")
        (run_id, owner) = cluster_a.rows("SELECT id, lease_owner FROM runbook_runs")[0]
        assert owner == node_id(node_a)

        with start_cluster(
            tmp_path / "b", postgres_schema_url, fake_saas, nodes=1, extra_args=("--lease-time", "2s"), extra_rules=runbook
        ) as cluster_b:
            node_b = cluster_b.daemons[0]
            successor = node_id(node_b)
            assert node_a.process is not None
            node_a.process.send_signal(signal.SIGSTOP)
            try:
                if lease_a == "10m":
                    cluster_b.execute("UPDATE runbook_runs SET lease_until = now() - interval '1 second'")

                # B takes the run over and leaves the mutating step to a person.
                wait_for(lambda: cluster_b.scalar("SELECT state FROM step_runs") == "interrupted", "the step interrupted")
                assert cluster_b.scalar("SELECT lease_owner FROM runbook_runs") == successor
                wait_for(lambda: cluster_b.scalar("SELECT count(*) FROM approvals") == 1, "the decision request")
                answer = node_b.client.post(
                    f"/api/v1/runs/{run_id}/steps/mark/decision", json={"answer": "retry", "actor": "ana"}
                )
                assert answer.status_code == 200, answer.text
                wait_for(lambda: cluster_b.scalar("SELECT status FROM runbook_runs") == "succeeded", "the run's end on B")

                # A's program finishes while A is stopped, so A wakes with its result in hand.
                (first_pid, _second_pid) = program_pids(tmp_path)
                (tmp_path / "release").touch()
                wait_for(lambda: not running(first_pid), "the program of node A to finish")
            finally:
                node_a.process.send_signal(signal.SIGCONT)

            fenced = f"run {run_id}: lease lost to node {successor}; stopping it here without writing its progress"
            renewed = f"run {run_id}: lease lost to another node; stopping it here"
            expected = {fenced} if lease_a == "10m" else {fenced, renewed}
            node_a.wait_for_log(lambda entry: entry["message"] in expected, repr(expected))

            rows = cluster_b.rows("SELECT name, state, attempt, outcome->>'output' FROM step_runs")
            assert [tuple(row) for row in rows] == [("mark", "succeeded", 2, "second run\n")]
            assert [tuple(row) for row in cluster_b.rows("SELECT status, lease_owner FROM runbook_runs")] == [
                ("succeeded", successor)
            ]
            assert timeline_kinds(cluster_b) == [
                "step.running",
                "step.interrupted",
                "step.decision",
                "step.running",
                "step.succeeded",
            ]
            assert [tuple(row) for row in cluster_b.rows("SELECT kind, status, decided_by FROM approvals")] == [
                ("decision", "retry", "ana")
            ]
            assert marker_lines(tmp_path) == 2
            assert [entry["message"] for entry in node_a.log_records() if entry["level"] == "error"] == []
            node_a.stop()
