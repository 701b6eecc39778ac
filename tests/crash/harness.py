"""One crash scenario: a daemon killed at a crash point, restarted, and everything it stored read back.

The scenario posts two Grafana webhook payloads. `DiskFull` opens INC-1 and
starts the runbook `mark`, whose one mutating step appends a line to a marker
file. `HighLatency` opens INC-2. Each incident sends `opened` to a webhook and
to PagerDuty, and its escalation pages PagerDuty one second later, so a
settled run has six delivered notifications. Both services are the local fake
(`tests.runtime.fakes.FakeSaaS`), which records every request.

`Snapshot` is what the store and the receiver hold at one moment: taken right
after the kill, it shows which sends and steps were in flight, and so how many
deliveries and program runs the final state may contain.
"""

from __future__ import annotations

import collections
import datetime
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from runtime.store import Store, database_url
from runtime.store.schema import alert_events, alerts, incidents, outbox, payloads, runbook_runs, step_runs, timers
from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import PAGERDUTY_KEY, FakeSaaS

# Deadlines that only catch a hung daemon: a healthy one settles in a few seconds.
KILL_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 30.0
POLL_S = 0.05

# Grafana's webhook, which has Alertmanager's format: alerts that come through Alertmanager
# itself skip the channels Alertmanager sends to, so they would send no `opened` messages.
SOURCE_PATH = "/hooks/grafana"
INCIDENTS = 2
# A restarted daemon resumes the runbook runs of the killed one once their lease has expired.
LEASE_TIME = "2s"
NOTIFICATIONS = 6
# Outbox rows that are neither waiting nor being sent.
SETTLED_OUTBOX = ("delivered", "failed", "cancelled")

RULES = """
settings {
  incident_id_format "INC-{number}"
}

team ops {
  webhook "WEBHOOK_URL"
  pagerduty key secret("PAGERDUTY_KEY")
  escalation fast
}

escalation fast {
  after 1s unacknowledged page ops
}

route {
  receiver ops
  group_by [alertname]
  group_wait 0s
}

runbook mark "Append a line to the marker file" {
  when label.alertname == "DiskFull"
  auto
  timeout 10m

  step mark {
    run ["PYTHON", "-c", "import sys; print('ran', file=open(sys.argv[1], 'a'))", "MARKER"]
    mutating
    timeout 1m
  }
}
"""


