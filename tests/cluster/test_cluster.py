"""Three daemons on one PostgreSQL schema share the work: nothing is lost, nothing is done twice.

Each test starts real `irules daemon` processes on their own 127.0.0.1 ports
against the machine's PostgreSQL, in a schema of its own, with notifications
going to a local fake webhook receiver.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest

from tests.cluster.harness import alertmanager_body, start_cluster, wait_for
from tests.cluster.test_takeover import kill_node
from tests.runtime.fakes import FakeSaaS

pytestmark = pytest.mark.slow


def test_status_lists_every_node(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    with start_cluster(tmp_path, postgres_schema_url, fake_saas) as cluster:
        statuses = [daemon.status()["cluster"] for daemon in cluster.daemons]
        ids = {status["node"] for status in statuses}
        assert len(ids) == 3
        for status in statuses:
            assert {node["id"] for node in status["nodes"]} == ids
        for daemon, status in zip(cluster.daemons, statuses, strict=True):
            assert status["node"].split(":")[1] == str(daemon.port)


def test_short_lease_keeps_live_nodes_listed(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    # With a 2 s lease, heartbeats every 5 s would let each live node drop out of the
    # list (and have its leases taken over) between two heartbeats.
    with start_cluster(tmp_path, postgres_schema_url, fake_saas, nodes=2, extra_args=("--lease-time", "2s")) as cluster:
        counts = []
        for _ in range(24):
            counts.append(len(cluster.daemons[0].status()["cluster"]["nodes"]))
            time.sleep(0.25)
    assert counts == [2] * 24


def test_killed_peer_is_logged_by_survivor(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    with start_cluster(tmp_path, postgres_schema_url, fake_saas, nodes=2, extra_args=("--lease-time", "2s")) as cluster:
        survivor, victim = cluster.daemons
        victim_id = victim.status()["cluster"]["node"]
        kill_node(victim)

        def silent_lines() -> list[str]:
            return [record["message"] for record in survivor.log_records() if "node silent" in record.get("message", "")]

        wait_for(lambda: bool(silent_lines()), "the survivor to log the silent node", 15)
        lines = silent_lines()
    assert len(lines) == 1
    assert f"node_id={victim_id} listen=127.0.0.1:{victim.port}" in lines[0]


def test_same_webhook_on_two_nodes_makes_one_page(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    body = alertmanager_body("DiskFull", instance="db-1")
    with start_cluster(tmp_path, postgres_schema_url, fake_saas) as cluster:
        first, second = cluster.daemons[0], cluster.daemons[1]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda daemon: daemon.post("/hooks/alertmanager", body), (first, second)))
        assert [answer.status_code for answer in answers] == [202, 202]

        wait_for(lambda: cluster.scalar("SELECT count(*) FROM alert_events WHERE processed_at IS NULL") == 0, "events applied")
        wait_for(lambda: len(cluster.deliveries()) >= 1, "the page")
        wait_for(
            lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 0, "outbox drained"
        )

        assert cluster.scalar("SELECT count(*) FROM alert_events") == 2
        assert cluster.scalar("SELECT count(*) FROM incidents") == 1
        assert cluster.scalar("SELECT count(*) FROM alerts") == 1
        assert cluster.scalar("SELECT occurrences FROM alerts") == 2
        assert cluster.scalar("SELECT count(*) FROM outbox") == 1
        assert len(cluster.deliveries()) == 1


def test_acknowledgement_on_one_node_stops_escalation(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    with start_cluster(tmp_path, postgres_schema_url, fake_saas, escalate_after="4s") as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Latency")).status_code == 202
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM timers WHERE status = 'pending'") == 1, "the escalation timer")
        incident = cluster.scalar("SELECT key FROM incidents")

        # Acknowledge through a node that did not receive the alert; any node could fire the timer.
        answer = cluster.daemons[2].client.post(f"/api/v1/incidents/{incident}/ack", json={"actor": "ana"})
        assert answer.status_code == 200, answer.text

        assert cluster.scalar("SELECT status FROM timers") == "cancelled"
        wait_for(
            lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 0, "outbox drained"
        )
        # The due time passes on every node without a page.
        wait_for(lambda: cluster.scalar("SELECT now() > max(due_at) + interval '3 seconds' FROM timers"), "due time passed")
        assert cluster.scalar("SELECT count(*) FROM timeline WHERE kind = 'escalation.step'") == 0
        events = [delivery.get("event") for delivery in cluster.deliveries()]
        assert "escalated" not in events


def test_two_hundred_timers_fire_once_each(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    with start_cluster(tmp_path, postgres_schema_url, fake_saas) as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Queue")).status_code == 202
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM timers") == 1, "the incident")
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 0, "first page")
        incident_id = cluster.scalar("SELECT id FROM incidents")
        cluster.execute("DELETE FROM timers")
        # 200 steps due in the same second, copied from the shape `escalation.schedule` writes.
        cluster.execute(
            """
            INSERT INTO timers (key, kind, incident_id, due_at, status, data, created_at)
            SELECT 'load:' || n, 'escalation.unacknowledged', :incident, date_trunc('second', now()) + interval '2 seconds',
                   'pending',
                   json_build_object('policy', 'standard', 'round', 0, 'step', n, 'after_s', 0, 'state', 'unacknowledged',
                                     'action', 'notify', 'target', 'oncall', 'level', NULL,
                                     'severities', json_build_array()),
                   now()
            FROM generate_series(1, 200) AS n
            """,
            incident=incident_id,
        )

        wait_for(lambda: cluster.scalar("SELECT count(*) FROM timers WHERE status = 'pending'") == 0, "timers fired")
        wait_for(
            lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 0, "outbox drained"
        )

        assert cluster.scalar("SELECT count(*) FROM timers WHERE status = 'fired'") == 200
        assert cluster.scalar("SELECT count(*) FROM timeline WHERE kind = 'escalation.step'") == 200
        assert cluster.scalar("SELECT count(*) FROM outbox WHERE key LIKE 'timer:%'") == 200
        assert cluster.scalar("SELECT count(DISTINCT key) FROM outbox WHERE key LIKE 'timer:%'") == 200
        sent = [row[0] for row in cluster.rows("SELECT status FROM outbox WHERE key LIKE 'timer:%'")]
        assert set(sent) <= {"delivered", "folded"}
        # Every message went out once: delivered alone or inside one delivered digest.
        delivered_alone = sent.count("delivered")
        folded = cluster.scalar(
            "SELECT coalesce(sum(json_array_length(reference->'folded')), 0) FROM outbox WHERE event = 'digest' AND status = 'delivered'"
        )
        assert delivered_alone + folded == 200
        assert len(cluster.deliveries()) == 1 + delivered_alone + cluster.scalar(
            "SELECT count(*) FROM outbox WHERE event = 'digest'"
        )


def test_failing_receiver_gets_each_notification_once(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    # Time-compressed: the receiver responds 503 with `Retry-After: 1` to its next 4 requests instead
    # of failing for two minutes. A fifth failure would open the endpoint's circuit breaker, which all
    # nodes share, for 30 s.
    fake_saas.fail_next(fake_saas.webhook_path, 503, headers={"Retry-After": "1"}, times=4)
    with start_cluster(tmp_path, postgres_schema_url, fake_saas) as cluster:
        for index, daemon in enumerate(cluster.daemons):
            body = alertmanager_body(f"Outage{index}", instance=f"host-{index}")
            assert daemon.post("/hooks/alertmanager", body).status_code == 202
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox") == 3, "three pages queued")
        wait_for(
            lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 3, "every page delivered", 90
        )

        requests = fake_saas.requests(fake_saas.webhook_path)
        assert len(requests) == 4 + 3
        delivered = [request.body for request in requests[4:]]
        assert len(set(delivered)) == 3
        assert cluster.scalar("SELECT sum(attempts) FROM outbox") == 7


def test_receiver_down_two_minutes_gets_each_once(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    # Not time-compressed: the receiver responds 503 to every request for two minutes. The
    # shared circuit breaker opens after 5 failures and tries one message after 30, 60 and
    # 120 s, so the first trial after the recovery comes about 3.5 minutes after the start.
    down_s = 120.0
    fake_saas.fail_for(fake_saas.webhook_path, 503, down_s, headers={"Retry-After": "1"})
    recovered_at = time.monotonic() + down_s
    with start_cluster(tmp_path, postgres_schema_url, fake_saas) as cluster:
        for index, daemon in enumerate(cluster.daemons):
            body = alertmanager_body(f"Outage{index}", instance=f"host-{index}")
            assert daemon.post("/hooks/alertmanager", body).status_code == 202
        wait_for(
            lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 3, "every page delivered", 330
        )
        statuses = [tuple(row) for row in cluster.rows("SELECT status, count(*) FROM outbox GROUP BY status")]

    requests = fake_saas.requests(fake_saas.webhook_path)
    failed = [request for request in requests if request.status == 503]
    succeeded = [request for request in requests if request.status == 200]
    assert statuses == [("delivered", 3)]
    assert len(failed) + len(succeeded) == len(requests)
    # Every 503 came while the receiver was down, and every 200 after it recovered.
    assert all(request.at < recovered_at for request in failed)
    assert all(request.at >= recovered_at for request in succeeded)
    # Each of the three pages arrived once.
    assert len(succeeded) == 3
    assert len({request.body for request in succeeded}) == 3
