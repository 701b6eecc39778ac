"""A time-compressed soak: unique alerts churn for 45 s while the only receiver always fails.

Retention keeps ended incidents for 4 s and runs every 5 s (the heartbeat), so the
store should hold about (4 + 5 + the incidents' own life) seconds of churn at any
moment, not the whole run. The soak runs once on SQLite and once on PostgreSQL
(a schema of its own on the machine's server); tests/cluster/test_retention.py
checks retention's SQL row by row on both.

What levels off is checked against what would pile up without retention: every
table stays far below the rows the whole churn makes, and the last third of the
run holds no more than the middle third (plus slack for the 5 s retention steps),
where without retention it would hold half as much again. Resident memory may
grow while caches warm, then must stay flat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

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

# Long enough for the tables to level off within the first third; two runs take about 100 s.
CHURN_S = 45.0
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


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES}


@pytest.fixture
def receiver() -> Iterator[FakeSaaS]:
    with FakeSaaS() as fake:
        # The only receiver fails for the whole run; each message keeps retrying until its incident goes.
        fake.fail_next(fake.webhook_path, 503, times=1_000_000)
        yield fake


def test_tables_and_memory_level_off_at_the_retention(tmp_path: Path, store_url: str, receiver: FakeSaaS) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.irules").write_text(RULES, encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WEBHOOK_URL").write_text(receiver.webhook_url + "\n", encoding="utf-8")
    retention = ("--retain-incidents", "4s", "--retain-payloads", "4s", "--retain-dead-letters", "4s", "--retention-every", "1s")
    # On SQLite, `store_url` names the irules.db that the daemon creates in its `--state` folder.
    store = () if store_url.startswith("sqlite") else ("--database", store_url, "--spool", str(tmp_path / "spool"))
    daemon = DaemonProcess(
        rules, tmp_path / "state", secrets_dir=secrets, allow_unauthenticated=True, extra_args=("--no-watch", *retention, *store)
    )
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
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
                samples.append((time.monotonic() - started, resident_kib(daemon.process.pid), counts(engine)))
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.01)
        log = daemon.log_text()
    engine.dispose()

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
    # The churn makes `sent` incidents; retention keeps about 10 s worth of them.
    final = samples[-1][2]
    assert final["incidents"] < sent / 3, final
    assert final["payloads"] < 2 * sent / 3, final
    memory_middle = max(sample[1] for sample in middle)
    memory_last = max(sample[1] for sample in last)
    assert memory_last <= memory_middle + 20 * 1024, [sample[1] for sample in samples]
