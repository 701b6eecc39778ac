"""Retention deletes exactly the rows past their period, in small batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runtime.cluster import claim_job
from runtime.retention import RetentionSettings, purge
from runtime.store import Store
from runtime.store.schema import (
    alert_events,
    alerts,
    approvals,
    assistant_sessions,
    dead_letters,
    incidents,
    metadata,
    notification_groups,
    outbox,
    payloads,
    runbook_runs,
    step_runs,
    timeline,
    timers,
)

NOW = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
# Tiny periods against the virtual `NOW`; batches of 2 make every kind of row take several transactions.
SETTINGS = RetentionSettings(incidents_s=3 * 86_400, dead_letters_s=2 * 86_400, payloads_s=86_400, batch=2)


def add_incident(connection: sa.Connection, key: str, status: str, ended: datetime.datetime | None) -> int:
    created = NOW - 30 * DAY
    return connection.execute(
        incidents.insert().values(
            key=key,
            title=key,
            status=status,
            services=[],
            receivers=[],
            labels={},
            created_at=created,
            updated_at=created,
            last_alert_at=created,
            resolved_at=ended,
            alert_count=1,
            firing_count=0,
        )
    ).inserted_primary_key[0]


def add_alert(
    connection: sa.Connection, key: str, status: str, incident_id: int | None, resolved: datetime.datetime | None
) -> None:
    seen = NOW - 40 * DAY
    connection.execute(
        alerts.insert().values(
            key=key,
            fingerprint=key,
            source="alertmanager",
            name=key,
            status=status,
            labels={},
            annotations={},
            first_seen=seen,
            last_seen=seen,
            resolved_at=resolved,
            occurrences=1,
            receivers=[],
            incident_id=incident_id,
            transitions=[],
            flapping=False,
        )
    )


def add_belongings(connection: sa.Connection, incident_id: int, run_status: str) -> None:
    """Add one row of every kind that belongs to an incident."""
    at = NOW - 20 * DAY
    connection.execute(timeline.insert().values(incident_id=incident_id, at=at, kind="note", actor="a", message="m", data={}))
    connection.execute(
        outbox.insert().values(
            key=f"k{incident_id}",
            incident_id=incident_id,
            channel="webhook",
            endpoint="webhook:x",
            event="opened",
            priority=0,
            message={},
            status="delivered",
            attempts=1,
            created_at=at,
            next_attempt_at=at,
            reference={},
        )
    )
    connection.execute(
        timers.insert().values(
            key=f"t{incident_id}",
            kind="escalation.unacknowledged",
            incident_id=incident_id,
            due_at=at,
            status="cancelled",
            data={},
            created_at=at,
        )
    )
    connection.execute(
        notification_groups.insert().values(
            incident_id=incident_id,
            receiver="ops",
            group_wait_s=0,
            group_interval_s=1,
            repeat_interval_s=3600,
            via_alertmanager=False,
            created_at=at,
            notified_count=1,
        )
    )
    connection.execute(
        assistant_sessions.insert().values(
            incident_id=incident_id, provider="claude", session_id="s", linked_by="a", created_at=at
        )
    )
    run_id = connection.execute(
        runbook_runs.insert().values(
            runbook_id="restart",
            incident_id=incident_id,
            status=run_status,
            trigger="auto",
            requested_by="irules",
            values={},
            created_at=at,
        )
    ).inserted_primary_key[0]
    connection.execute(
        step_runs.insert().values(run_id=run_id, name="s1", state="succeeded", attempt=1, operation={}, updated_at=at)
    )
    connection.execute(
        approvals.insert().values(run_id=run_id, step="s1", kind="approval", status="approved", operation={}, requested_at=at)
    )


def add_payload(connection: sa.Connection, received: datetime.datetime, processed: bool) -> int:
    payload_id = connection.execute(
        payloads.insert().values(
            source="alertmanager", kind="alertmanager", received_at=received, body=b"{}", headers={}, alert_count=1, details={}
        )
    ).inserted_primary_key[0]
    connection.execute(
        alert_events.insert().values(
            payload_id=payload_id,
            source="alertmanager",
            fingerprint="f",
            status="firing",
            alert={},
            received_at=received,
            processed_at=received if processed else None,
        )
    )
    return payload_id


def add_dead_letter(connection: sa.Connection, received: datetime.datetime) -> None:
    connection.execute(
        dead_letters.insert().values(
            source="x", received_at=received, status=400, reason="r", body=b"", body_truncated=False, headers={}
        )
    )


def counts(store: Store) -> dict[str, Any]:
    tables = [incidents, alerts, timeline, outbox, timers, notification_groups, assistant_sessions, runbook_runs, step_runs]
    tables += [approvals, payloads, alert_events, dead_letters]
    with store.read() as connection:
        return {table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() for table in tables}


def test_retention_deletes_exactly_the_old_rows(store: Store) -> None:
    with store.write() as connection:
        old = [add_incident(connection, f"OLD-{number}", "resolved", NOW - 10 * DAY) for number in range(3)]
        recent = add_incident(connection, "RECENT", "resolved", NOW - DAY)
        still_open = add_incident(connection, "OPEN", "investigating", None)
        busy = add_incident(connection, "BUSY", "resolved", NOW - 10 * DAY)
        for incident_id in old:
            add_belongings(connection, incident_id, "succeeded")
            add_alert(connection, f"resolved-{incident_id}", "resolved", incident_id, NOW - 10 * DAY)
        add_alert(connection, "firing-of-old", "firing", old[0], None)
        add_belongings(connection, recent, "succeeded")
        add_alert(connection, "resolved-recent", "resolved", recent, NOW - DAY)
        add_belongings(connection, busy, "waiting")
        add_alert(connection, "firing-no-incident", "firing", None, None)
        add_alert(connection, "resolved-no-incident", "resolved", None, NOW - 5 * DAY)
        add_alert(connection, "resolved-just-now", "resolved", None, NOW)
        for _ in range(3):
            add_dead_letter(connection, NOW - 5 * DAY)
        add_dead_letter(connection, NOW - DAY)
        for _ in range(3):
            add_payload(connection, NOW - 2 * DAY, processed=True)
        pending_payload = add_payload(connection, NOW - 2 * DAY, processed=False)
        add_payload(connection, NOW - datetime.timedelta(hours=1), processed=True)

    deleted = purge(store, SETTINGS, NOW)

    assert deleted == {
        "approvals": 3,
        "step_runs": 3,
        "runbook_runs": 3,
        "assistant_sessions": 3,
        "threads": 0,
        "timers": 3,
        "notification_groups": 3,
        "outbox": 3,
        "timeline": 3,
        "alerts": 4,
        "incidents": 3,
        "dead_letters": 3,
        "alert_events": 3,
        "payloads": 3,
    }
    assert counts(store) == {
        "incidents": 3,
        "alerts": 4,
        "timeline": 2,
        "outbox": 2,
        "timers": 2,
        "notification_groups": 2,
        "assistant_sessions": 2,
        "runbook_runs": 2,
        "step_runs": 2,
        "approvals": 2,
        "payloads": 2,
        "alert_events": 2,
        "dead_letters": 1,
    }
    with store.read() as connection:
        kept = dict(connection.execute(sa.select(alerts.c.key, alerts.c.incident_id).order_by(alerts.c.key)).all())
        kept_incidents = set(connection.execute(sa.select(incidents.c.id)).scalars())
        kept_payloads = set(connection.execute(sa.select(payloads.c.id)).scalars())
    # The firing alert of a deleted incident keeps its dedup state, detached from the incident.
    assert kept == {
        "firing-no-incident": None,
        "firing-of-old": None,
        "resolved-just-now": None,
        "resolved-recent": recent,
    }
    assert kept_incidents == {recent, still_open, busy}
    assert pending_payload in kept_payloads

    assert purge(store, SETTINGS, NOW) == {"alerts": 0, "dead_letters": 0}


def test_payload_pass_stops_at_recent_payload(store: Store) -> None:
    with store.write() as connection:
        add_payload(connection, NOW - 2 * DAY, processed=True)
        add_payload(connection, NOW - datetime.timedelta(hours=1), processed=True)
        # Stored after the recent one with an older receive time, as a node's spool drains.
        late = add_payload(connection, NOW - 3 * DAY, processed=True)

    assert purge(store, SETTINGS, NOW)["payloads"] == 1
    with store.read() as connection:
        assert late in set(connection.execute(sa.select(payloads.c.id)).scalars())

    # Once the payload before it is old too, the late one goes with it.
    assert purge(store, SETTINGS, NOW + 2 * DAY)["payloads"] == 2
    assert counts(store)["payloads"] == 0


def test_job_runs_once_per_period(store: Store) -> None:
    claims = [claim_job(store, "retention", f"node-{index}", 600, NOW) for index in range(3)]
    assert claims == [True, False, False]
    assert claim_job(store, "retention", "node-1", 600, NOW + datetime.timedelta(seconds=599)) is False
    assert claim_job(store, "retention", "node-1", 600, NOW + datetime.timedelta(seconds=600)) is True


def test_foreign_keys_have_an_index() -> None:
    """Check that each column that references another table leads an index.

    Retention deletes rows by these columns, and SQLite and PostgreSQL check each
    foreign key on delete. Without the index, every deleted row scans the whole
    referencing table: on SQLite, 68 s per batch of 500 payloads on a store of
    300,000 payloads.
    """
    unindexed = []
    for table in metadata.sorted_tables:
        leading = {index.columns[0].name for index in table.indexes} | {table.primary_key.columns[0].name}
        leading |= {constraint.columns[0].name for constraint in table.constraints if isinstance(constraint, sa.UniqueConstraint)}
        unindexed += [f"{table.name}.{key.parent.name}" for key in table.foreign_keys if key.parent.name not in leading]

    assert unindexed == []


def test_event_purge_uses_the_payload_index(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'irules.db'}")
    try:
        statement = alert_events.delete().where(alert_events.c.payload_id.in_([1, 2, 3]))
        compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
        with store.engine.connect() as connection:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    finally:
        store.close()

    assert any("ix_alert_events_payload_id" in step for step in plan), plan
