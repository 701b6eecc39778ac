"""Notification groups and escalation on a fake clock, over SQLite and PostgreSQL, across restarts."""

from __future__ import annotations

import datetime
import random
import threading
import time

import anyio
import pytest
import sqlalchemy as sa

from runtime import incidents as incident_ops
from runtime.notify.model import DELIVERED, Delivery, Outbound
from runtime.store import Store
from runtime.store.schema import incidents
from tests.runtime.notify_harness import T0, FakeClock, Harness, alert, load_policy

RULES = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
  daemon_url "https://irules.example.com"
  slack_api_url secret("SLACK_API_URL")
}

team payments {
  webhook "http://127.0.0.1:9/payments"
  sms "+15555550100"
  owns [checkout]
  escalation standard
}

receiver oncall {
  webhook "http://127.0.0.1:9/oncall"
  sms "+15555550101"
}

receiver managers {
  webhook "http://127.0.0.1:9/managers"
}

receiver chat {
  slack "#alerts"
  sms "+15555550102"
}

service checkout {
  match service = "checkout"
}

route {
  receiver payments
  group_by [alertname]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
  match team = "chat" -> chat
}

severity {
  critical when label.severity == "critical"
  else medium
}

escalation standard {
  for severity [critical] {
    after 5m unacknowledged page oncall
  }
  after 15m unacknowledged escalate
  after 1h unresolved notify managers
  repeat 1 every 30m
}
"""

MINUTE = 60.0


class Recorder:
    """Sender that records each message with the fake time it went out."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime.datetime, Outbound]] = []

    async def __call__(self, outbound: Outbound) -> Delivery:
        self.sent.append((self.clock(), outbound))
        return Delivery(DELIVERED)

    def to(self, url_part: str) -> list[datetime.datetime]:
        """Return the send times of the messages whose URL or target contains `url_part`."""
        return [at for at, outbound in self.sent if url_part in (outbound.url or outbound.target or "")]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory):
    return load_policy(tmp_path_factory.mktemp("rules"), RULES)


@pytest.fixture
def harness(store: Store, policy) -> tuple[Harness, Recorder]:
    clock = FakeClock()
    recorder = Recorder(clock)
    return Harness(store, policy, clock, send=recorder), recorder


def at(minutes: float, seconds: float = 0) -> datetime.datetime:
    """Return the fake time `minutes` and `seconds` after T0."""
    return T0 + datetime.timedelta(minutes=minutes, seconds=seconds)


# ---------------------------------------------------------------- notification groups


