"""Store queries of the web view: a page of the incident list, and everything one incident page shows.

The functions are synchronous, so the routes run them in worker threads. Each
returns plain values (dicts with ISO times from `runtime.incidents.to_json`
and its siblings), so templates read data, never rows or connections.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.incidents import ENDED, OPEN_STATUSES, _alert_json, _iso, _timeline_json, get_row, to_json
from runtime.runbooks.runs import _approval_json, _run_json
from runtime.store import Store
from runtime.store.schema import alerts, approvals, incidents, runbook_runs, step_runs, timeline

log = logging.getLogger("irules.web")

PAGE_SIZE = 25
MAX_TEXT_FILTER = 200
# An incident page lists at most this many alerts and the latest this many timeline entries. The counts show the rest.
MAX_ALERTS = 200
MAX_TIMELINE = 500
# Characters of output shown per step. The whole output stays in the store (`irules runs show`).
MAX_OUTPUT = 4000
# Rows read per query while a page is filled, because the service filter is checked on each row after the query.
_SCAN_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Filters:
    """The incident list's filters. Empty ones filter nothing."""

    status: tuple[str, ...] = ()
    open_only: bool = False
    severity: tuple[str, ...] = ()
    team: str | None = None
    service: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the incident list, newest first, with the cursors of the neighbouring pages (None at either end)."""

    incidents: list[dict[str, Any]]
    newer: int | None
    older: int | None


# ---------------------------------------------------------------- the list


def incident_page(store: Store, filters: Filters, *, before: int | None = None, after: int | None = None) -> Page:
    """Return the page of incidents that match `filters`: the newest, or those just older than `before` or newer than `after`.

    Pages are cut by incident number (keyset pagination), so a page stays
    stable while new incidents arrive.
    """
    with store.read() as connection:
        if after is not None:
            rows = _scan(connection, filters, newer_than=after, limit=PAGE_SIZE + 1)
            more_newer = len(rows) > PAGE_SIZE
            rows = list(reversed(rows[:PAGE_SIZE]))
            more_older = bool(rows) and bool(_scan(connection, filters, older_than=rows[-1]["id"], limit=1))
        else:
            rows = _scan(connection, filters, older_than=before, limit=PAGE_SIZE + 1)
            more_older = len(rows) > PAGE_SIZE
            rows = rows[:PAGE_SIZE]
            more_newer = bool(rows) and before is not None and bool(_scan(connection, filters, newer_than=rows[0]["id"], limit=1))
    return Page(
        incidents=[to_json(row) for row in rows],
        newer=rows[0]["id"] if rows and more_newer else None,
        older=rows[-1]["id"] if rows and more_older else None,
    )


def _scan(
    connection: sa.Connection,
    filters: Filters,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """Return up to `limit` matching incidents beyond the cursor, nearest to it first."""
    query = _filtered(filters)
    if newer_than is not None:
        query = query.where(incidents.c.id > newer_than).order_by(incidents.c.id.asc())
    else:
        if older_than is not None:
            query = query.where(incidents.c.id < older_than)
        query = query.order_by(incidents.c.id.desc())
    found: list[dict[str, Any]] = []
    offset = 0
    while len(found) < limit:
        chunk = [dict(row) for row in connection.execute(query.limit(_SCAN_CHUNK).offset(offset)).mappings()]
        found += [row for row in chunk if filters.service is None or filters.service in (row["services"] or [])]
        if len(chunk) < _SCAN_CHUNK:
            break
        offset += _SCAN_CHUNK
    return found[:limit]


def _filtered(filters: Filters) -> sa.Select:
    query = sa.select(incidents)
    if filters.status:
        query = query.where(incidents.c.status.in_(list(filters.status)))
    if filters.open_only:
        query = query.where(incidents.c.status.in_(OPEN_STATUSES))
    if filters.severity:
        query = query.where(incidents.c.severity.in_(list(filters.severity)))
    if filters.team:
        query = query.where(incidents.c.team == filters.team)
    if filters.service:
        # The JSON text of `services` contains the name as a JSON string, and `_scan` then checks the list itself.
        query = query.where(sa.cast(incidents.c.services, sa.Text).like(_like_pattern(json.dumps(filters.service)), escape="\\"))
    if filters.text:
        pattern = _like_pattern(filters.text[:MAX_TEXT_FILTER])
        alert_named = sa.exists().where(alerts.c.incident_id == incidents.c.id, alerts.c.name.ilike(pattern, escape="\\"))
        query = query.where(
            sa.or_(incidents.c.key.ilike(pattern, escape="\\"), incidents.c.title.ilike(pattern, escape="\\"), alert_named)
        )
    return query


def _like_pattern(text: str) -> str:
    """Return a LIKE pattern that finds `text` anywhere, with its own `%`, `_` and backslashes matched literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# ---------------------------------------------------------------- one incident


def incident_details(store: Store, reference: str) -> dict[str, Any]:
    """Return the incident with its latest alerts and timeline entries, its runbook runs and their counts.

    Raises:
        IncidentError: no incident has that key or number (404).
    """
    with store.read() as connection:
        row = dict(get_row(connection, reference))
        result = to_json(row)
        result["alerts"], result["alerts_total"] = _alerts_of(connection, row["id"])
        result["timeline"], result["timeline_total"] = _timeline_of(connection, row["id"])
        result["runs"] = _runs_of(connection, row["id"], row["key"])
    result["ended"] = row["status"] in ENDED
    return result


