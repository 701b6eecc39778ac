"""A time-compressed soak: unique alerts churn for a minute while the only receiver always fails.

Retention keeps ended incidents for 4 s and runs every 5 s (the heartbeat), so the
store should hold about (4 + 5 + the incidents' own life) seconds of churn at any
moment, not the whole minute. The daemon runs on SQLite; retention is the same SQL
on PostgreSQL, which tests/cluster/test_retention.py covers row by row.

What levels off is checked against what would pile up without retention: every
table stays far below the rows a minute of churn makes, and the last third of the
run holds no more than the middle third (plus slack for the 5 s retention steps).
Resident memory may grow while caches warm, then must stay flat.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import FakeSaaS

pytestmark = pytest.mark.slow

RULES = """
settings {
  incident_id_format "INC-{number}"
}

team ops {
  webhook url secret("WEBHOOK_URL")
}

route {
  receiver ops
  group_by [alertname, instance]
  group_wait 0s
}

source churn {
  auth none
  map {
    label.alertname = body.name
    label.instance = body.instance
  }
  resolved when body.status == "resolved"
}

dedup {
  by [alertname, instance]
  window 1s
}

correlate one-per-alert {
  by [alertname, instance]
  window 1s
}
"""

CHURN_S = 60.0
ALERTS_PER_S = 20
# An alert resolves this many alerts (0.5 s) after it fired.
RESOLVE_AFTER = 10
SAMPLE_EVERY_S = 3.0
TABLES = ("incidents", "alerts", "timeline", "outbox", "payloads", "alert_events", "notification_groups")


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def counts(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


@pytest.fixture
def receiver() -> Iterator[FakeSaaS]:
    with FakeSaaS() as fake:
        # The only receiver fails for the whole run; each message keeps retrying until its incident goes.
        fake.fail_next(fake.webhook_path, 503, times=1_000_000)
        yield fake


def test_tables_and_memory_level_off_at_the_retention(tmp_path: Path, receiver: FakeSaaS) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.irules").write_text(RULES, encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WEBHOOK_URL").write_text(receiver.webhook_url + "\n", encoding="utf-8")
    retention = ("--retain-incidents", "4s", "--retain-payloads", "4s", "--retain-dead-letters", "4s", "--retention-every", "1s")
    daemon = DaemonProcess(
        rules, tmp_path / "state", secrets_dir=secrets, allow_unauthenticated=True, extra_args=("--no-watch", *retention)
    )
    samples: list[tuple[float, int, dict[str, int]]] = []
    with daemon:
        assert daemon.process is not None
        started = time.monotonic()
        next_sample = started + SAMPLE_EVERY_S
        sent = 0
        while (elapsed := time.monotonic() - started) < CHURN_S:
            while sent < elapsed * ALERTS_PER_S:
                body = {"name": "Churn", "instance": f"i-{sent}", "status": "firing"}
                assert daemon.client.post("/hooks/churn", content=json.dumps(body)).status_code == 202
                if sent >= RESOLVE_AFTER:
                    ended = {"name": "Churn", "instance": f"i-{sent - RESOLVE_AFTER}", "status": "resolved"}
                    assert daemon.client.post("/hooks/churn", content=json.dumps(ended)).status_code == 202
                sent += 1
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - started, resident_kib(daemon.process.pid), counts(daemon.state / "irules.db")))
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.01)
        log = daemon.log_text()

    assert sent >= CHURN_S * ALERTS_PER_S - 1
    assert "retention" in log
    middle = [sample for sample in samples if CHURN_S / 3 <= sample[0] < 2 * CHURN_S / 3]
    last = [sample for sample in samples if sample[0] >= 2 * CHURN_S / 3]
    assert len(middle) >= 4, samples
    assert len(last) >= 4, samples
    for table in TABLES:
        peak_middle = max(sample[2][table] for sample in middle)
        peak_last = max(sample[2][table] for sample in last)
        # Without retention the last third would hold half as much again as the middle third.
        assert peak_last <= peak_middle * 1.25 + 20, (table, [sample[2][table] for sample in samples])
    # A minute of churn makes `sent` incidents; retention keeps about 10 s worth of them.
    final = samples[-1][2]
    assert final["incidents"] < sent / 3, final
    assert final["payloads"] < 2 * sent / 3, final
    memory_middle = max(sample[1] for sample in middle)
    memory_last = max(sample[1] for sample in last)
    assert memory_last <= memory_middle + 20 * 1024, [sample[1] for sample in samples]
