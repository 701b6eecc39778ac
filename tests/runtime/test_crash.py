"""Crash test: the daemon is SIGKILLed at random while 10,000 alerts arrive, on SQLite and on PostgreSQL.

The daemon promises that a 2xx means the payload and its alerts are committed,
and that the pipeline applies each stored event exactly once. The sender
retries like Alertmanager, so a payload stored just before a kill arrives
again. Such a duplicate delivery is stored as a payload of its own and applied
as a repeat. The checks read the store with SQL after the last restart has
drained the pipeline. Set IRULES_CRASH_SEED to rerun a seed printed by a failed run.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.incidents import ENDED
from runtime.store import Store, database_url
from runtime.store.schema import alert_events, alerts, dead_letters, incidents, payloads, sequences, timeline
from tests.runtime.crash_client import (
    FIRING,
    DaemonProcess,
    Killer,
    Sender,
    SenderRecord,
    Workload,
    environment_seed,
    free_port,
    plan_workload,
)

DISTINCT_ALERTS = 10_000
GROUPS = 20
KILLS = 6
CONCURRENCY = 6
# A follow-up payload refers only to alerts at least this many payloads back, whose 2xx
# the sender waits for, so that it rarely has to wait.
FOLLOW_UP_LAG = 3 * CONCURRENCY
DRAIN_TIMEOUT_S = 180.0

RULES = """
receiver crash-test {
  webhook "http://127.0.0.1:9/crash-test"
}

route {
  receiver crash-test
  group_by [alertname]
}

severity {
  critical when label.severity == "critical"
  medium when label.severity == "warning"
  else low
}

correlate by-group {
  by [group]
  window 6h
}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    """Return the daemon's store arguments and the SQLAlchemy URL of the same store."""
    if request.param == "sqlite":
        state = tmp_path / "state"
        yield ["--state", str(state)], database_url(state)
    else:
        url = request.getfixturevalue("postgres_schema_url")
        yield ["--database", url], url


@pytest.mark.slow
def test_crash_keeps_every_alert(tmp_path: Path, store_target: tuple[list[str], str]) -> None:
    store_arguments, url = store_target
    seed = environment_seed()
    print(f"crash test seed: {seed} (rerun with IRULES_CRASH_SEED={seed})")
    rng = random.Random(seed)
    workload = plan_workload(rng, DISTINCT_ALERTS, GROUPS, FOLLOW_UP_LAG)
    assert len({alert.fingerprint for alert in workload.alerts}) == DISTINCT_ALERTS
    rules = tmp_path / "crash.irules"
    rules.write_text(RULES)

    daemon = DaemonProcess(rules, store_arguments, free_port(), tmp_path / "daemon.log")
    try:
        record = _run_with_kills(daemon, workload, rng, seed)
        exit_status = daemon.stop()
    finally:
        daemon.ensure_stopped()
    print(
        f"crash test: {len(workload.payloads)} payloads, {workload.alerts_sent()} alerts sent, "
        f"{sum(record.attempts.values())} requests, {record.retries} retries, {daemon.kills} kills"
    )

    assert record.failures == [], daemon.log_tail()
    assert daemon.kills >= 5
    assert exit_status == 0, daemon.log_tail()
    store = Store.open(url, migrate=False)
    try:
        _check_store(store, workload, record)
    finally:
        store.close()


def _run_with_kills(daemon: DaemonProcess, workload: Workload, rng: random.Random, seed: int) -> SenderRecord:
    """Send the workload under random kills, kill once more while the pipeline catches up, restart and drain."""
    daemon.start()
    started = time.monotonic()
    sender = Sender(daemon.base_url, workload, CONCURRENCY, seed)
    killer = Killer(daemon, sender, rng, KILLS - 1)
    killer.start()
    try:
        sender.run()
    finally:
        killer.join()
    if killer.error is not None:
        raise killer.error
    sent = time.monotonic()
    killer.kill_and_restart()
    daemon.wait_drained(DRAIN_TIMEOUT_S)
    print(f"crash test: sending took {sent - started:.1f} s, the last restart and the drain {time.monotonic() - sent:.1f} s")
    return sender.record