def test_first_message_waits_for_group_wait(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout"))
    h.run_for(29)
    assert sent.sent == []
    h.run_for(1)
    assert sent.to("/payments") == [at(0, 30)]
    assert sent.to("+15555550100") == [at(0, 30)]
    events = {row["event"] for row in h.outbox_rows()}
    assert events == {"opened"}


def test_update_sent_once_per_group_interval(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout", instance="a"))
    h.run_for(60)
    h.post(alert("CheckoutDown", service="checkout", instance="b"))
    h.run_for(60)
    h.post(alert("CheckoutDown", service="checkout", instance="c"))
    # The first message went out at 0:30. The update waits until 5:30 and reports both new alerts at once.
    h.run_for(3 * MINUTE + 29)
    assert sent.to("/payments") == [at(0, 30)]
    h.run_for(1)
    assert sent.to("/payments") == [at(0, 30), at(5, 30)]
    assert [row["event"] for row in h.outbox_rows() if "/payments" in (row["message"]["url"] or "")] == ["opened", "updated"]


def test_resolution_sent_and_reminders_stop(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout"))
    h.run_for(MINUTE)
    h.post(alert("CheckoutDown", status="resolved", service="checkout"))
    h.run_for(10 * MINUTE, step=30)
    assert h.incident()["status"] == "resolved"
    assert sent.to("/payments") == [at(0, 30), at(5, 30)]
    events = [row["event"] for row in h.outbox_rows() if "/payments" in (row["message"]["url"] or "")]
    assert events == ["opened", "resolved"]
    h.run_for(5 * 60 * MINUTE, step=MINUTE)
    assert len(sent.to("/payments")) == 2


def test_reminder_after_repeat_interval_until_acknowledged(harness) -> None:
    h, _sent = harness
    h.post(alert("CheckoutDown", service="checkout"))
    h.run_for(4 * 60 * MINUTE + 30, step=MINUTE / 2)
    reminders = [row for row in h.outbox_rows() if row["event"] == "reminder" and "/payments" in (row["message"]["url"] or "")]
    assert [row["created_at"] for row in reminders] == [at(240, 30)]
    incident_ops.acknowledge(h.store, "INC-2026-0001", "alice", h.clock())
    h.run_for(9 * 60 * MINUTE, step=MINUTE)
    events = [
        row["event"] for row in h.outbox_rows() if "/payments" in (row["message"]["url"] or "") and row["event"] != "escalated"
    ]
    assert events == ["opened", "reminder", "acknowledged"]


def test_alertmanager_channels_left_to_alertmanager(harness) -> None:
    h, _sent = harness
    h.post(alert("QueueBacklog", source="alertmanager", team="chat"))
    h.post(alert("DiskFull", source="grafana", team="chat"))
    h.run_for(31)
    by_incident = {}
    for row in h.outbox_rows():
        by_incident.setdefault(row["incident_id"], []).append(row["channel"])
    # Alertmanager posts its own alert to Slack itself, but it cannot send SMS.
    assert by_incident == {1: ["sms"], 2: ["slack", "sms"]}
    queued = h.timeline("notification.queued")
    assert queued[0]["message"] == "Notified chat (opened) via sms; Alertmanager delivers slack"


def test_resolved_within_group_wait_not_announced(harness) -> None:
    h, sent = harness
    h.post(alert("Blip", service="checkout"))
    h.run_for(10)
    h.post(alert("Blip", status="resolved", service="checkout"))
    h.run_for(10 * MINUTE, step=MINUTE / 2)
    assert sent.to("/payments") == []


# ---------------------------------------------------------------- escalation


def fired_steps(h: Harness) -> list[tuple[str, datetime.datetime, datetime.datetime]]:
    """Return (action, due time, fire time) of every fired timer."""
    return [(row["data"]["action"], row["due_at"], row["done_at"]) for row in h.timers() if row["status"] == "fired"]


def test_steps_fire_once_across_restarts(harness) -> None:
    h, sent = harness
    """Each step fires once and on time although the daemon restarts five times, some just before or at a due time."""
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    # Round 0: page at 5m, escalate at 15m, notify at 60m. Round 1 starts thirty minutes later.
    restarts = [at(4, 55), at(5), at(15), at(40), at(60, 5)]
    while h.clock() < at(100):
        h.clock.advance(5)
        if restarts and h.clock() >= restarts[0]:
            restarts.pop(0)
            h.restart()
        h.tick()
    steps = fired_steps(h)
    assert sorted((action, due) for action, due, _done in steps) == [
        ("escalate", at(15)),
        ("escalate", at(45)),
        ("notify", at(60)),
        ("notify", at(90)),
        ("page", at(5)),
        ("page", at(35)),
    ]
    assert all(done == due for _action, due, done in steps)
    # A page goes to the receiver's paging channels: SMS, not its webhook.
    assert sent.to("+15555550101") == [at(5), at(35)]
    assert sent.to("/oncall") == []
    assert sent.to("/managers") == [at(60), at(90)]
    assert h.incident()["escalation_level"] == 2
    levels = [entry["data"]["level"] for entry in h.timeline("escalation.step") if entry["message"].startswith("Escalated")]
    assert levels == [1, 2]


def test_page_uses_paging_channels_only(harness) -> None:
    h, _sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(5 * MINUTE, step=30)
    pages = [row for row in h.outbox_rows() if row["event"] == "escalated"]
    assert [(row["receiver"], row["channel"]) for row in pages] == [("oncall", "sms")]


def test_overdue_step_fires_once_at_start(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(4 * MINUTE, step=30)
    h.clock.advance(20 * MINUTE)  # Down from 4m to 24m, so the page (5m) and the escalation (15m) are overdue.
    h.restart()
    h.tick()
    h.tick()
    steps = fired_steps(h)
    assert sorted(action for action, _due, _done in steps) == ["escalate", "page"]
    assert all(done == at(24) for _action, _due, done in steps)
    assert sent.to("+15555550101") == [at(24)]
    lateness = [entry["data"]["late_s"] for entry in h.timeline("escalation.step")]
    assert sorted(lateness) == [9 * MINUTE, 19 * MINUTE]


def test_crash_after_firing_sends_page_once(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(4 * MINUTE, step=30)
    h.clock.advance(MINUTE)
    h.notifier.tick()  # The page is queued in the timer's transaction, and the process dies before sending it.
    h.restart()
    h.tick()
    h.tick()
    assert sent.to("+15555550101") == [at(5)]


def test_severity_filter_read_when_step_due(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="warning"))
    h.run_for(2 * MINUTE, step=30)
    incident_ops.update(h.store, "INC-2026-0001", incident_ops.Change(severity="critical"), "alice", h.clock())
    h.run_for(3 * MINUTE, step=30)
    assert sent.to("+15555550101") == [at(5)]


def test_acknowledgement_cancels_unacknowledged_steps_only(harness) -> None:
    h, _sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(10 * MINUTE, step=30)
    incident_ops.acknowledge(h.store, "INC-2026-0001", "alice", h.clock())
    h.run_for(100 * MINUTE, step=MINUTE)
    assert [action for action, _due, _done in fired_steps(h)] == ["page", "notify", "notify"]
    cancelled = [row for row in h.timers() if row["status"] == "cancelled"]
    assert sorted(row["data"]["action"] for row in cancelled) == ["escalate", "escalate", "page"]
    entry = h.timeline("escalation.cancelled")[0]
    assert entry["actor"] == "alice"
    # The two `notify` steps that wait for the resolution fired after the acknowledgement,
    # and the timeline states this instead of "escalation stopped".
    assert entry["data"] == {"on": "acknowledged", "steps": 3, "messages": 0, "remaining": 2}
    assert entry["message"] == (
        "Acknowledged: 3 escalation steps and 0 unsent messages cancelled; 2 steps that wait for the resolution still run"
    )


def test_resolution_cancels_every_step(harness) -> None:
    h, _sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(6 * MINUTE, step=30)
    h.post(alert("CheckoutDown", status="resolved", service="checkout", severity="critical"))
    h.run_for(100 * MINUTE, step=MINUTE)
    assert [action for action, _due, _done in fired_steps(h)] == ["page"]
    assert {row["status"] for row in h.timers()} == {"fired", "cancelled"}
    (entry,) = h.timeline("escalation.cancelled")
    cancelled = sum(1 for row in h.timers() if row["status"] == "cancelled")
    assert entry["data"] == {"on": "resolved", "steps": cancelled, "messages": 0, "remaining": 0}
    assert entry["message"] == f"Resolved: {cancelled} escalation steps and 0 unsent messages cancelled"


def test_reopened_incident_escalates_from_first_step(harness) -> None:
    h, sent = harness
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(MINUTE)
    h.post(alert("CheckoutDown", status="resolved", service="checkout", severity="critical"))
    h.run_for(MINUTE)
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(5 * MINUTE, step=30)
    assert sent.to("+15555550101") == [at(7)]


# ---------------------------------------------------------------- acknowledgement racing a step


class SlowRecorder:
    """Sender that takes a few milliseconds, like a real HTTP call.

    It records, for each page, whether the incident was already acknowledged when the page arrived.
    """

    def __init__(self, store: Store, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.arrivals: list[bool] = []

    async def __call__(self, outbound: Outbound) -> Delivery:
        await anyio.sleep(self.rng.uniform(0, 0.02))
        if outbound.target != "+15555550101":
            return Delivery(DELIVERED)  # the incident's first message, which an acknowledgement does not stop
        with self.store.read() as connection:
            acknowledged = connection.execute(sa.select(incidents.c.acknowledged_at).where(incidents.c.id == 1)).scalar()
        # A message arriving after the acknowledgement committed is the failure this test looks for.
        self.arrivals.append(acknowledged is not None)
        await anyio.sleep(self.rng.uniform(0, 0.005))
        return Delivery(DELIVERED)


def _race_once(store: Store, policy, rng: random.Random) -> tuple[SlowRecorder, list[dict]]:
    """Acknowledge an incident while its first escalation page is being sent, each after a random pause."""
    with store.write() as connection:
        for table in TABLES:
            connection.execute(sa.text(f"DELETE FROM {table}"))
    clock = FakeClock()
    recorder = SlowRecorder(store, rng)
    h = Harness(store, policy, clock, send=recorder)
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    clock.advance(5 * MINUTE)
    h.notifier.tick()  # The page is due, so it is fired and queued but not sent yet.
    # The acknowledgement's pause is longer: claiming the page takes a few more round trips on PostgreSQL.
    ack_delay, send_delay = rng.uniform(0, 0.05), rng.uniform(0, 0.02)

    def acknowledge() -> None:
        time.sleep(ack_delay)
        incident_ops.acknowledge(store, "INC-2026-0001", "alice", clock())

    async def send() -> None:
        await anyio.sleep(send_delay)
        await h.outbox.send_ready()

    async def race() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(send)
            group.start_soon(anyio.to_thread.run_sync, acknowledge)

    anyio.run(race)
    return recorder, [row for row in h.outbox_rows() if row["event"] == "escalated"]


TABLES = (
    "endpoint_state",
    "outbox",
    "timers",
    "notification_groups",
    "threads",
    "timeline",
    "alerts",
    "alert_events",
    "payloads",
    "incidents",
    "sequences",
)


def test_acknowledgement_race_sends_nothing_late(store: Store, policy) -> None:
    """No page arrives after an acknowledgement that races the step's send, in 100 random runs."""
    rng = random.Random(20261205)
    late = 0
    sent_before = 0
    for run in range(100):
        recorder, pages = _race_once(store, policy, rng)
        late += sum(recorder.arrivals)
        sent_before += len(recorder.arrivals) - sum(recorder.arrivals)
        assert {row["status"] for row in pages} <= {"delivered", "cancelled"}, f"run {run}: {pages}"
    assert late == 0
    # Both orders happened: some pages went out before the acknowledgement, some were cancelled.
    assert 0 < sent_before < 100


def test_acknowledgement_waits_for_page_in_flight(store: Store, policy) -> None:
    """An acknowledgement waits while a step's message is being sent and commits once the send is done."""
    clock = FakeClock()
    release = threading.Event()

    async def hold(outbound: Outbound) -> Delivery:
        if outbound.target == "+15555550101":  # the escalation page; the incident's first messages pass
            await anyio.to_thread.run_sync(release.wait)
        return Delivery(DELIVERED)

    h = Harness(store, policy, clock, send=hold)
    h.post(alert("CheckoutDown", service="checkout", severity="critical"))
    h.run_for(4 * MINUTE + 30, step=30)  # the first messages go out at 0:30
    clock.advance(30)
    h.notifier.tick()  # 5:00: the page is queued, not sent yet
    assert [row["event"] for row in h.outbox_rows() if row["status"] == "pending"] == ["escalated"]
    finished: list[float] = []

    def acknowledge() -> None:
        incident_ops.acknowledge(store, "INC-2026-0001", "alice", clock())
        finished.append(time.monotonic())

    async def scenario() -> float:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(h.outbox.send_ready)
                with anyio.fail_after(10):
                    while not [row for row in h.outbox_rows() if row["status"] == "sending"]:
                        await anyio.sleep(0.01)
                group.start_soon(anyio.to_thread.run_sync, acknowledge)
                await anyio.sleep(0.3)
                assert finished == []  # still waiting for the page in flight
                released = time.monotonic()
                release.set()
        finally:
            release.set()  # never leave the held sender's thread waiting
        return released

    released = anyio.run(scenario)
    assert len(finished) == 1
    assert finished[0] >= released
    assert h.incident()["acknowledged_by"] == "alice"


MUTED_RULES = """
receiver night-shift {
  webhook "http://127.0.0.1:9/night"
}

time_interval maintenance {
  times ["10:00-10:20"]
}

route {
  receiver night-shift
  group_by [alertname]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
  match team = "ops" -> night-shift {
    mute_during [maintenance]
  }
}
"""


def test_muted_route_sends_after_interval(store: Store, tmp_path) -> None:
    """The route is muted from 10:00 to 10:20, so the incident opened at 10:00 is sent at the first check after 10:20."""
    clock = FakeClock()
    recorder = Recorder(clock)
    h = Harness(store, load_policy(tmp_path / "muted", MUTED_RULES), clock, send=recorder)
    h.post(alert("BackupLate", team="ops"))
    h.run_for(20 * MINUTE, step=30)
    assert recorder.sent == []
    h.run_for(MINUTE, step=30)
    # Checked again once a minute: 19:30 was muted, 20:30 is the first check after.
    assert recorder.to("/night") == [at(20, 30)]
    assert [row["event"] for row in h.outbox_rows()] == ["opened"]


REOPEN_RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
  group_by [alertname]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
}

dedup {
  by [alertname]
  window 10m
}
"""


def test_reopened_incident_waits_its_group_wait_again(store: Store, tmp_path) -> None:
    """An incident that ended within its group wait and reopens is announced a group wait after it came back."""
    clock = FakeClock()
    recorder = Recorder(clock)
    h = Harness(store, load_policy(tmp_path / "reopen", REOPEN_RULES), clock, send=recorder)
    h.post(alert("Blip"))
    h.run_for(10)
    h.post(alert("Blip", status="resolved"))
    h.run_for(50)
    assert h.incident()["status"] == "resolved"
    h.post(alert("Blip"))  # at 1:00, within the dedup window: the same incident reopens
    assert h.incident()["status"] == "detected"
    h.run_for(29)
    assert recorder.sent == []
    h.run_for(1)
    assert recorder.to("/ops") == [at(1, 30)]
