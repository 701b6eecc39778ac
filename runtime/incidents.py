"""Incidents: lifecycle, timeline, and the operations people and the pipeline perform on them.

Every change to an incident and its timeline entry are written in the same
transaction, so the timeline is a complete, append-only account of who or what
changed what and when.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from compiler.expr import SEVERITY_LEVELS
from runtime.policy import format_incident_id
from runtime.store import Store
from runtime.store.schema import alerts, incidents, timeline

log = logging.getLogger("irules.incidents")

# How long an acknowledgement or resolution waits for escalation messages being sent
# at that moment; a send is bounded by its timeout, and a claim by its lease.
SEND_WAIT_S = 20.0
SEND_POLL_S = 0.02

STATUSES = ("detected", "triaged", "investigating", "mitigating", "resolved", "closed")
ENDED = ("resolved", "closed")
# The statuses of an open incident. Queries list them rather than exclude `ENDED`, because
# SQLite and PostgreSQL serve an IN list from the status index and `NOT IN` from a scan.
OPEN_STATUSES = tuple(status for status in STATUSES if status not in ENDED)

# Allowed status changes. `resolved -> detected | investigating` is a reopen; a closed
# incident stays closed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "detected": frozenset({"triaged", "investigating", "mitigating", "resolved", "closed"}),
    "triaged": frozenset({"investigating", "mitigating", "resolved", "closed"}),
    "investigating": frozenset({"triaged", "mitigating", "resolved", "closed"}),
    "mitigating": frozenset({"investigating", "resolved", "closed"}),
    "resolved": frozenset({"investigating", "closed"}),
    "closed": frozenset(),
}


class IncidentError(Exception):
    """An operation that cannot be done: an unknown incident or a forbidden change. `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- building blocks


def add_timeline(
    connection: sa.Connection,
    incident_id: int,
    at: datetime.datetime,
    kind: str,
    actor: str,
    message: str,
    data: dict[str, Any] | None = None,
) -> None:
    connection.execute(
        timeline.insert().values(incident_id=incident_id, at=at, kind=kind, actor=actor, message=message, data=data or {})
    )


def open_incident(
    connection: sa.Connection,
    store: Store,
    id_format: str,
    now: datetime.datetime,
    *,
    title: str,
    severity: str | None,
    severity_source: str | None,
    team: str | None,
    services: list[str],
    receivers: list[str],
    correlation: str | None,
    correlation_rule: str | None,
    labels: dict[str, str],
    actor: str,
    triage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Insert a new incident in state `detected` with its first timeline entry, and return its row."""
    counter = f"incident:{now.year}" if "{year" in id_format else "incident"
    number = store.next_number(connection, counter)
    values = {
        "key": format_incident_id(id_format, now.year, number),
        "title": title,
        "status": "detected",
        "severity": severity,
        "severity_source": severity_source,
        "team": team,
        "services": services,
        "receivers": receivers,
        "correlation": correlation,
        "correlation_rule": correlation_rule,
        "triage": triage,
        "labels": labels,
        "created_at": now,
        "updated_at": now,
        "last_alert_at": now,
        "alert_count": 0,
        "firing_count": 0,
        "escalation_level": 0,
    }
    incident_id = connection.execute(incidents.insert().values(**values)).inserted_primary_key[0]
    add_timeline(
        connection,
        incident_id,
        now,
        "incident.detected",
        actor,
        f"Incident {values['key']} opened: {title}",
        {"severity": severity, "team": team, "services": services, "correlation": correlation},
    )
    return {"id": incident_id, **values}


# ---------------------------------------------------------------- operations by people


@dataclass(frozen=True, slots=True)
class Change:
    """A change someone makes to an incident: any of status, assignee, severity, with an optional note."""

    status: str | None = None
    assignee: str | None = None
    severity: str | None = None
    note: str | None = None


def get_row(connection: sa.Connection, reference: str, lock: bool = False) -> Any:
    """Return the incident named by its key (`INC-2026-0042`) or number, or raise a 404 `IncidentError`.

    With `lock`, PostgreSQL locks the row until the transaction ends (SQLite's
    writer already excludes every other writer).
    """
    query = sa.select(incidents).where(incidents.c.key == reference)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    if row is None and reference.isascii() and reference.isdigit():
        query = sa.select(incidents).where(incidents.c.id == int(reference))
        row = connection.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        raise IncidentError(f"incident {reference!r} not found", status=404)
    return row


class _Sending(Exception):
    """Escalation messages that the change would cancel are being sent; try again shortly."""


@contextmanager
def _ending(store: Store, reference: str, on: str | None, now: datetime.datetime) -> Iterator[tuple[sa.Connection, Any]]:
    """Run a write transaction on a locked incident that, for `on`, no escalation message is being sent to.

    When `on` is `acknowledged` or `resolved` and a message that it would cancel is
    being sent, the transaction is rolled back and tried again until the send is
    over, so the change commits only after everything it stops has been stopped.
    """
    deadline = time.monotonic() + SEND_WAIT_S
    while True:
        try:
            with store.write() as connection:
                row = get_row(connection, reference, lock=True)
                if on is not None and time.monotonic() < deadline:
                    from runtime.notify.escalation import sending

                    if sending(connection, row["id"], on, now):
                        raise _Sending
                yield connection, row
            return
        except _Sending:
            time.sleep(SEND_POLL_S)


def _stop_escalation(connection: sa.Connection, row: Any, on: str, actor: str, now: datetime.datetime) -> None:
    """Cancel what `on` ends, make the incident's receivers due, and note both on the timeline."""
    from runtime.notify.escalation import cancel, cancellation_entry
    from runtime.notify.planner import mark_due_now

    stopped, withdrawn = cancel(connection, row["id"], on, now)
    mark_due_now(connection, row["id"], now)
    entry = cancellation_entry(connection, row["id"], on, stopped, withdrawn)
    if entry is not None:
        message, data = entry
        add_timeline(connection, row["id"], now, "escalation.cancelled", actor, message, data)


def update(store: Store, reference: str, change: Change, actor: str, now: datetime.datetime) -> dict[str, Any]:
    """Apply a status, assignee or severity change with timeline entries, and return the incident."""
    on = "resolved" if change.status in ENDED else None
    with _ending(store, reference, on, now) as (connection, row):
        values: dict[str, Any] = {}
        if change.status is not None and change.status != row["status"]:
            _check_transition(row["key"], row["status"], change.status)
            values["status"] = change.status
            if change.status == "resolved":
                values["resolved_at"] = now
            elif change.status == "closed":
                values["closed_at"] = now
                if row["resolved_at"] is None:
                    values["resolved_at"] = now
            elif row["status"] in ENDED:
                values["resolved_at"] = None
            message = f"Status changed from {row['status']} to {change.status}" + (f": {change.note}" if change.note else "")
            if change.status in ENDED and row["firing_count"]:
                # The alerts keep firing at their sources; their repeats stay folded into this
                # incident and do not reopen it, so the decision of a person is kept.
                message += f" ({row['firing_count']} of its alerts still firing)"
            add_timeline(
                connection,
                row["id"],
                now,
                "incident.status",
                actor,
                message,
                {"from": row["status"], "to": change.status, "firing": row["firing_count"]},
            )
        if change.assignee is not None and change.assignee != row["assignee"]:
            values["assignee"] = change.assignee
            add_timeline(
                connection,
                row["id"],
                now,
                "incident.assigned",
                actor,
                f"Assigned to {change.assignee}",
                {"from": row["assignee"], "to": change.assignee},
            )
        if change.severity is not None and change.severity != row["severity"]:
            if change.severity not in SEVERITY_LEVELS:
                raise IncidentError(f"unknown severity {change.severity!r}; use one of {', '.join(SEVERITY_LEVELS)}", status=400)
            values["severity"] = change.severity
            values["severity_source"] = "person"
            add_timeline(
                connection,
                row["id"],
                now,
                "incident.severity",
                actor,
                f"Severity changed from {row['severity'] or 'none'} to {change.severity}",
                {"from": row["severity"], "to": change.severity},
            )
        if change.note and change.status is None:
            add_timeline(connection, row["id"], now, "incident.note", actor, change.note, {})
        if values:
            values["updated_at"] = now
            connection.execute(incidents.update().where(incidents.c.id == row["id"]).values(**values))
            if "status" in values and values["status"] in ENDED and row["status"] not in ENDED:
                _stop_escalation(connection, row, "resolved", actor, now)
            elif "severity" in values or "status" in values:
                from runtime.notify.planner import mark_due_now

                mark_due_now(connection, row["id"], now)
        return {**row, **values}


def acknowledge(store: Store, reference: str, actor: str, now: datetime.datetime) -> dict[str, Any]:
    """Record who acknowledged the incident; a new incident moves on to `investigating`.

    Escalation steps waiting for an acknowledgement are cancelled in the same
    transaction, after any of their messages being sent right now went out.
    """
    with _ending(store, reference, "acknowledged", now) as (connection, row):
        if row["status"] in ENDED:
            raise IncidentError(f"incident {row['key']} is {row['status']}; there is nothing to acknowledge")
        if row["acknowledged_at"] is not None:
            return dict(row)
        values: dict[str, Any] = {"acknowledged_at": now, "acknowledged_by": actor, "updated_at": now}
        if row["status"] in ("detected", "triaged"):
            values["status"] = "investigating"
        connection.execute(incidents.update().where(incidents.c.id == row["id"]).values(**values))
        add_timeline(
            connection,
            row["id"],
            now,
            "incident.acknowledged",
            actor,
            f"Acknowledged by {actor}",
            {"status": values.get("status", row["status"])},
        )
        _stop_escalation(connection, row, "acknowledged", actor, now)
        return {**row, **values}


def create(
    store: Store,
    id_format: str,
    now: datetime.datetime,
    *,
    title: str,
    severity: str | None,
    services: Sequence[str],
    team: str | None,
    actor: str,
    policy: Any = None,
    within: Callable[[sa.Connection], None] | None = None,
) -> dict[str, Any]:
    """Open an incident by hand, without an alert, and return its whole row.

    With the rules' `policy`, the team hears about it and its escalation starts.
    `within` runs in the same transaction, so a caller can record that its request
    was done exactly when the incident exists.
    """
    if severity is not None and severity not in SEVERITY_LEVELS:
        raise IncidentError(f"unknown severity {severity!r}; use one of {', '.join(SEVERITY_LEVELS)}", status=400)
    if policy is not None and team is not None and team not in policy.teams and team not in policy.receivers:
        known = ", ".join(sorted(policy.teams)) or "none"
        raise IncidentError(f"unknown team {team!r}: the rules declare no such team or receiver (teams: {known})", status=400)
    with store.write() as connection:
        opened = open_incident(
            connection,
            store,
            id_format,
            now,
            title=title,
            severity=severity,
            severity_source="person" if severity else None,
            team=team,
            services=list(services),
            receivers=[],
            correlation=None,
            correlation_rule=None,
            labels={},
            actor=actor,
        )
        if policy is not None:
            from runtime.notify import escalation, planner

            escalation.schedule(connection, policy, opened, now)
            planner.mark_due(connection, policy, {opened["id"]: planner.Touch(now)})
        if within is not None:
            within(connection)
        # `open_incident` returns only the columns it sets, but `to_json` also reads those left at their defaults.
        return dict(get_row(connection, opened["key"]))


def _check_transition(key: str, current: str, requested: str) -> None:
    if requested not in STATUSES:
        raise IncidentError(f"unknown status {requested!r}; use one of {', '.join(STATUSES)}", status=400)
    if requested not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        raise IncidentError(f"incident {key} cannot go from {current} to {requested} (allowed: {allowed})")


# ---------------------------------------------------------------- reading

# The values each list filter may take. A value outside them would match no incident,
# so a typo such as `severity=urgent` is rejected instead of returning an empty list.
FILTER_VALUES: dict[str, tuple[str, ...]] = {"status": STATUSES, "severity": SEVERITY_LEVELS}


def check_filter(name: str, values: Sequence[str], open_hint: str | None = None) -> None:
    """Raise a 400 `IncidentError` naming the valid values when one of `values` is not a valid `status` or `severity`.

    `open_hint` is how the caller selects open incidents, such as `--open` or `open=true`.
    The message suggests it for the status `open`, because open is a filter of its own.
    """
    allowed = FILTER_VALUES[name]
    for value in values:
        if value in allowed:
            continue
        message = f"unknown {name} {value!r}; use one of {', '.join(allowed)}"
        if name == "status" and value == "open" and open_hint:
            message += f", or {open_hint} for incidents not yet resolved or closed"
        raise IncidentError(message, status=400)


def list_incidents(
    store: Store,
    *,
    status: Sequence[str] = (),
    severity: Sequence[str] = (),
    team: str | None = None,
    service: str | None = None,
    open_only: bool = False,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Return the incidents that pass every filter given, newest first; raise a 400 `IncidentError` for an unknown status or severity."""
    check_filter("status", status)
    check_filter("severity", severity)
    query = sa.select(incidents).order_by(incidents.c.id.desc()).limit(limit)
    if status:
        query = query.where(incidents.c.status.in_(list(status)))
    if open_only:
        query = query.where(incidents.c.status.in_(OPEN_STATUSES))
    if severity:
        query = query.where(incidents.c.severity.in_(list(severity)))
    if team:
        query = query.where(incidents.c.team == team)
    if service:
        # `services` is a JSON list of names, so a name in quotes matches one element. It is
        # filtered before LIMIT, and checked again exactly below.
        query = query.where(sa.cast(incidents.c.services, sa.Text).contains(f'"{service}"', autoescape=True))
    with store.read() as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    if service:
        rows = [row for row in rows if service in row["services"]]
    return [to_json(row) for row in rows]


def show(store: Store, reference: str) -> dict[str, Any]:
    """Return the incident with its alerts and timeline."""
    with store.read() as connection:
        row = get_row(connection, reference)
        alert_rows = connection.execute(
            sa.select(alerts).where(alerts.c.incident_id == row["id"]).order_by(alerts.c.first_seen)
        ).mappings()
        entries = connection.execute(
            sa.select(timeline).where(timeline.c.incident_id == row["id"]).order_by(timeline.c.id)
        ).mappings()
        result = to_json(dict(row))
        result["alerts"] = [_alert_json(dict(alert)) for alert in alert_rows]
        result["timeline"] = [_timeline_json(dict(entry)) for entry in entries]
    return result


def to_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["key"],
        "number": row["id"],
        "title": row["title"],
        "status": row["status"],
        "severity": row["severity"],
        "severity_source": row["severity_source"],
        "team": row["team"],
        "services": row["services"],
        "receivers": row["receivers"],
        "correlation": row["correlation"],
        "alert_count": row["alert_count"],
        "firing_count": row["firing_count"],
        "escalation_policy": row.get("escalation_policy"),
        "escalation_level": row.get("escalation_level") or 0,
        "assignee": row["assignee"],
        "acknowledged_by": row["acknowledged_by"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "resolved_at": _iso(row["resolved_at"]),
        "closed_at": _iso(row["closed_at"]),
        "impact": row.get("impact"),
        "triage": row.get("triage"),
    }


def _alert_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "fingerprint": row["fingerprint"],
        "name": row["name"],
        "source": row["source"],
        "status": row["status"],
        "severity": row["severity"],
        "labels": row["labels"],
        "annotations": row["annotations"],
        "receivers": row["receivers"],
        "starts_at": _iso(row["starts_at"]),
        "ends_at": _iso(row["ends_at"]),
        "first_seen": _iso(row["first_seen"]),
        "last_seen": _iso(row["last_seen"]),
        "occurrences": row["occurrences"],
        "flapping": row["flapping"],
    }


def _timeline_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"at": _iso(row["at"]), "kind": row["kind"], "actor": row["actor"], "message": row["message"], "data": row["data"]}


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