# ---------------------------------------------------------------- checks


def _check_store(store: Store, workload: Workload, record: SenderRecord) -> None:
    with store.read() as connection:
        stored_payloads = connection.execute(sa.select(payloads.c.id, payloads.c.body).order_by(payloads.c.id)).all()
        events = connection.execute(
            sa.select(
                alert_events.c.id,
                alert_events.c.payload_id,
                alert_events.c.fingerprint,
                alert_events.c.status,
                alert_events.c.processed_at,
                alert_events.c.outcome,
            ).order_by(alert_events.c.id)
        ).all()
        alert_rows = {row["key"]: dict(row) for row in connection.execute(sa.select(alerts)).mappings()}
        incident_rows = [dict(row) for row in connection.execute(sa.select(incidents).order_by(incidents.c.id)).mappings()]
        timeline_counts = collections.Counter(
            (row.incident_id, row.kind) for row in connection.execute(sa.select(timeline.c.incident_id, timeline.c.kind))
        )
        dead_letter_count = connection.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one()
        incident_numbers = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(sequences.c.value), 0)).where(sequences.c.name.like("incident%"))
        ).scalar_one()

    number_of_payload = _check_payloads(workload, record, stored_payloads)
    _check_events(workload, stored_payloads, number_of_payload, events)
    assert dead_letter_count == 0
    _check_alerts(workload, record, events, alert_rows)
    _check_incidents(workload, events, alert_rows, incident_rows, timeline_counts)
    assert incident_numbers == GROUPS


def _check_payloads(workload: Workload, record: SenderRecord, stored_payloads: list[sa.Row]) -> dict[int, int]:
    """Check that every 2xx payload is stored as sent, and that each delivery is stored at most once per attempt.

    Returns the planned payload number of each stored payload id.
    """
    number_of_body = {payload.body: payload.number for payload in workload.payloads}
    assert len(number_of_body) == len(workload.payloads), "two planned payloads have the same body"
    number_of_payload: dict[int, int] = {}
    for row in stored_payloads:
        body = bytes(row.body)
        assert body in number_of_body, f"payload {row.id} holds a body that was never sent"
        number_of_payload[row.id] = number_of_body[body]

    assert sorted(record.acknowledgements) == [payload.number for payload in workload.payloads]
    acknowledged_ids = [acknowledgement.payload_id for acknowledgement in record.acknowledgements.values()]
    assert len(set(acknowledged_ids)) == len(acknowledged_ids), "two 2xx answers named the same payload id"
    for payload in workload.payloads:
        acknowledgement = record.acknowledgements[payload.number]
        assert acknowledgement.status == 202
        assert acknowledgement.alerts == len(payload.alerts)
        assert number_of_payload.get(acknowledgement.payload_id) == payload.number, (
            f"payload {payload.number} got a 2xx naming payload id {acknowledgement.payload_id}, which does not hold it"
        )

    copies = collections.Counter(number_of_payload.values())
    print(f"crash test: extra copies of payloads stored by retries after a kill: {len(stored_payloads) - len(workload.payloads)}")
    for payload in workload.payloads:
        assert 1 <= copies[payload.number] <= record.attempts[payload.number], (
            f"payload {payload.number} is stored {copies[payload.number]} times after {record.attempts[payload.number]} requests"
        )
    return number_of_payload


