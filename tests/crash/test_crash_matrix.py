"""The crash matrix: the daemon is killed with SIGKILL at each crash point, restarted, and everything is counted.

Each test starts the daemon with `IRULES_CRASH_AT=<point>`, posts the
scenario's payloads (see `harness`), waits for the process to die by SIGKILL,
restarts it without the variable, resends any payload that got no 2xx, and
waits until the work has settled. The counts must then match what the
daemon promises (the table "What a crash costs" in docs/daemon.md):

- every payload with a 2xx is stored, and only a payload whose request got no
  response may be stored twice, as a second delivery of the same alert;
- one alert per fingerprint, two incidents, one runbook run and two fired timers;
- every notification is delivered once, except one that had been sent but
  not recorded when the process died. That one is delivered a second time,
  with the same body and so the same PagerDuty `dedup_key`;
- the mutating step's program ran once, or, when the kill came between
  storing the step as running and storing its outcome, the step is
  interrupted and waits for a person's decision without running again.

Every point runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import faults
from tests.crash.harness import INCIDENTS, KILLED, NOTIFICATIONS, PAYLOADS, Scenario, Snapshot
from tests.runtime.fakes import FakeSaaS

# Points where the mutating step's outcome is not stored when the process dies, with the lines its program has written.
STEP_INTERRUPTED = {"step.before_start": 0, "step.after_exit": 1}

MATRIX = [
    pytest.param(point, backend, id=f"{backend}-{point}") for backend in ("sqlite", "postgresql") for point in faults.POINTS
]


@pytest.fixture
def scenario_factory(tmp_path: Path, fake_saas: FakeSaaS, request: pytest.FixtureRequest) -> Iterator:
    scenarios: list[Scenario] = []

    def make(backend: str) -> Scenario:
        url = request.getfixturevalue("postgres_schema_url") if backend == "postgresql" else None
        scenario = Scenario(tmp_path, fake_saas, url)
        scenarios.append(scenario)
        return scenario

    yield make
    for scenario in scenarios:
        scenario.close()


@pytest.mark.slow
def test_normal_run_reaches_every_point(scenario_factory, tmp_path: Path) -> None:
    scenario = scenario_factory("sqlite")
    trace = tmp_path / "trace.txt"
    daemon = scenario.daemon({faults.TRACE_VARIABLE: str(trace)}).start()
    try:
        scenario.sender.send(daemon)
        final = scenario.wait_settled(daemon)
    finally:
        daemon.stop()

    assert sorted(trace.read_text(encoding="utf-8").splitlines()) == sorted(faults.POINTS)
    assert scenario.sender.interrupted == set()
    check_once(final)
    assert final.steps == {"mark": "succeeded"}
    assert final.marker_lines == 1
    assert sorted(final.received.values()) == [1] * NOTIFICATIONS


@pytest.mark.slow
@pytest.mark.parametrize(("point", "backend"), MATRIX)
def test_crash_at_point(point: str, backend: str, scenario_factory) -> None:
    scenario = scenario_factory(backend)
    first = scenario.daemon({faults.ENVIRONMENT_VARIABLE: point}).start()
    try:
        scenario.sender.send(first)
        status = scenario.wait_killed(first)
    finally:
        first.kill()
    assert status == KILLED, first.log_text()
    # A notification whose body reached the receiver just before the kill counts as received.
    scenario.receiver.wait_idle()
    at_kill = scenario.snapshot()
    scenario.expire_leases()

    second = scenario.daemon().start()
    try:
        scenario.sender.send(second)
        final = scenario.wait_settled(second)
    finally:
        second.stop()

    check_payloads(scenario, point, final)
    check_once(final)
    check_notifications(scenario, point, at_kill, final)
    check_step(point, at_kill, final)


# ---------------------------------------------------------------- checks


def check_once(final: Snapshot) -> None:
    """Check that nothing the pipeline creates exists twice."""
    assert final.pending_events == 0
    assert len(final.alert_keys) == len(PAYLOADS)
    assert final.incident_keys == [f"INC-{number}" for number in range(1, INCIDENTS + 1)]
    assert final.timer_states == ["fired"] * INCIDENTS
    assert len(final.runs) == 1


def check_payloads(scenario: Scenario, point: str, final: Snapshot) -> None:
    """Check that every 2xx payload is stored, twice only when one of its requests got no response."""
    sender = scenario.sender
    assert sorted(sender.acknowledged) == list(range(len(PAYLOADS)))
    for number, body in enumerate(PAYLOADS):
        copies = final.payload_bodies[body]
        if point == "ingest.after_commit" and number == 0:
            assert number in sender.interrupted
            assert copies == 2, "the payload committed before the kill and its retry are both stored"
        elif number in sender.interrupted:
            assert copies in (1, 2)
        else:
            assert copies == 1, f"payload {number} is stored {copies} times"
    assert sum(final.payload_bodies.values()) == sum(final.payload_bodies[body] for body in PAYLOADS)


def check_notifications(scenario: Scenario, point: str, at_kill: Snapshot, final: Snapshot) -> None:
    """Check each notification's deliveries against the sends that were in flight at the kill."""
    assert [row["status"] for row in final.outbox_rows] == ["delivered"] * NOTIFICATIONS

    # A row still `sending` at the kill whose body had reached the receiver was sent but not recorded.
    delivered_at_kill = at_kill.outbox_keys("delivered")
    sending_at_kill = at_kill.outbox_keys("sending")
    duplicates: collections.Counter[str] = collections.Counter()
    for key, count in at_kill.received.items():
        unrecorded = count - delivered_at_kill[key]
        assert 0 <= unrecorded <= sending_at_kill[key], f"{count} deliveries of {key} before the kill"
        duplicates[key] = unrecorded
    expected = final.outbox_keys("delivered") + duplicates
    assert final.received == expected

    if point == "outbox.after_send":
        assert sum(duplicates.values()) >= 1, "the send cut off by the kill is delivered again"
    if point == "outbox.after_lease":
        assert sum(sending_at_kill.values()) >= 1
    if point in ("ingest.after_commit", "pipeline.before_commit", "pipeline.after_commit"):
        assert at_kill.outbox_rows == [] or all(row["status"] == "pending" for row in at_kill.outbox_rows)
        assert sorted(final.received.values()) == [1] * NOTIFICATIONS

    # Both copies of a page carry the incident's dedup key, so PagerDuty opens one alert.
    keys = collections.Counter(event["dedup_key"] for event in scenario.pagerduty_requests())
    assert set(keys) == {"irules-INC-1", "irules-INC-2"}


def check_step(point: str, at_kill: Snapshot, final: Snapshot) -> None:
    """Check that the mutating step ran once, or waits for a decision when it was cut off between start and record."""
    if point in STEP_INTERRUPTED:
        assert at_kill.steps == {"mark": "running"}
        assert final.steps == {"mark": "interrupted"}
        assert final.runs == ["waiting"]
        assert final.marker_lines == STEP_INTERRUPTED[point]
        return
    if at_kill.steps.get("mark") == "running":
        # Another point's kill came while the program ran: it may or may not have written its line.
        assert final.steps == {"mark": "interrupted"}
        assert final.marker_lines in (0, 1)
        return
    assert final.steps == {"mark": "succeeded"}
    assert final.runs == ["succeeded"]
    assert final.marker_lines == 1