def webhook_body(name: str) -> bytes:
    """Return a Grafana (Alertmanager format) webhook payload with one firing alert named `name`."""
    alert = {
        "status": "firing",
        "labels": {"alertname": name, "severity": "critical", "instance": "db-1"},
        "annotations": {"summary": f"{name} on db-1"},
        "startsAt": "2026-03-08T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }
    document = {
        "version": "1",
        "orgId": 1,
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {"alertname": name},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://grafana.example.com/",
        "alerts": [alert],
    }
    return json.dumps(document).encode()


PAYLOADS = (webhook_body("DiskFull"), webhook_body("HighLatency"))


def delivery_key(channel: str, data: Any) -> str:
    """Return the JSON text that identifies a notification, as stored in its outbox row or as the receiver got it.

    PagerDuty's sender adds the routing key to the stored event, so the key is left out.
    """
    if channel == "pagerduty" and isinstance(data, dict):
        data = {name: value for name, value in data.items() if name != "routing_key"}
    return json.dumps(data, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows of the store and requests of the receiver at one moment."""

    payload_bodies: collections.Counter[bytes]
    pending_events: int
    alert_keys: list[str]
    incident_keys: list[str]
    timer_states: list[str]
    outbox_rows: list[dict[str, Any]]
    runs: list[str]
    steps: dict[str, str]
    received: collections.Counter[str]
    marker_lines: int

    def outbox_keys(self, status: str) -> collections.Counter[str]:
        """Count the outbox rows in `status` by their delivery key."""
        return collections.Counter(row["key"] for row in self.outbox_rows if row["status"] == status)


@dataclass(slots=True)
class Sender:
    """Posts the scenario's payloads in order and retries one whose request failed, as Alertmanager does."""

    acknowledged: dict[int, int] = field(default_factory=dict)
    # Payloads whose request ended without a response, because the daemon died.
    interrupted: set[int] = field(default_factory=set)

    def send(self, daemon: DaemonProcess) -> None:
        """Post every payload that has no 2xx yet; stop at the first request that gets no response."""
        for number, body in enumerate(PAYLOADS):
            if number in self.acknowledged:
                continue
            try:
                response = daemon.post(SOURCE_PATH, body)
            except httpx.TransportError:
                self.interrupted.add(number)
                return
            assert response.status_code == 202, response.text
            self.acknowledged[number] = response.json()["payload_id"]


class Scenario:
    """The rules, receiver, store and marker file of one crash test, and the daemons started on them."""

    def __init__(self, folder: Path, receiver: FakeSaaS, postgres_url: str | None) -> None:
        self.folder = folder
        self.receiver = receiver
        self.marker = folder / "marker.txt"
        self.state = folder / "state"
        self.database_url = postgres_url or database_url(self.state)
        self.store_arguments = ["--database", postgres_url] if postgres_url else []
        self.secrets = folder / "secrets"
        self.secrets.mkdir()
        (self.secrets / "PAGERDUTY_KEY").write_text(PAGERDUTY_KEY + "\n", encoding="utf-8")
        self.rules = folder / "rules"
        self.rules.mkdir()
        text = (
            RULES.replace("WEBHOOK_URL", receiver.webhook_url)
            .replace("PYTHON", sys.executable)
            .replace("MARKER", str(self.marker))
        )
        (self.rules / "crash.irules").write_text(text, encoding="utf-8")
        self.sender = Sender()
        self._store: Store | None = None

    def daemon(self, environment: dict[str, str] | None = None) -> DaemonProcess:
        """Return an unstarted daemon on this scenario's store that sends notifications to the receiver."""
        return DaemonProcess(
            self.rules,
            self.state,
            secrets_dir=self.secrets,
            allow_unauthenticated=True,
            extra_args=["--no-watch", "--lease-time", LEASE_TIME, *self.store_arguments],
            extra_environment={
                "IRULES_PAGERDUTY_EVENTS_URL": self.receiver.url + self.receiver.pagerduty_path,
                **(environment or {}),
            },
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.database_url, migrate=False)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------ the crash

    def wait_killed(self, daemon: DaemonProcess) -> int:
        """Wait until the daemon process ends and return its exit status, or fail when it outlives the deadline."""
        assert daemon.process is not None, "the daemon was never started"
        try:
            status = daemon.process.wait(timeout=KILL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise AssertionError(
                f"the daemon did not reach its crash point within {KILL_TIMEOUT_S} s:\n{daemon.log_text()}"
            ) from None
        daemon.client.close()
        return status

    def expire_leases(self) -> int:
        """End the leases of outbox rows that were being sent, as the lease time passing would, and return how many.

        A lease lasts `--lease-time` (LEASE_TIME here). Moving its end into the past lets
        the restarted daemon's first `release_expired` put the rows back into the queue
        at its start, instead of at a later run of its reaper.
        """
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        with self.store.write() as connection:
            return connection.execute(outbox.update().where(outbox.c.status == "sending").values(lease_until=past)).rowcount

    # ------------------------------------------------------------ reading back

    def snapshot(self) -> Snapshot:
        """Read the store, the receiver and the marker file."""
        with self.store.read() as connection:
            bodies = collections.Counter(bytes(body) for body in connection.execute(sa.select(payloads.c.body)).scalars())
            pending = connection.execute(
                sa.select(sa.func.count()).select_from(alert_events).where(alert_events.c.processed_at.is_(None))
            ).scalar_one()
            alert_keys = sorted(connection.execute(sa.select(alerts.c.key)).scalars())
            incident_keys = sorted(connection.execute(sa.select(incidents.c.key)).scalars())
            timer_states = sorted(connection.execute(sa.select(timers.c.status)).scalars())
            rows = [
                {
                    "id": row.id,
                    "status": row.status,
                    "channel": row.channel,
                    "key": delivery_key(row.channel, row.message["payload"]),
                }
                for row in connection.execute(
                    sa.select(outbox.c.id, outbox.c.status, outbox.c.channel, outbox.c.message).order_by(outbox.c.id)
                )
            ]
            runs = list(connection.execute(sa.select(runbook_runs.c.status).order_by(runbook_runs.c.id)).scalars())
            steps = {row.name: row.state for row in connection.execute(sa.select(step_runs.c.name, step_runs.c.state))}
        return Snapshot(
            payload_bodies=bodies,
            pending_events=pending,
            alert_keys=alert_keys,
            incident_keys=incident_keys,
            timer_states=timer_states,
            outbox_rows=rows,
            runs=runs,
            steps=steps,
            received=self.received(),
            marker_lines=self.marker_lines(),
        )

    def received(self) -> collections.Counter[str]:
        """Count the notifications the receiver got, by delivery key."""
        counted: collections.Counter[str] = collections.Counter()
        for request in self.receiver.requests(self.receiver.webhook_path):
            counted[delivery_key("webhook", request.data)] += 1
        for request in self.receiver.requests(self.receiver.pagerduty_path):
            counted[delivery_key("pagerduty", request.data)] += 1
        return counted

    def pagerduty_requests(self) -> list[dict[str, Any]]:
        return [request.data for request in self.receiver.requests(self.receiver.pagerduty_path)]

    def marker_lines(self) -> int:
        if not self.marker.exists():
            return 0
        return len(self.marker.read_text(encoding="utf-8").splitlines())

    def wait_settled(self, daemon: DaemonProcess) -> Snapshot:
        """Wait until every event is applied, every timer and notification is done and the run has stopped moving."""
        return wait_for(self.snapshot, settled, daemon)


def settled(snapshot: Snapshot) -> bool:
    """Return True when nothing in the snapshot is left for the daemon to do without a person."""
    run_done = snapshot.runs == ["succeeded"] or (snapshot.runs == ["waiting"] and snapshot.steps.get("mark") == "interrupted")
    return (
        snapshot.pending_events == 0
        and len(snapshot.incident_keys) == INCIDENTS
        and snapshot.timer_states != []
        and "pending" not in snapshot.timer_states
        and len(snapshot.outbox_rows) == NOTIFICATIONS
        and all(row["status"] in SETTLED_OUTBOX for row in snapshot.outbox_rows)
        and run_done
    )


def wait_for(read: Callable[[], Snapshot], done: Callable[[Snapshot], bool], daemon: DaemonProcess) -> Snapshot:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        snapshot = read()
        if done(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {SETTLE_TIMEOUT_S} s: {snapshot}\n{daemon.log_text()}")
        time.sleep(POLL_S)


KILLED = -signal.SIGKILL
