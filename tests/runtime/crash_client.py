"""Parts of the daemon crash test: the daemon as a child process, the webhook workload, a retrying sender and a killer.

The sender behaves like Alertmanager: it resends a notification until it gets a
2xx, so a payload that was committed just before a kill arrives twice. The
killer sends SIGKILL at random moments and restarts the daemon on the same port
and store. Everything random comes from one seeded `random.Random`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
FIRING = "firing"
RESOLVED = "resolved"
ALERT_NAMES = ("HighLatency", "ErrorRate", "DiskFull", "PodCrashLooping", "QueueBacklog")
BASE_TIME = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)
# Alertmanager's "no end time" for a firing alert: Go's zero time.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_PAYLOAD_ALERTS = 50
READY_TIMEOUT_S = 60.0


# ---------------------------------------------------------------- the daemon


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DaemonProcess:
    """`irules daemon` as a child process that can be killed and started again on the same port and store."""

    def __init__(self, rules: Path, store_arguments: list[str], port: int, log_path: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.command = [
            sys.executable,
            "-m",
            "runtime.cli",
            "daemon",
            "--rules",
            str(rules),
            *store_arguments,
            "--listen",
            f"127.0.0.1:{port}",
            "--allow-unauthenticated",
            "--no-watch",
            "--log-level",
            "warning",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        """Start the daemon and wait until `/readyz` returns 200."""
        assert self.process is None, "the daemon is already running"
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the daemon exited with status {self.process.returncode} while starting:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.base_url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"the daemon was not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """Send SIGKILL and reap the process, so the port is free for the next start."""
        assert self.process is not None, "the daemon is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None
        self.kills += 1

    def stop(self) -> int:
        """Stop the daemon with SIGTERM, its graceful shutdown, and return its exit status."""
        assert self.process is not None, "the daemon is not running"
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.process = None
        return status

    def ensure_stopped(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pending_events(self) -> int:
        with httpx.Client(timeout=10.0) as client:
            response = client.get(f"{self.base_url}/status")
        response.raise_for_status()
        return int(response.json()["pending_events"])

    def wait_drained(self, timeout_s: float) -> None:
        """Poll `/status` until the pipeline has applied every stored event."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pending_events() == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.pending_events()} alert events were still pending after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- the workload


@dataclass(frozen=True, slots=True)
class PlannedAlert:
    """One alert as sent: `fingerprint` is what the daemon keys it by, `group` decides its incident."""

    fingerprint: str
    labels: dict[str, str]
    group: str
    status: str
    starts_at: str


@dataclass(slots=True)
class PlannedPayload:
    """One webhook notification.

    The sender posts it only after every payload numbered below `after` got a 2xx,
    so a repeat or a resolution never overtakes the firing alert it refers to.
    """

    number: int
    alerts: list[PlannedAlert]
    after: int
    body: bytes = b""


@dataclass(slots=True)
class Workload:
    payloads: list[PlannedPayload]
    alerts: list[PlannedAlert]
    groups: list[str]

    def alerts_sent(self) -> int:
        return sum(len(payload.alerts) for payload in self.payloads)


