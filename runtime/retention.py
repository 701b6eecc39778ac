"""Retention: delete what is older than its retention period, in bounded batches.

- Incidents ended (resolved or closed) longer ago than `incidents_s`, with their
  timeline, notification groups, timers, outbox rows, Slack threads, assistant
  sessions, runbook runs with their step runs and approvals, and their resolved
  alerts. An incident with an active runbook run is kept until the run ends.
  A firing alert of such an incident is kept and detached from it.
- Dead letters received longer ago than `dead_letters_s`.
- Applied alert events and payloads received longer ago than `payloads_s`. A
  payload stays while one of its events is not applied yet.
- The dedup state of resolved alerts that belong to no incident: the `alerts`
  row goes once the alert has been resolved for longer than its dedup and flap
  windows, because a repeat after that starts afresh anyway. The row of a firing
  alert never expires by age.

Every batch is one transaction of at most `batch` incidents or rows, so retention
never holds a long lock, and a crash between batches leaves consistent data.
"""

from __future__ import annotations

import datetime
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from runtime.alerts import FIRING, RESOLVED, Alert
from runtime.incidents import ENDED
from runtime.policy import Policy
from runtime.runbooks.runs import ACTIVE
from runtime.store import Store
from runtime.store.schema import (
    alert_events,
    alerts,
    approvals,
    assistant_sessions,
    dead_letters,
    incidents,
    notification_groups,
    outbox,
    payloads,
    runbook_runs,
    step_runs,
    threads,
    timeline,
    timers,
)

log = logging.getLogger("irules.retention")

