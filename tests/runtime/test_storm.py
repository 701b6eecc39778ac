"""Alert storm on a fake clock: 10,000 distinct alerts in one minute.

The test checks four things. Alerts are grouped into incidents by their routes.
Chat messages are rate limited and folded into digests. The one critical page
goes out within its group wait. The e-mail receiver is served while Slack's
backlog waits.
"""

from __future__ import annotations

import datetime
import itertools
from collections import Counter

import pytest

from runtime.notify.model import DELIVERED, Delivery, Outbound
from runtime.notify.outbox import DIGEST_INTERVAL_S, RATES
from runtime.store import Store
from tests.runtime.notify_harness import T0, FakeClock, Harness, alert, load_policy

RULES = """
settings {
  incident_id_format "INC-{number}"
  daemon_url "https://irules.example.com"
  smtp "127.0.0.1:2525"
    from "irules@example.com"
}

receiver chat {
  slack url secret("STORM_SLACK_WEBHOOK")
}

receiver pager {
  pagerduty key secret("STORM_PAGERDUTY_KEY")
}

receiver dba {
  email "dba@example.com"
}

route {
  receiver chat
  group_by [alertname, cluster]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
  match severity = "critical" -> pager {
    group_by [alertname]
    group_wait 10s
  }
  match team = "db" -> dba {
    group_by [alertname, instance]
    group_wait 30s
  }
}
"""

CRITICAL_AT_S = 30


class Recorder:
    """Sender that records each message with the fake time it went out."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime.datetime, Outbound]] = []

    async def __call__(self, outbound: Outbound) -> Delivery:
        self.sent.append((self.clock(), outbound))
        return Delivery(DELIVERED)

    def times(self, kind: str) -> list[float]:
        return [(at - T0).total_seconds() for at, outbound in self.sent if outbound.kind == kind]


def storm() -> list[list]:
    """Return 100 payloads of 100 alerts each, every alert distinct, one payload per 0.6 s."""
    alerts = []
    for name in range(30):
        for cluster in range(30):
            for instance in range(10):
                alerts.append(alert(f"Chat{name:02d}", cluster=f"c{cluster:02d}", instance=f"i{instance}"))
    alerts += [alert("DatabaseSlow", team="db", instance=f"db{number:03d}") for number in range(990)]
    critical = [alert("PaymentsDown", severity="critical", instance=f"p{number}") for number in range(10)]
    payloads = [alerts[start : start + 100] for start in range(0, len(alerts), 100)]
    # The critical alerts arrive half-way through, inside the storm.
    payloads.insert(CRITICAL_AT_S * 100 // 60, critical)
    return payloads


@pytest.mark.slow
def test_storm_grouping_digests_and_page_timing(store: Store, tmp_path) -> None:
    policy = load_policy(tmp_path / "rules", RULES)
    clock = FakeClock()
    recorder = Recorder(clock)
    h = Harness(store, policy, clock, send=recorder)
    payloads = storm()
    assert sum(len(payload) for payload in payloads) == 10_000
    step = 60.0 / len(payloads)
    for payload in payloads:
        h.post(*payload)
        clock.advance(step)
        h.tick()
    h.run_for(15 * 60, step=1.0)

    incidents = Counter(row["receiver"] for row in h.outbox_rows() if row["event"] == "opened")
    assert incidents == {"chat": 900, "dba": 990, "pager": 1}

    # The page: one trigger, within its 10 s group wait of the critical alerts' arrival.
    pages = recorder.times("pagerduty")
    assert len(pages) == 1
    critical_arrived = CRITICAL_AT_S * 100 // 60 * step
    assert critical_arrived + 10 <= pages[0] <= critical_arrived + 11

    # Slack: 900 incidents, nearly all reported in two to four digests, at most one per
    # DIGEST_INTERVAL_S and never faster than Slack's rate limit.
    slack = recorder.times("slack")
    rate, burst = RATES["slack"]
    digest_times = [
        (at - T0).total_seconds()
        for at, outbound in recorder.sent
        if outbound.kind == "slack" and "combined" in outbound.payload["text"]
    ]
    assert len(slack) - len(digest_times) <= burst  # sent one by one before the backlog reached DIGEST_AT
    assert 2 <= len(digest_times) <= 4
    assert all(later - earlier >= DIGEST_INTERVAL_S - 1e-6 for earlier, later in itertools.pairwise(digest_times))
    for index, moment in enumerate(slack):
        in_window = [other for other in slack[index:] if other < moment + 10]
        assert len(in_window) <= burst + 10 * rate
    digests = [row for row in h.outbox_rows() if row["event"] == "digest" and row["channel"] == "slack"]
    folded = sum(len(row["reference"]["folded"]) for row in digests)
    direct = [
        row for row in h.outbox_rows() if row["channel"] == "slack" and row["event"] == "opened" and row["status"] == "delivered"
    ]
    assert folded + len(direct) == 900
    assert {row["status"] for row in digests} == {"delivered"}

    # E-mail is not held up by Slack's backlog: its first message goes out at its group wait.
    mail = recorder.times("email")
    first_db_alert = next(index for index, payload in enumerate(payloads) if payload[0].labels.get("team") == "db") * step
    assert mail[0] <= first_db_alert + 31
    assert all(row["status"] in ("delivered", "folded") for row in h.outbox_rows())
