"""Backtesting: the alert events and people's actions recorded in a store, replayed through a ruleset.

`load_history` reads, for a window of time, the alerts as received (table
`alert_events`, in arrival order) and the acknowledgements and resolutions that
people made (timeline entries of the recorded incidents). `replay` runs them
through one ruleset on a virtual clock. An action is replayed by alert: at its
recorded time it applies to every simulated incident that contains an alert of
the recorded incident.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from runtime.alerts import Alert
from runtime.incidents import ENDED
from runtime.policy import Policy
from runtime.simulate.engine import Simulation
from runtime.simulate.result import SimulationResult
from runtime.store import Store
from runtime.store.schema import alert_events, alerts, incidents, timeline

# Actors of timeline entries that no person made: the pipeline, and the sources.
AUTOMATIC_ACTOR = "irules"
SOURCE_ACTOR_PREFIX = "source:"
# Inputs applied between two progress reports.
PROGRESS_EVERY = 25

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One alert as the daemon received it, at its arrival time."""

    at: datetime.datetime
    alert: Alert


@dataclass(frozen=True, slots=True)
class RecordedAction:
    """An acknowledgement or resolution a person made on a recorded incident, with that incident's alert fingerprints.

    `status` is the status the person set (`resolved` or `closed`) and is None for an acknowledgement.
    """

    at: datetime.datetime
    action: str
    by: str
    incident: str
    fingerprints: tuple[str, ...]
    status: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """The alert events and people's actions that a store recorded in the window [`start`, `end`)."""

    start: datetime.datetime
    end: datetime.datetime
    events: tuple[RecordedEvent, ...]
    actions: tuple[RecordedAction, ...]


def load_history(store: Store, start: datetime.datetime, end: datetime.datetime) -> History:
    """Read the alert events received and the people's actions made from `start` up to, but not including, `end`."""
    with store.read() as connection:
        rows = connection.execute(
            sa.select(alert_events.c.alert, alert_events.c.received_at)
            .where(alert_events.c.received_at >= start, alert_events.c.received_at < end)
            .order_by(alert_events.c.id)
        ).all()
        events = tuple(RecordedEvent(row.received_at, Alert.from_json(row.alert)) for row in rows)
        actions = _actions(connection, start, end)
    return History(start, end, events, actions)


def _actions(connection: sa.Connection, start: datetime.datetime, end: datetime.datetime) -> tuple[RecordedAction, ...]:
    entries = connection.execute(
        sa.select(timeline.c.incident_id, timeline.c.at, timeline.c.kind, timeline.c.actor, timeline.c.data, incidents.c.key)
        .join(incidents, incidents.c.id == timeline.c.incident_id)
        .where(
            timeline.c.kind.in_(["incident.acknowledged", "incident.status"]),
            timeline.c.at >= start,
            timeline.c.at < end,
        )
        .order_by(timeline.c.at, timeline.c.id)
    ).all()
    chosen = [entry for entry in entries if _by_person(entry.kind, entry.actor, entry.data)]
    fingerprints = _fingerprints(connection, {entry.incident_id for entry in chosen})
    actions = []
    for entry in chosen:
        prints = fingerprints.get(entry.incident_id, ())
        if entry.kind == "incident.acknowledged":
            actions.append(RecordedAction(entry.at, "acknowledge", entry.actor, entry.key, prints))
        else:
            actions.append(RecordedAction(entry.at, "resolve", entry.actor, entry.key, prints, entry.data["to"]))
    return tuple(actions)


def _by_person(kind: str, actor: str, data: dict) -> bool:
    """Return whether a timeline entry is an acknowledgement, or a change to resolved or closed, that a person made."""
    if actor == AUTOMATIC_ACTOR or actor.startswith(SOURCE_ACTOR_PREFIX):
        return False
    return kind == "incident.acknowledged" or (data or {}).get("to") in ENDED


def _fingerprints(connection: sa.Connection, incident_ids: set[int]) -> dict[int, tuple[str, ...]]:
    """Return the fingerprints of every alert each incident held: its alerts now, and those its timeline shows joining."""
    if not incident_ids:
        return {}
    found: dict[int, set[str]] = {incident_id: set() for incident_id in incident_ids}
    ids = sorted(incident_ids)
    for incident_id, value in connection.execute(
        sa.select(alerts.c.incident_id, alerts.c.fingerprint).where(alerts.c.incident_id.in_(ids))
    ).all():
        found[incident_id].add(value)
    for incident_id, data in connection.execute(
        sa.select(timeline.c.incident_id, timeline.c.data).where(
            timeline.c.incident_id.in_(ids), timeline.c.kind.in_(["alert.added", "alert.refired"])
        )
    ).all():
        if (data or {}).get("fingerprint"):
            found[incident_id].add(data["fingerprint"])
    return {incident_id: tuple(sorted(values)) for incident_id, values in found.items()}


def replay(policy: Policy, history: History, progress: Progress | None = None) -> SimulationResult:
    """Replay `history` through `policy` from its start to its end and return the result.

    `progress`, when given, is called with (inputs applied, inputs in all) as the replay advances.
    """
    with Simulation(policy, start=history.start) as simulation:
        moments = []
        for event in history.events:
            simulation.feed(event.alert, at=event.at)
            moments.append(event.at)
        for action in history.actions:
            if action.action == "acknowledge":
                simulation.acknowledge_incidents_of(action.fingerprints, at=action.at, by=action.by)
            else:
                simulation.resolve_incidents_of(
                    action.fingerprints, at=action.at, by=action.by, status=action.status or "resolved"
                )
            moments.append(action.at)
        moments.sort()
        for done in range(PROGRESS_EVERY, len(moments), PROGRESS_EVERY):
            simulation.run_until(moments[done - 1])
            if progress is not None:
                progress(done, len(moments))
        simulation.run_until(history.end)
        if progress is not None:
            progress(len(moments), len(moments))
        return simulation.result()