def _check_events(
    workload: Workload, stored_payloads: list[sa.Row], number_of_payload: dict[int, int], events: list[sa.Row]
) -> None:
    """Check that each stored payload has exactly its alerts as events, and that every event was applied."""
    events_of_payload: dict[int, list[tuple[str, str]]] = collections.defaultdict(list)
    for event in events:
        events_of_payload[event.payload_id].append((event.fingerprint, event.status))
    for row in stored_payloads:
        planned = workload.payloads[number_of_payload[row.id]]
        expected = [(alert.fingerprint, alert.status) for alert in planned.alerts]
        assert events_of_payload[row.id] == expected, (
            f"payload {row.id} (planned {planned.number}) has other events than its alerts"
        )

    unprocessed = [event.id for event in events if event.processed_at is None or event.outcome is None]
    assert unprocessed == []
    failed = [event.id for event in events if event.outcome == "failed"]
    assert failed == []


def _check_alerts(workload: Workload, record: SenderRecord, events: list[sa.Row], alert_rows: dict[str, dict]) -> None:
    """Check each alert against its events: present, counted once per firing event, in the state of its last event."""
    assert set(alert_rows) == {alert.fingerprint for alert in workload.alerts}
    firing_events = collections.Counter(event.fingerprint for event in events if event.status == FIRING)
    new_outcomes = collections.Counter(event.fingerprint for event in events if event.outcome == "new")
    last_status = {event.fingerprint: event.status for event in events}

    acknowledged_firing: collections.Counter[str] = collections.Counter()
    attempted_firing: collections.Counter[str] = collections.Counter()
    for payload in workload.payloads:
        for alert in payload.alerts:
            if alert.status == FIRING:
                acknowledged_firing[alert.fingerprint] += 1
                attempted_firing[alert.fingerprint] += record.attempts[payload.number]

    for fingerprint, row in alert_rows.items():
        assert row["fingerprint"] == fingerprint
        assert row["occurrences"] == firing_events[fingerprint], f"alert {fingerprint}: occurrences differ from its firing events"
        assert acknowledged_firing[fingerprint] <= row["occurrences"] <= attempted_firing[fingerprint], (
            f"alert {fingerprint}: {row['occurrences']} occurrences, {acknowledged_firing[fingerprint]} firing deliveries "
            f"acknowledged and {attempted_firing[fingerprint]} attempted"
        )
        assert new_outcomes[fingerprint] == 1, f"alert {fingerprint} was new {new_outcomes[fingerprint]} times"
        assert row["status"] == last_status[fingerprint], (
            f"alert {fingerprint} is {row['status']}, its last event {last_status[fingerprint]}"
        )


def _check_incidents(
    workload: Workload,
    events: list[sa.Row],
    alert_rows: dict[str, dict],
    incident_rows: list[dict],
    timeline_counts: collections.Counter[tuple[int, str]],
) -> None:
    """Check one open incident per group, containing exactly the group's alerts, with one timeline entry per applied change."""
    assert len(incident_rows) == GROUPS
    assert sorted(row["correlation"] for row in incident_rows) == [f"by-group:group={group}" for group in workload.groups]
    assert [row["status"] for row in incident_rows if row["status"] in ENDED] == []

    group_of = {alert.fingerprint: alert.group for alert in workload.alerts}
    outcomes_by_group: collections.Counter[tuple[str, str | None]] = collections.Counter(
        (group_of[event.fingerprint], event.outcome) for event in events
    )
    for incident in incident_rows:
        group = incident["labels"]["group"]
        members = [row for row in alert_rows.values() if row["incident_id"] == incident["id"]]
        assert sorted(row["key"] for row in members) == sorted(
            fingerprint for fingerprint, name in group_of.items() if name == group
        )
        assert incident["alert_count"] == len(members)
        assert incident["firing_count"] == sum(1 for row in members if row["status"] == FIRING)
        assert timeline_counts[(incident["id"], "incident.detected")] == 1
        assert timeline_counts[(incident["id"], "alert.added")] == outcomes_by_group[(group, "new")]
        assert timeline_counts[(incident["id"], "alert.refired")] == outcomes_by_group[(group, "refire")]
        assert timeline_counts[(incident["id"], "alert.resolved")] == outcomes_by_group[(group, "resolved")]
