"""Faults found by trying the notifications as a new user would, each with the behaviour now expected."""

from __future__ import annotations

import datetime
import logging

import anyio
import pytest

from runtime import incidents as incident_ops
from runtime import logs
from runtime.notify.model import DELIVERED, Delivery, Outbound
from runtime.store import Store
from runtime.store.schema import outbox
from tests.runtime.notify_harness import FakeClock, Harness, alert, load_policy

RULES = """
settings {
  incident_id_format "INC-{number}"
  daemon_url "https://irules.example.com"
}

team oncall {
  pagerduty key secret("ONCALL_PAGERDUTY_KEY")
  sms "+15555550100"
  escalation quick
}

escalation quick {
  after 1m unacknowledged page oncall
}

route {
  receiver oncall
  group_by [alertname]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
}
"""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    async def __call__(self, outbound: Outbound) -> Delivery:
        self.sent.append(outbound)
        return Delivery(DELIVERED)


@pytest.fixture
def harness(store: Store, tmp_path) -> tuple[Harness, Recorder]:
    recorder = Recorder()
    return Harness(store, load_policy(tmp_path / "rules", RULES), FakeClock(), send=recorder), recorder


def test_acknowledgement_reaches_pagerduty_for_alertmanager_alerts(harness) -> None:
    """Alertmanager pages for its alerts but never acknowledges; the daemon's own page needs closing too."""
    h, recorder = harness
    h.post(alert("DiskFull", source="alertmanager"))
    h.run_for(90, step=10)
    incident_ops.acknowledge(h.store, "INC-1", "alice", h.clock())
    h.run_for(10)
    pagerduty = [(row["event"], row["channel"]) for row in h.outbox_rows() if row["channel"] == "pagerduty"]
    # The first page is Alertmanager's; the escalation page at 1m and the acknowledgement are the daemon's.
    assert pagerduty == [("escalated", "pagerduty"), ("acknowledged", "pagerduty")]
    actions = [outbound.payload.get("event_action") for outbound in recorder.sent if outbound.kind == "pagerduty"]
    assert actions == ["trigger", "acknowledge"]


def test_first_message_is_queued_before_overdue_escalation_steps(harness) -> None:
    """After an outage, the incident's first message goes first, so it leads every channel and thread."""
    h, _recorder = harness
    h.post(alert("DiskFull"))
    h.clock.advance(5 * 60)  # the daemon was down past the group wait and the first escalation step
    h.tick()
    events = [row["event"] for row in h.outbox_rows() if row["channel"] == "sms"]
    assert events == ["opened", "escalated"]


def test_unknown_team_is_rejected_when_creating_an_incident(harness) -> None:
    h, _recorder = harness
    with pytest.raises(incident_ops.IncidentError, match="unknown team 'oncal'") as raised:
        incident_ops.create(
            h.store,
            "INC-{number}",
            h.clock(),
            title="DB down",
            severity="critical",
            services=[],
            team="oncal",
            actor="bob",
            policy=h.policy,
        )
    assert raised.value.status == 400


def test_expired_lease_is_released_while_the_worker_runs(harness) -> None:
    """A row left `sending` by a sender that died is sent again without waiting for a restart."""
    h, recorder = harness
    h.post(alert("DiskFull"))
    h.clock.advance(31)
    h.notifier.tick()
    with h.store.write() as connection:
        connection.execute(
            outbox.update().values(status="sending", lease_until=h.clock() - datetime.timedelta(seconds=1), attempts=1)
        )
    h.outbox.release_every_s = 0.0

    async def run_briefly() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(h.outbox.run, stop, 0.01)
            with anyio.fail_after(10):
                while len(recorder.sent) < 2:
                    await anyio.sleep(0.01)
            stop.set()

    anyio.run(run_briefly)
    assert sorted(outbound.kind for outbound in recorder.sent) == ["pagerduty", "sms"]
    assert {row["status"] for row in h.outbox_rows()} == {"delivered"}


def test_http_client_logs_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs request URLs at INFO, and webhook URLs carry tokens."""
    logs.configure("info")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
