"""A node killed with SIGKILL mid-retry or mid-step: the other nodes take its work over, and nothing is lost or done twice.

Each test starts three `irules daemon` processes on one PostgreSQL schema with
a short `--lease-time`, finds the node that holds the lease of the work in
flight, kills exactly that node with SIGKILL and counts what the others do.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.cluster.harness import Cluster, alertmanager_body, start_cluster, wait_for
from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import FakeSaaS, Scripted

pytestmark = pytest.mark.slow

LEASE_TIME = "2s"
RETRY_AFTER = {"Retry-After": "1"}
# Seconds the receiver delays its response to the attempt that is in flight when its sender dies.
HELD_ANSWER_S = 5.0
# Seconds the step's program sleeps after its first line, so the kill lands while it runs.
STEP_SLEEP_S = 10

# The mutating step appends a line to the marker file and, on its first run only, sleeps.
MARK_RUNBOOK = """
runbook mark "Append a line to the marker file" {
  when label.alertname == "Mark"
  auto
  timeout 10m

  step mark {
    run ["PYTHON", "-c", "PROGRAM", "MARKER"]
    mutating
    timeout 1m
  }
}
"""
PROGRAM = (
    "import os, sys, time; print(os.getpid(), file=open(sys.argv[1] + '.pid', 'a'), flush=True); "
    "marker = open(sys.argv[1], 'a+'); print('ran', file=marker, flush=True); "
    f"marker.seek(0); time.sleep({STEP_SLEEP_S} if len(marker.readlines()) == 1 else 0)"
)


def running(pid: int) -> bool:
    """Return whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def kill_node(daemon: DaemonProcess) -> None:
    """Send SIGKILL to the daemon and wait until it has died of it."""
    assert daemon.process is not None, "the daemon was never started"
    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(timeout=10) == -signal.SIGKILL
    daemon.client.close()


def nodes_by_id(cluster: Cluster) -> dict[str, DaemonProcess]:
    """Return each daemon by the node id its `/status` shows."""
    return {daemon.status()["cluster"]["node"]: daemon for daemon in cluster.daemons}


def sender_index(query: str) -> int:
    """Return the index of the node that sent a request, from the `node` parameter that `tag_senders` puts in its URL."""
    return int(parse_qs(query)["node"][0])


def test_node_killed_mid_retry(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    path = fake_saas.webhook_path
    fake_saas.fail_next(path, 503, headers=RETRY_AFTER, times=2)
    # The third attempt gets a 503 as well, held back so that its sender dies while the attempt is in flight.
    # NOTE: FakeSaaS has no public method for a delayed error, so the script is queued directly.
    fake_saas._script(path, Scripted(503, RETRY_AFTER, b"", HELD_ANSWER_S, 1))
    with start_cluster(
        tmp_path, postgres_schema_url, fake_saas, extra_args=("--lease-time", LEASE_TIME), tag_senders=True
    ) as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Outage", instance="db-1")).status_code == 202
        wait_for(lambda: len(fake_saas.requests(path)) == 3, "the third attempt")

        # The node whose request is waiting for its response has the row's lease.
        victim = sender_index(fake_saas.requests(path)[2].query)
        assert [tuple(row) for row in cluster.rows("SELECT status, attempts FROM outbox")] == [("sending", 3)]
        kill_node(cluster.daemons[victim])
        assert [tuple(row) for row in cluster.rows("SELECT status, attempts FROM outbox")] == [("sending", 3)]

        # The outbox lease follows `--lease-time`, so a surviving node's reaper releases the row once it ends.
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1, "the delivery")

        requests = fake_saas.requests(path)
        assert [request.status for request in requests] == [503, 503, 503, 200]
        assert len({request.body for request in requests}) == 1
        assert sender_index(requests[3].query) != victim
        assert [tuple(row) for row in cluster.rows("SELECT status, attempts FROM outbox")] == [("delivered", 4)]
        assert cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 0
        assert cluster.scalar("SELECT count(*) FROM incidents") == 1
        assert cluster.scalar("SELECT count(*) FROM alert_events WHERE processed_at IS NULL") == 0


def test_node_killed_mid_step(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    marker = tmp_path / "marker.txt"
    runbook = MARK_RUNBOOK.replace("PYTHON", sys.executable).replace("PROGRAM", PROGRAM).replace("MARKER", str(marker))

    def marker_lines() -> int:
        return len(marker.read_text(encoding="utf-8").splitlines()) if marker.exists() else 0

    def run_state() -> tuple[str, str, int]:
        row = cluster.rows("SELECT r.status, s.state, s.attempt FROM runbook_runs r JOIN step_runs s ON s.run_id = r.id")
        return tuple(row[0]) if len(row) == 1 else ("", "", 0)

    with start_cluster(
        tmp_path, postgres_schema_url, fake_saas, extra_args=("--lease-time", LEASE_TIME), extra_rules=runbook
    ) as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Mark", instance="db-1")).status_code == 202
        wait_for(lambda: marker_lines() == 1, "the step's program")
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1, "the page")
        nodes = nodes_by_id(cluster)
        run_id, owner = cluster.rows("SELECT id, lease_owner FROM runbook_runs")[0]
        assert owner in nodes
        assert run_state() == ("running", "running", 1)

        (first_pid,) = (int(line) for line in Path(f"{marker}.pid").read_text(encoding="utf-8").split())
        assert running(first_pid)
        kill_node(nodes[owner])
        # The kernel kills the program with the daemon that started it (setpriv --pdeathsig), so a
        # retry cannot run beside a first run that is still going.
        wait_for(lambda: not running(first_pid), "the killed node's program to die with it", timeout_s=5)
        # Another node takes the run over once the lease has expired, and leaves the step to a person.
        wait_for(lambda: run_state() == ("waiting", "interrupted", 1), "the step interrupted")
        successor = cluster.scalar("SELECT lease_owner FROM runbook_runs")
        assert successor in nodes
        assert successor != owner
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM approvals WHERE status = 'pending'") == 1, "the decision request")
        assert [tuple(row) for row in cluster.rows("SELECT step, kind, status FROM approvals")] == [
            ("mark", "decision", "pending")
        ]
        assert marker_lines() == 1

        # A person decides through a third node, neither the dead one nor the one executing the run.
        bystander = next(daemon for node, daemon in nodes.items() if node not in (owner, successor))
        answer = bystander.client.post(f"/api/v1/runs/{run_id}/steps/mark/decision", json={"answer": "retry", "actor": "ana"})
        assert answer.status_code == 200, answer.text
        wait_for(lambda: run_state()[0] not in ("running", "waiting"), "the run's end")

        assert run_state() == ("succeeded", "succeeded", 2)
        assert marker_lines() == 2
        assert cluster.scalar("SELECT lease_owner FROM runbook_runs") == successor
        assert [tuple(row) for row in cluster.rows("SELECT kind, status, decided_by FROM approvals")] == [
            ("decision", "retry", "ana")
        ]
        assert cluster.scalar("SELECT count(*) FROM runbook_runs") == 1
        assert cluster.scalar("SELECT count(*) FROM incidents") == 1
        assert [row[0] for row in cluster.rows("SELECT status FROM outbox")] == ["delivered"]
        assert len(cluster.deliveries()) == 1