DAY_S = 86_400.0
BATCH = 500


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long each kind of record is kept, in seconds, the maximum rows per delete transaction, and how often a pass runs."""

    incidents_s: float = 90 * DAY_S
    dead_letters_s: float = 30 * DAY_S
    payloads_s: float = 7 * DAY_S
    batch: int = BATCH
    every_s: float = 600.0


# Rows deleted by one retention pass, by table name.
Deleted = dict[str, int]


def purge(store: Store, settings: RetentionSettings, now: datetime.datetime, policy: Policy | None = None) -> Deleted:
    """Delete everything older than its retention period at `now`, and return the rows deleted per table.

    `policy` gives each alert's dedup and flap windows. Without it, a resolved alert
    that belongs to no incident goes as soon as its resolution is older than `now`.
    """
    deleted: Deleted = {}
    _add(deleted, _repeat(lambda: _purge_incidents(store, now - _seconds(settings.incidents_s), settings.batch)))
    _add(deleted, _repeat(lambda: _purge_dead_letters(store, now - _seconds(settings.dead_letters_s), settings.batch)))
    cursor = _Cursor()
    _add(deleted, _repeat(lambda: _purge_payloads(store, now - _seconds(settings.payloads_s), settings.batch, cursor)))
    _add(deleted, _purge_dedup_state(store, now, policy, settings.batch))
    if any(deleted.values()):
        log.info(
            "retention deleted old rows: %s", ", ".join(f"{table}={count}" for table, count in sorted(deleted.items()) if count)
        )
    return deleted


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _add(total: Deleted, more: Deleted) -> None:
    for table, count in more.items():
        total[table] = total.get(table, 0) + count


def _repeat(batch: Callable[[], tuple[Deleted, bool]]) -> Deleted:
    """Run `batch` until it reports that nothing is left, and return the summed counts."""
    total: Deleted = {}
    while True:
        counts, more = batch()
        _add(total, counts)
        if not more:
            return total


# ---------------------------------------------------------------- incidents


def _purge_incidents(store: Store, before: datetime.datetime, limit: int) -> tuple[Deleted, bool]:
    """Delete one batch of incidents that ended before `before`, and what belongs to them."""
    ended_at = sa.func.coalesce(incidents.c.closed_at, incidents.c.resolved_at)
    busy = sa.select(runbook_runs.c.id).where(runbook_runs.c.incident_id == incidents.c.id, runbook_runs.c.status.in_(ACTIVE))
    with store.write() as connection:
        ids = list(
            connection.execute(
                sa.select(incidents.c.id)
                .where(incidents.c.status.in_(ENDED), ended_at < before, ~sa.exists(busy))
                .order_by(incidents.c.id)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return {}, False
        return _delete_incidents(connection, ids), len(ids) == limit


def _delete_incidents(connection: sa.Connection, ids: list[int]) -> Deleted:
    runs = sa.select(runbook_runs.c.id).where(runbook_runs.c.incident_id.in_(ids)).scalar_subquery()
    counts: Deleted = {}
    # A firing alert keeps its dedup state, and only stops pointing at the deleted incident.
    connection.execute(alerts.update().where(alerts.c.incident_id.in_(ids), alerts.c.status == FIRING).values(incident_id=None))
    statements = [
        ("approvals", approvals.delete().where(approvals.c.run_id.in_(runs))),
        ("step_runs", step_runs.delete().where(step_runs.c.run_id.in_(runs))),
        ("runbook_runs", runbook_runs.delete().where(runbook_runs.c.incident_id.in_(ids))),
        ("assistant_sessions", assistant_sessions.delete().where(assistant_sessions.c.incident_id.in_(ids))),
        ("threads", threads.delete().where(threads.c.incident_id.in_(ids))),
        ("timers", timers.delete().where(timers.c.incident_id.in_(ids))),
        ("notification_groups", notification_groups.delete().where(notification_groups.c.incident_id.in_(ids))),
        ("outbox", outbox.delete().where(outbox.c.incident_id.in_(ids))),
        ("timeline", timeline.delete().where(timeline.c.incident_id.in_(ids))),
        ("alerts", alerts.delete().where(alerts.c.incident_id.in_(ids))),
        ("incidents", incidents.delete().where(incidents.c.id.in_(ids))),
    ]
    for table, statement in statements:
        counts[table] = connection.execute(statement).rowcount
    return counts


# ---------------------------------------------------------------- dead letters and payloads


def _purge_dead_letters(store: Store, before: datetime.datetime, limit: int) -> tuple[Deleted, bool]:
    with store.write() as connection:
        ids = list(
            connection.execute(
                sa.select(dead_letters.c.id).where(dead_letters.c.received_at < before).order_by(dead_letters.c.id).limit(limit)
            ).scalars()
        )
        if ids:
            connection.execute(dead_letters.delete().where(dead_letters.c.id.in_(ids)))
    return {"dead_letters": len(ids)}, len(ids) == limit


@dataclass(slots=True)
class _Cursor:
    """The highest id that one retention pass has looked at."""

    after: int = 0


def _purge_payloads(store: Store, before: datetime.datetime, limit: int, cursor: _Cursor) -> tuple[Deleted, bool]:
    """Delete one batch of old payloads whose events are all applied, with those events.

    Payloads are read in id order from `cursor`, and the pass ends at the first one
    received at or after `before`. So a batch reads at most `limit` rows, where a
    filter on the receive time read the whole table once there was nothing left to
    delete. A payload stored late with an older receive time (from a node's spool)
    goes once the payloads before it have gone.
    """
    with store.write() as connection:
        rows = connection.execute(
            sa.select(payloads.c.id, payloads.c.received_at)
            .where(payloads.c.id > cursor.after)
            .order_by(payloads.c.id)
            .limit(limit)
        ).all()
        old = [row.id for row in itertools.takewhile(lambda row: row.received_at < before, rows)]
        if not old:
            return {}, False
        cursor.after = old[-1]
        pending = set(
            connection.execute(
                sa.select(alert_events.c.payload_id)
                .where(alert_events.c.payload_id.in_(old), alert_events.c.processed_at.is_(None))
                .distinct()
            ).scalars()
        )
        ids = [number for number in old if number not in pending]
        if not ids:
            return {}, len(old) == limit
        events = connection.execute(alert_events.delete().where(alert_events.c.payload_id.in_(ids))).rowcount
        connection.execute(payloads.delete().where(payloads.c.id.in_(ids)))
    return {"alert_events": events, "payloads": len(ids)}, len(old) == limit


# ---------------------------------------------------------------- dedup state


def _purge_dedup_state(store: Store, now: datetime.datetime, policy: Policy | None, limit: int) -> Deleted:
    """Delete the rows of resolved alerts without an incident that were resolved for longer than their windows."""
    deleted = 0
    after_key = ""
    while True:
        with store.write() as connection:
            rows = (
                connection.execute(
                    sa.select(alerts)
                    .where(alerts.c.status == RESOLVED, alerts.c.incident_id.is_(None), alerts.c.key > after_key)
                    .order_by(alerts.c.key)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
            expired = [row["key"] for row in rows if _expired(row, now, policy)]
            if expired:
                deleted += connection.execute(alerts.delete().where(alerts.c.key.in_(expired))).rowcount
        if len(rows) < limit:
            return {"alerts": deleted}
        after_key = rows[-1]["key"]


def _expired(row: sa.RowMapping, now: datetime.datetime, policy: Policy | None) -> bool:
    """Return whether a resolved alert's row is no longer needed to fold repeats or count flaps."""
    resolved_at = row["resolved_at"] or row["last_seen"]
    window = 0.0
    if policy is not None:
        alert = Alert.from_row(row)
        flap = policy.flap_settings(alert)
        window = max(policy.dedup_window_s(alert) or 0.0, flap[0] if flap else 0.0)
    return resolved_at < now - _seconds(window)