def alert_fingerprint(labels: dict[str, str]) -> str:
    """Return 16 hex digits derived from the labels, the form of Alertmanager's `fingerprint` field."""
    text = "\xff".join(f"{name}\xff{value}" for name, value in sorted(labels.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def plan_workload(rng: random.Random, distinct_alerts: int, groups: int, lag: int) -> Workload:
    """Plan the notifications: anchors, fresh alerts, repeats and resolutions.

    Payload 0 fires one anchor alert per group and is never resolved, so each
    group's incident stays open and every later alert of the group joins it.
    Fresh alerts follow in payloads of 1 to 50. Now and then a follow-up payload
    repeats or resolves alerts of payloads at least `lag` positions earlier.
    """
    group_names = [f"group-{index:02d}" for index in range(groups)]
    alerts = [_planned_alert(rng, index, group_names[index % groups]) for index in range(distinct_alerts)]
    anchors = alerts[:groups]
    payloads = [PlannedPayload(0, anchors, after=0)]
    fresh_payload_alerts: list[list[PlannedAlert]] = []
    position = groups
    while position < distinct_alerts:
        size = rng.randint(1, MAX_PAYLOAD_ALERTS)
        batch = alerts[position : position + size]
        position += len(batch)
        payloads.append(PlannedPayload(len(payloads), batch, after=1))
        fresh_payload_alerts.append(batch)
        if len(fresh_payload_alerts) > lag and rng.random() < 0.3:
            payloads.append(_follow_up(rng, len(payloads), fresh_payload_alerts, lag, anchors))
    for payload in payloads:
        payload.body = _body(payload, rng)
    return Workload(payloads, alerts, group_names)


def _planned_alert(rng: random.Random, index: int, group: str) -> PlannedAlert:
    labels = {
        "alertname": ALERT_NAMES[index % len(ALERT_NAMES)],
        "group": group,
        "instance": f"host-{index:05d}",
        "severity": rng.choice(("critical", "warning", "info")),
    }
    starts_at = (BASE_TIME + datetime.timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
    return PlannedAlert(alert_fingerprint(labels), labels, group, FIRING, starts_at)


def _follow_up(
    rng: random.Random, number: int, fresh_payload_alerts: list[list[PlannedAlert]], lag: int, anchors: list[PlannedAlert]
) -> PlannedPayload:
    """Plan a payload that repeats or resolves alerts whose own payloads were acknowledged already."""
    settled = fresh_payload_alerts[: len(fresh_payload_alerts) - lag]
    candidates = [alert for batch in settled for alert in batch] + anchors
    chosen = rng.sample(candidates, min(len(candidates), rng.randint(1, MAX_PAYLOAD_ALERTS)))
    resolve_share = rng.choice((0.0, 0.5, 1.0))
    anchor_fingerprints = {anchor.fingerprint for anchor in anchors}
    follow_up = []
    for alert in chosen:
        resolve = alert.fingerprint not in anchor_fingerprints and rng.random() < resolve_share
        follow_up.append(
            PlannedAlert(alert.fingerprint, alert.labels, alert.group, RESOLVED if resolve else FIRING, alert.starts_at)
        )
    # Payload numbers run ahead of `fresh_payload_alerts` by the anchor payload and the
    # follow-ups so far, so the settled payloads all sit below this bound.
    return PlannedPayload(number, follow_up, after=number - lag)


def _body(payload: PlannedPayload, rng: random.Random) -> bytes:
    """Serialise a notification the way Alertmanager's webhook (version 4) sends it."""
    ends_at = (BASE_TIME + datetime.timedelta(hours=1, seconds=payload.number)).isoformat().replace("+00:00", "Z")
    entries = [
        {
            "status": alert.status,
            "labels": alert.labels,
            "annotations": {"summary": f"{alert.labels['alertname']} on {alert.labels['instance']}"},
            "startsAt": alert.starts_at,
            "endsAt": ends_at if alert.status == RESOLVED else GO_ZERO_TIME,
            "generatorURL": f"http://prometheus.invalid/graph?g0.expr=up&notification={payload.number}",
            "fingerprint": alert.fingerprint,
        }
        for alert in payload.alerts
    ]
    document = {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": FIRING if any(alert.status == FIRING for alert in payload.alerts) else RESOLVED,
        "receiver": "crash-test",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid:9093",
        "alerts": entries,
    }
    return json.dumps(document, separators=(",", ":")).encode()


# ---------------------------------------------------------------- the sender


@dataclass(slots=True)
class Acknowledgement:
    """The one 2xx a payload got: the status and the payload id from the daemon's response."""

    number: int
    status: int
    payload_id: int
    alerts: int


@dataclass(slots=True)
class SenderRecord:
    """What the sender did: attempts per payload (each may have been stored) and the 2xx responses."""

    attempts: dict[int, int] = field(default_factory=dict)
    acknowledgements: dict[int, Acknowledgement] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    retries: int = 0


class Sender:
    """Post every planned payload from several threads, retrying each until it gets a 2xx."""

    def __init__(self, base_url: str, workload: Workload, concurrency: int, seed: int) -> None:
        self.url = f"{base_url}/hooks/alertmanager"
        self.payloads = workload.payloads
        self.concurrency = concurrency
        self.seed = seed
        self.record = SenderRecord()
        self._condition = threading.Condition()
        self._next = 0
        self._acknowledged_below = 0
        self._acknowledged: set[int] = set()
        self._stop = threading.Event()
        self.done = threading.Event()

    @property
    def acknowledged_count(self) -> int:
        with self._condition:
            return len(self._acknowledged)

    def run(self) -> None:
        """Send everything and return when every payload got a 2xx or a request got a 4xx."""
        threads = [
            threading.Thread(target=self._work, args=(index,), name=f"sender-{index}") for index in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.done.set()

    def _take(self) -> PlannedPayload | None:
        with self._condition:
            if self._next >= len(self.payloads) or self._stop.is_set():
                return None
            payload = self.payloads[self._next]
            self._next += 1
            while self._acknowledged_below < payload.after and not self._stop.is_set():
                self._condition.wait(timeout=1.0)
            return None if self._stop.is_set() else payload

    def _work(self, index: int) -> None:
        rng = random.Random(f"{self.seed}-sender-{index}")
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
            while (payload := self._take()) is not None:
                self._send(client, payload, rng)

    def _send(self, client: httpx.Client, payload: PlannedPayload, rng: random.Random) -> None:
        delay = 0.02
        while not self._stop.is_set():
            with self._condition:
                self.record.attempts[payload.number] = self.record.attempts.get(payload.number, 0) + 1
            try:
                response = client.post(self.url, content=payload.body, headers={"content-type": "application/json"})
            except httpx.TransportError:
                response = None
            if response is not None and 200 <= response.status_code < 300:
                self._acknowledge(payload, response)
                return
            if response is not None and response.status_code < 500:
                self.abort(f"payload {payload.number}: HTTP {response.status_code}: {response.text[:300]}")
                return
            with self._condition:
                self.record.retries += 1
            time.sleep(delay * rng.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.5)

    def _acknowledge(self, payload: PlannedPayload, response: httpx.Response) -> None:
        answer = response.json()
        acknowledgement = Acknowledgement(payload.number, response.status_code, int(answer["payload_id"]), int(answer["alerts"]))
        with self._condition:
            self.record.acknowledgements[payload.number] = acknowledgement
            self._acknowledged.add(payload.number)
            while self._acknowledged_below in self._acknowledged:
                self._acknowledged_below += 1
            self._condition.notify_all()

    def abort(self, message: str) -> None:
        """Stop sending: every thread finishes its current request and takes no more."""
        with self._condition:
            self.record.failures.append(message)
            self._stop.set()
            self._condition.notify_all()


# ---------------------------------------------------------------- the killer


class Killer(threading.Thread):
    """SIGKILL the daemon at random moments while the sender runs, and start it again each time.

    Kill moments are spread over the run: each waits until a random share of the
    payloads got a 2xx, then a random delay of up to a quarter second, so kills
    land mid-request, mid-commit and mid-pipeline-batch.
    """

    def __init__(self, daemon: DaemonProcess, sender: Sender, rng: random.Random, kills: int) -> None:
        super().__init__(name="killer")
        self.daemon = daemon
        self.sender = sender
        self.rng = rng
        self.shares = sorted(rng.uniform(0.05, 0.9) for _ in range(kills))
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            total = len(self.sender.payloads)
            for share in self.shares:
                while self.sender.acknowledged_count < share * total and not self.sender.done.is_set():
                    time.sleep(0.01)
                time.sleep(self.rng.uniform(0.0, 0.25))
                self.kill_and_restart()
        except BaseException as error:
            self.error = error
            self.sender.abort(f"the killer failed: {error}")

    def kill_and_restart(self) -> None:
        """Kill the daemon, leave the port closed for up to 0.3 s so senders see refused connections, and start it."""
        self.daemon.kill()
        time.sleep(self.rng.uniform(0.0, 0.3))
        self.daemon.start()


def environment_seed() -> int:
    """Return the seed from IRULES_CRASH_SEED, to rerun a failed run, or a new random one."""
    text = os.environ.get("IRULES_CRASH_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)