def _alerts_of(connection: sa.Connection, incident_id: int) -> tuple[list[dict[str, Any]], int]:
    """Return the incident's alerts, firing ones first and then by first sight, and how many it has."""
    total = connection.execute(sa.select(sa.func.count()).where(alerts.c.incident_id == incident_id)).scalar_one()
    query = (
        sa.select(alerts)
        .where(alerts.c.incident_id == incident_id)
        .order_by(sa.case((alerts.c.status == "firing", 0), else_=1), alerts.c.first_seen, alerts.c.key)
        .limit(MAX_ALERTS)
    )
    return [_alert_json(dict(item)) for item in connection.execute(query).mappings()], total


def _timeline_of(connection: sa.Connection, incident_id: int) -> tuple[list[dict[str, Any]], int]:
    """Return the latest timeline entries in the order they happened, and how many the incident has."""
    total = connection.execute(sa.select(sa.func.count()).where(timeline.c.incident_id == incident_id)).scalar_one()
    query = sa.select(timeline).where(timeline.c.incident_id == incident_id).order_by(timeline.c.id.desc()).limit(MAX_TIMELINE)
    entries = [_timeline_json(dict(item)) for item in connection.execute(query).mappings()]
    return list(reversed(entries)), total


def _runs_of(connection: sa.Connection, incident_id: int, key: str) -> list[dict[str, Any]]:
    """Return the incident's runbook runs, oldest first, each with its steps and approvals."""
    rows = connection.execute(
        sa.select(runbook_runs).where(runbook_runs.c.incident_id == incident_id).order_by(runbook_runs.c.id)
    ).mappings()
    runs = [{**_run_json({**dict(row), "incident_key": key}), "steps": [], "approvals": []} for row in rows]
    by_id = {run["id"]: run for run in runs}
    if not by_id:
        return runs
    steps = connection.execute(
        sa.select(step_runs).where(step_runs.c.run_id.in_(list(by_id))).order_by(step_runs.c.id)
    ).mappings()
    for step in steps:
        by_id[step["run_id"]]["steps"].append(_step_json(dict(step)))
    asks = connection.execute(sa.select(approvals).where(approvals.c.run_id.in_(list(by_id))).order_by(approvals.c.id)).mappings()
    for ask in asks:
        by_id[ask["run_id"]]["approvals"].append(_approval_json(dict(ask)))
    return runs


def _step_json(row: Mapping[str, Any]) -> dict[str, Any]:
    outcome = dict(row["outcome"] or {})
    output = str(outcome.get("output") or "")
    return {
        "name": row["name"],
        "state": row["state"],
        "attempt": row["attempt"],
        "operation": row["operation"],
        "exit_code": outcome.get("exit_code"),
        "output": output[:MAX_OUTPUT],
        "output_cut": len(output) > MAX_OUTPUT,
        "detail": row["detail"],
        "updated_at": _iso(row["updated_at"]),
    }


def run_steps(store: Store, run_id: int) -> tuple[str, dict[str, str]] | None:
    """Return a run's runbook id and the state of each step it recorded, or None when there is no such run."""
    with store.read() as connection:
        runbook_id = connection.execute(sa.select(runbook_runs.c.runbook_id).where(runbook_runs.c.id == run_id)).scalar()
        if runbook_id is None:
            return None
        states = connection.execute(sa.select(step_runs.c.name, step_runs.c.state).where(step_runs.c.run_id == run_id))
        return runbook_id, {name: state for name, state in states}


def run_incident_key(store: Store, run_id: int) -> str | None:
    """Return the key of the incident a run belongs to, or None for a run without one or no such run."""
    with store.read() as connection:
        return connection.execute(
            sa.select(incidents.c.key)
            .select_from(runbook_runs.join(incidents, runbook_runs.c.incident_id == incidents.c.id))
            .where(runbook_runs.c.id == run_id)
        ).scalar()


# ---------------------------------------------------------------- similar incidents


def similar_incidents(store: Store, reference: str) -> list[dict[str, Any]]:
    """Return past incidents like this one, from the incident's `triage` column or searched once and kept there.

    Notifications keep the same list under the same key (`runtime.notify.context`),
    so the page and the messages show one result. A failed search shows no
    similar incidents rather than failing the page.
    """
    from runtime.notify.messages import MAX_SIMILAR
    from runtime.triage.similar import find_similar

    with store.read() as connection:
        row = get_row(connection, reference)
    if "similar" in (row["triage"] or {}):
        return list(row["triage"]["similar"])
    try:
        with store.write() as connection:
            fresh = get_row(connection, reference, lock=True)
            triage = dict(fresh["triage"] or {})
            if "similar" not in triage:
                triage["similar"] = [entry.to_json() for entry in find_similar(connection, fresh["id"], k=MAX_SIMILAR)]
                connection.execute(incidents.update().where(incidents.c.id == fresh["id"]).values(triage=triage))
            return list(triage["similar"])
    except Exception as error:  # the page shows the rest of the incident
        log.warning("incident %s: the search for similar incidents failed: %s", row["key"], error)
        return []


def page_values(values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Return the values of a repeated query parameter that are among `allowed`, each once."""
    return tuple(dict.fromkeys(value for value in values if value in allowed))
