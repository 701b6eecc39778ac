"""Metrics on a written history of known shape give the hand-computed values, on SQLite and PostgreSQL.

The history is written straight into the store's tables with fixed times. The
window ends at 2026-03-01 00:00 UTC and spans 30 days, so it starts at
2026-01-30 00:00 UTC. Twelve incidents fall inside it, four for each of the
teams payments, search and storage, and two fall just outside. Each incident's
durations are given in minutes from its start, which is one minute before its
creation when it has alerts and its creation otherwise.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from runtime.reports.metrics import (
    NONE,
    Distribution,
    Escalations,
    Window,
    collect_metrics,
    distribution,
    format_duration,
    parse_timeframe,
    percentile,
)
from runtime.store import Store
from runtime.store.schema import alert_events, alerts, incidents, payloads, runbook_runs, timeline

UTC = datetime.UTC
END = datetime.datetime(2026, 3, 1, tzinfo=UTC)
START = datetime.datetime(2026, 1, 30, tzinfo=UTC)
WINDOW = Window(START, END)
HOSTILE_TITLE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Planned:
    """One incident of the history: ack and resolve in minutes from its start, None when it never happened."""

    key: str
    created_at: datetime.datetime
    team: str | None
    severity: str | None
    services: tuple[str, ...]
    status: str
    ack_min: int | None
    resolve_min: int | None
    alert_keys: tuple[str, ...]
    escalation_level: int = 0
    title: str = ""


def _feb(day: int) -> datetime.datetime:
    return datetime.datetime(2026, 2, day, 10, 0, tzinfo=UTC)


HISTORY = [
    Planned("INC-1", START, "payments", "critical", ("checkout",), "resolved", 2, 30, ("p1",)),
    Planned("INC-2", _feb(1), "payments", "high", ("checkout", "ledger"), "resolved", 4, 45, ("p2a", "p2b"), 1),
    Planned("INC-3", _feb(2), "payments", "medium", ("ledger",), "closed", 6, 90, ("p3",)),
    Planned("INC-4", _feb(3), "payments", "low", ("checkout",), "detected", None, None, ("p4",)),
    Planned("INC-5", _feb(4), "search", "critical", ("search-api",), "resolved", 3, 20, ("s5a", "s5b", "s5c")),
    Planned("INC-6", _feb(5), "search", "high", ("search-api",), "resolved", 5, 60, ("s6",), 3),
    Planned("INC-7", _feb(6), "search", "medium", ("indexer",), "resolved", 10, 120, ("s7",), title=HOSTILE_TITLE),
    Planned("INC-8", _feb(7), "search", "low", ("indexer",), "investigating", 30, None, ("s8",)),
    # Its alert fired again after it ended and now belongs to INC-10, so only the timeline still links it.
    Planned("INC-9", _feb(8), "storage", "critical", ("blob",), "resolved", 1, 15, ()),
    Planned("INC-10", _feb(9), "storage", "high", ("blob",), "resolved", 8, 240, ("blob-latency", "blob-errors")),
    Planned("INC-11", _feb(10), "storage", "medium", ("blob",), "mitigating", 20, None, ("b11",)),
    # Opened by hand: no alerts, no service, no severity.
    Planned("INC-12", _feb(11), "storage", None, (), "resolved", 60, 180, ()),
]
OUTSIDE = [
    Planned("OLD-1", START - datetime.timedelta(seconds=1), "payments", "critical", ("checkout",), "resolved", 1, 2, ("o1",), 2),
    Planned("NEW-1", END, "payments", "critical", ("checkout",), "resolved", 1, 2, ("n1",), 2),
]


# ---------------------------------------------------------------- writing the history


def write_history(store: Store) -> None:
    """Write the incidents, alerts, timeline entries, alert events and runbook runs of the history."""
    with store.write() as connection:
        ids = {planned.key: _insert_incident(connection, planned) for planned in [*HISTORY, *OUTSIDE]}
        for planned in [*HISTORY, *OUTSIDE]:
            for key in planned.alert_keys:
                _insert_alert(connection, key, ids[planned.key], planned.created_at - datetime.timedelta(minutes=1))
                _insert_entry(connection, ids[planned.key], planned.created_at, "alert.added", {"key": key})
        _insert_entry(connection, ids["INC-9"], _feb(8), "alert.added", {"key": "blob-latency"})
        _write_escalations(connection, ids)
        _write_events(connection)
        _write_runs(connection, ids)


def _insert_incident(connection: sa.Connection, planned: Planned) -> int:
    start = planned.created_at - datetime.timedelta(minutes=1 if planned.alert_keys else 0)
    acknowledged = None if planned.ack_min is None else start + datetime.timedelta(minutes=planned.ack_min)
    resolved = None if planned.resolve_min is None else start + datetime.timedelta(minutes=planned.resolve_min)
    values = {
        "key": planned.key,
        "title": planned.title or f"{planned.team} trouble {planned.key}",
        "status": planned.status,
        "severity": planned.severity,
        "team": planned.team,
        "services": list(planned.services),
        "receivers": [],
        "labels": {},
        "created_at": planned.created_at,
        "updated_at": planned.created_at,
        "last_alert_at": planned.created_at,
        "acknowledged_at": acknowledged,
        "resolved_at": resolved,
        "closed_at": resolved if planned.status == "closed" else None,
        "alert_count": len(planned.alert_keys),
        "firing_count": 0,
        "escalation_level": planned.escalation_level,
    }
    return connection.execute(incidents.insert().values(values).returning(incidents.c.id)).scalar_one()


def _insert_alert(connection: sa.Connection, key: str, incident_id: int, starts_at: datetime.datetime) -> None:
    connection.execute(
        alerts.insert().values(
            key=key,
            fingerprint=key,
            source="alertmanager",
            name=key,
            status="resolved",
            labels={},
            annotations={},
            starts_at=starts_at,
            first_seen=starts_at + datetime.timedelta(seconds=5),
            last_seen=starts_at + datetime.timedelta(seconds=5),
            occurrences=1,
            receivers=[],
            incident_id=incident_id,
            transitions=[],
            flapping=False,
        )
    )


def _insert_entry(connection: sa.Connection, incident_id: int, at: datetime.datetime, kind: str, data: dict) -> None:
    connection.execute(
        timeline.insert().values(incident_id=incident_id, at=at, kind=kind, actor="irules", message=kind, data=data)
    )


def _write_escalations(connection: sa.Connection, ids: dict[str, int]) -> None:
    """Write escalation steps: INC-1 reached level 2 and restarted at 0, INC-5 reached 1, INC-6 reached 3, and INC-7 was paged at 0."""
    steps = [("INC-1", 1), ("INC-1", 2), ("INC-5", 1), ("INC-6", 1), ("INC-6", 2), ("INC-6", 3), ("INC-7", 0), ("OLD-1", 2)]
    for key, level in steps:
        _insert_entry(connection, ids[key], _feb(20), "escalation.step", {"level": level, "policy": "default"})


# Outcomes of the alert events received inside the window. One more `new` event falls just before it.
EVENT_OUTCOMES = {"new": 15, "repeat": 20, "resolved": 10, "refire": 2, None: 1}


def _write_events(connection: sa.Connection) -> None:
    payload_id = connection.execute(
        payloads.insert()
        .values(source="alertmanager", kind="alerts", received_at=_feb(1), body=b"{}", headers={}, alert_count=0, details={})
        .returning(payloads.c.id)
    ).scalar_one()
    moments = [(outcome, _feb(1)) for outcome, count in EVENT_OUTCOMES.items() for _ in range(count)]
    moments.append(("new", START - datetime.timedelta(microseconds=1)))
    for outcome, received_at in moments:
        connection.execute(
            alert_events.insert().values(
                payload_id=payload_id,
                source="alertmanager",
                fingerprint="f",
                status="firing",
                alert={},
                received_at=received_at,
                processed_at=None if outcome is None else received_at,
                outcome=outcome,
            )
        )


def _write_runs(connection: sa.Connection, ids: dict[str, int]) -> None:
    runs = [
        *[("rb-restart", "succeeded", "auto", _feb(2))] * 3,
        ("rb-restart", "failed", "auto", _feb(3)),
        *[("rb-failover", "succeeded", "auto", _feb(4))] * 3,
        ("rb-failover", "cancelled", "auto", _feb(5)),
        ("rb-failover", "running", "auto", _feb(6)),
        # Neither counts: one was started by a person, one before the window.
        ("rb-restart", "succeeded", "manual", _feb(7)),
        ("rb-restart", "failed", "auto", START - datetime.timedelta(hours=1)),
    ]
    for runbook_id, status, trigger, created_at in runs:
        connection.execute(
            runbook_runs.insert().values(
                runbook_id=runbook_id,
                incident_id=ids["INC-1"],
                status=status,
                trigger=trigger,
                requested_by="irules",
                values={},
                created_at=created_at,
                finished_at=None if status == "running" else created_at,
            )
        )


@pytest.fixture
def history(store: Store) -> Store:
    write_history(store)
    return store


def _collect(store: Store, window: Window = WINDOW):
    with store.read() as connection:
        return collect_metrics(connection, window)


def _minutes(*values: float) -> tuple[float, ...]:
    return tuple(value * 60.0 for value in values)


# ---------------------------------------------------------------- the figures


def test_counts_by_status_team_service_severity(history: Store):
    counts = _collect(history).counts

    assert counts.total == 12
    assert counts.by_status == {"detected": 1, "investigating": 1, "mitigating": 1, "resolved": 8, "closed": 1}
    assert counts.by_team == {"payments": 4, "search": 4, "storage": 4}
    assert counts.by_service == {"blob": 3, "checkout": 3, "indexer": 2, "ledger": 2, "search-api": 2, NONE: 1}
    assert counts.by_severity == {"critical": 3, "high": 3, "medium": 3, "low": 2, NONE: 1}


def test_counts_per_day_cover_window(history: Store):
    per_day = _collect(history).counts.per_day

    assert len(per_day) == 30
    assert per_day[0] == (datetime.date(2026, 1, 30), 1)
    assert per_day[1] == (datetime.date(2026, 1, 31), 0)
    assert [count for _day, count in per_day[2:13]] == [1] * 11
    assert per_day[-1] == (datetime.date(2026, 2, 28), 0)
    assert sum(count for _day, count in per_day) == 12


def test_time_to_acknowledge_overall(history: Store):
    # Acknowledged after 1, 2, 3, 4, 5, 6, 8, 10, 20, 30 and 60 minutes: 11 values.
    overall = _collect(history).acknowledge.overall

    assert overall.count == 11
    assert (overall.p50, overall.p90, overall.p95) == _minutes(6, 30, 60)
    assert overall.mean == 149 * 60 / 11


def test_time_to_acknowledge_by_team_and_severity(history: Store):
    acknowledge = _collect(history).acknowledge

    assert acknowledge.by_team == {
        "payments": Distribution(3, 240.0, *_minutes(4, 6, 6)),
        "search": Distribution(4, 720.0, *_minutes(5, 30, 30)),
        "storage": Distribution(4, 1335.0, *_minutes(8, 60, 60)),
    }
    assert list(acknowledge.by_severity) == ["critical", "high", "medium", "low", NONE]
    assert acknowledge.by_severity["critical"] == Distribution(3, 120.0, *_minutes(2, 3, 3))
    assert acknowledge.by_severity[NONE] == Distribution(1, 3600.0, *_minutes(60, 60, 60))
    assert acknowledge.by_service["checkout"] == Distribution(2, 180.0, *_minutes(2, 4, 4))


def test_time_to_resolve_overall_and_by_team(history: Store):
    # Resolved after 15, 20, 30, 45, 60, 90, 120, 180 and 240 minutes: 9 values.
    resolve = _collect(history).resolve

    assert resolve.overall.count == 9
    assert (resolve.overall.p50, resolve.overall.p90, resolve.overall.p95) == _minutes(60, 240, 240)
    assert resolve.overall.mean == 800 * 60 / 9
    assert resolve.by_team["payments"] == Distribution(3, 3300.0, *_minutes(45, 90, 90))
    assert resolve.by_team["storage"] == Distribution(3, 8700.0, *_minutes(180, 240, 240))


def test_noise_alerts_per_incident_and_events(history: Store):
    noise = _collect(history).noise

    # Alerts per incident: 0, then 1 eight times, 2 twice and 3 once. INC-9's alert counts through the timeline.
    assert noise.alerts_per_incident == Distribution(12, 15 / 12, 1, 2, 3)
    assert noise.events_received == 48
    assert noise.events_by_outcome == {"repeat": 20, "new": 15, "resolved": 10, "refire": 2, "pending": 1}
    assert noise.distinct_alerts == 15
    assert noise.deduplicated == 20
    assert noise.inhibited is None
    # An event from before the window is still stored, so the counts cover all of it.
    assert noise.events_since is None


def test_noise_says_from_when_events_count(history: Store):
    # Retention deleted the event from before the window; the oldest left is from its third day.
    with history.write() as connection:
        connection.execute(alert_events.delete().where(alert_events.c.received_at < _feb(1)))

    noise = _collect(history).noise

    assert noise.events_since == _feb(1)
    assert noise.to_json()["alert_events"]["since"] == "2026-02-01T10:00:00Z"
    assert noise.events_received == 48


def test_remediation_success_rate_counts_automatic_runs(history: Store):
    remediation = _collect(history).remediation

    assert remediation.runs == 9
    assert remediation.by_status == {"succeeded": 6, "cancelled": 1, "failed": 1, "running": 1}
    assert remediation.finished == 8
    assert remediation.succeeded == 6
    assert remediation.success_rate == 0.75
    assert remediation.by_runbook == {"rb-failover": (3, 4), "rb-restart": (3, 4)}


def test_escalations_reached_per_level(history: Store):
    escalations = _collect(history).escalations

    assert escalations.highest_level == {0: 8, 1: 2, 2: 1, 3: 1}
    assert escalations.reached == {1: 4, 2: 2, 3: 1}


def test_slowest_lists_resolved_by_time_to_resolve(history: Store):
    slowest = _collect(history).slowest

    assert [incident.key for incident in slowest] == [
        "INC-10",
        "INC-12",
        "INC-7",
        "INC-3",
        "INC-6",
        "INC-2",
        "INC-1",
        "INC-5",
        "INC-9",
    ]
    assert slowest[0].time_to_resolve == 240 * 60
    assert slowest[2].title == HOSTILE_TITLE


def test_json_has_every_section(history: Store):
    document = _collect(history).to_json()

    assert document["window"] == {"start": "2026-01-30T00:00:00Z", "end": "2026-03-01T00:00:00Z", "seconds": 30 * 86400}
    assert document["percentile_method"] == "nearest-rank"
    assert document["time_to_acknowledge"]["all"] == {
        "count": 11,
        "mean": 149 * 60 / 11,
        "p50": 360.0,
        "p90": 1800.0,
        "p95": 3600.0,
    }
    assert document["escalations"]["reached"] == {"1": 4, "2": 2, "3": 1}
    assert document["remediation"]["by_runbook"]["rb-restart"] == {"succeeded": 3, "finished": 4}


def test_empty_window_gives_zeros(history: Store):
    metrics = _collect(history, Window.ending(datetime.datetime(2025, 1, 1, tzinfo=UTC), 3600))

    assert metrics.counts.total == 0
    assert metrics.counts.per_day == [(datetime.date(2024, 12, 31), 0)]
    assert metrics.acknowledge.overall == Distribution(0)
    assert metrics.noise.events_received == 0
    assert metrics.remediation.success_rate is None
    assert metrics.escalations.reached == {}
    assert metrics.slowest == []


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(50, 50), (90, 90), (95, 95), (99, 99), (100, 100), (1, 1)],
)
def test_percentile_nearest_rank_of_hundred(percent: int, expected: int):
    assert percentile(list(range(1, 101)), percent) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7], (7, 7, 7)),
        ([1, 2], (1, 2, 2)),
        ([3, 1, 2], (2, 3, 3)),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], (5, 9, 10)),
        (list(range(1, 21)), (10, 18, 19)),
    ],
)
def test_percentile_nearest_rank_small_samples(values: list[int], expected: tuple[int, int, int]):
    result = distribution(values)

    assert (result.p50, result.p90, result.p95) == expected


def test_distribution_of_nothing_is_empty():
    assert distribution([]) == Distribution(0, None, None, None, None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("2w", 1_209_600), ("1w2d", 777_600)],
)
def test_timeframe_units(text: str, seconds: int):
    assert parse_timeframe(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-5d", "0d", "1.5h", "30 d", "30dd"])
def test_timeframe_invalid_is_rejected(text: str):
    with pytest.raises(ValueError, match="invalid timeframe"):
        parse_timeframe(text)


def test_window_days_end_before_midnight():
    window = Window.ending(datetime.datetime(2026, 3, 1, tzinfo=UTC), parse_timeframe("2d"))

    assert window.days() == [datetime.date(2026, 2, 27), datetime.date(2026, 2, 28)]


def test_escalations_reached_counts_higher_levels():
    assert Escalations({0: 3, 2: 1, 4: 2}).reached == {1: 3, 2: 3, 3: 2, 4: 2}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (44.6, "45s"), (60, "1m"), (725, "12m 5s"), (3600, "1h"), (7260, "2h 1m"), (90_000, "1d 1h")],
)
def test_format_duration_two_units(seconds: float | None, text: str):
    assert format_duration(seconds) == text
