"""Outbox leases, rate limits and circuit breakers across three daemons on one PostgreSQL schema.

Each test starts three `irules daemon` processes with `tag_senders`, so the
query of every request the fake webhook receiver records names the node that
sent it. The rate and breaker tests queue their messages as outbox rows of
event `resolved`, which are never folded into a digest, so the receiver gets
one request per row.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from runtime.notify.outbox import RATES, RENEWALS_PER_LEASE
from runtime.store.schema import outbox
from tests.cluster.harness import Cluster, alertmanager_body, start_cluster, wait_for
from tests.cluster.test_takeover import kill_node
from tests.runtime.fakes import FakeSaaS
from tests.runtime.test_outbox import WEBHOOK_ENDPOINT, webhook_rows

pytestmark = pytest.mark.slow

LEASE_S = 4.0
LEASE_TIME = "4s"
REAPER_PERIOD_S = LEASE_S / RENEWALS_PER_LEASE
# Seconds the receiver holds back its response to a send that must outlive the lease.
LONG_ANSWER_S = 6.0
# The outbox endpoint of the harness's `webhook url secret("WEBHOOK_URL")`.
ENDPOINT = WEBHOOK_ENDPOINT
# The receiver stamps a request when it arrives, which is later than the moment its sender took
# the token by the claim's commit and the HTTP round trip. Windows are widened by this much to
# allow for the difference between two requests' delays on a loaded machine.
ARRIVAL_JITTER_S = 0.3
# The breaker's settings in the daemon (`BreakerSettings` defaults).
BREAKER_THRESHOLD = 5
BREAKER_OPEN_S = 30.0


def sender_index(query: str) -> int:
    """Return the index of the node that sent a request, from the `node` parameter that `tag_senders` puts in its URL."""
    return int(parse_qs(query)["node"][0])


def queue_resolutions(cluster: Cluster, count: int) -> None:
    """Insert `count` pending webhook messages whose payloads are numbered from 0."""
    now = datetime.datetime.now(datetime.UTC)
    rows = webhook_rows(count, now)
    with cluster.engine.begin() as connection:
        connection.execute(outbox.insert(), rows)


def outbox_rows(cluster: Cluster) -> list[tuple[str, int]]:
    return [tuple(row) for row in cluster.rows("SELECT status, attempts FROM outbox ORDER BY id")]


def test_send_longer_than_lease_keeps_its_row(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    path = fake_saas.webhook_path
    fake_saas.delay_next(path, LONG_ANSWER_S)
    with start_cluster(
        tmp_path, postgres_schema_url, fake_saas, extra_args=("--lease-time", LEASE_TIME), tag_senders=True
    ) as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Outage", instance="db-1")).status_code == 202
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1, "the delivery")

        # A takeover would have leased the row again (attempt 2) and sent a second request.
        assert len(fake_saas.requests(path)) == 1
        assert outbox_rows(cluster) == [("delivered", 1)]


def test_killed_sender_row_sent_by_other_node(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    path = fake_saas.webhook_path
    # The first request gets no response while the test runs, so its sender is killed mid-send.
    fake_saas.delay_next(path, 120.0)
    with start_cluster(
        tmp_path, postgres_schema_url, fake_saas, extra_args=("--lease-time", LEASE_TIME), tag_senders=True
    ) as cluster:
        assert cluster.daemons[0].post("/hooks/alertmanager", alertmanager_body("Outage", instance="db-1")).status_code == 202
        wait_for(lambda: len(fake_saas.requests(path)) == 1, "the first attempt")
        victim = sender_index(fake_saas.requests(path)[0].query)
        kill_node(cluster.daemons[victim])
        killed_at = time.monotonic()
        lease_until = cluster.scalar("SELECT lease_until FROM outbox WHERE status = 'sending'")
        assert lease_until is not None

        # The lease ends at most one lease time after the kill, and the next reaper run releases the row.
        deadline_s = LEASE_S + REAPER_PERIOD_S + 3.0
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1, "the re-send")

        requests = fake_saas.requests(path)
        assert len(requests) == 2
        assert requests[0].body == requests[1].body
        assert sender_index(requests[1].query) != victim
        assert requests[1].at - killed_at <= deadline_s
        # The other node waited for the lease to end: the re-send arrived after `lease_until`.
        resent_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=time.monotonic() - requests[1].at)
        assert resent_at > lease_until
        assert outbox_rows(cluster) == [("delivered", 2)]


def test_three_nodes_share_rate_limit(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    rate, burst = RATES["webhook"]
    path = fake_saas.webhook_path
    with start_cluster(tmp_path, postgres_schema_url, fake_saas, tag_senders=True) as cluster:
        queue_resolutions(cluster, 60)
        wait_for(lambda: cluster.scalar("SELECT count(*) FROM outbox WHERE status = 'delivered'") == 60, "60 deliveries")

        requests = fake_saas.requests(path)
        assert sorted(request.data["sequence"] for request in requests) == list(range(60))
        # Exact counting over every window between two arrivals: at most burst + rate * length.
        times = sorted(request.at for request in requests)
        for first in range(len(times)):
            for last in range(first, len(times)):
                allowed = burst + rate * (times[last] - times[first] + ARRIVAL_JITTER_S)
                assert last - first + 1 <= allowed, f"{last - first + 1} requests in {times[last] - times[first]:.3f} s"
        assert outbox_rows(cluster) == [("delivered", 1)] * 60


def test_breaker_opened_on_one_node_holds_all(tmp_path: Path, postgres_schema_url: str, fake_saas: FakeSaaS) -> None:
    path = fake_saas.webhook_path
    fake_saas.fail_next(path, 503, headers={"Retry-After": "0"}, times=1000)
    with start_cluster(tmp_path, postgres_schema_url, fake_saas, tag_senders=True) as cluster:
        queue_resolutions(cluster, BREAKER_THRESHOLD + 1)
        wait_for(lambda: len(fake_saas.requests(path)) == BREAKER_THRESHOLD, "the failures that open the breaker")
        opened_by = sender_index(fake_saas.requests(path)[-1].query)
        wait_for(lambda: len(fake_saas.requests(path)) == BREAKER_THRESHOLD + 1, "the trial", timeout_s=BREAKER_OPEN_S + 10.0)
        trial = fake_saas.requests(path)[-1]
        # After the failed trial the breaker stays open for twice the pause, so nothing follows it for a while.
        time.sleep(5.0)

        requests = fake_saas.requests(path)
        assert len(requests) == BREAKER_THRESHOLD + 1
        opened_at = requests[BREAKER_THRESHOLD - 1].at
        # No node sent during the pause, neither the one that opened the breaker nor the others.
        assert trial.at - opened_at >= BREAKER_OPEN_S, (opened_by, sender_index(trial.query))
        assert [request.status for request in requests] == [503] * (BREAKER_THRESHOLD + 1)
        assert cluster.scalar("SELECT failures FROM endpoint_state WHERE endpoint = :endpoint", endpoint=ENDPOINT) == 6
        assert cluster.scalar("SELECT pause_s FROM endpoint_state WHERE endpoint = :endpoint", endpoint=ENDPOINT) == 120.0
