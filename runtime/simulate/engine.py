"""The simulation engine: alerts and people's actions replayed through a ruleset on a virtual clock.

`Simulation` drives the daemon's own parts over a scratch SQLite store, in the
order the daemon calls them. First the pipeline applies the alert events
received at a moment. Then flapping alerts are settled, and the notifier
queues the due group messages and fires the due escalation timers. Between events the clock
jumps from one due moment to the next (a group's `due_at`, a pending timer's
`due_at`, the end of a flap window), so each page lands at the virtual time the
daemon would send it. Nothing is sent and no program runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from compiler.router import fingerprint
from runtime import incidents as incident_ops
from runtime.alerts import FIRING, RESOLVED, Alert
from runtime.notify import escalation, planner
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.simulate.collect import Collector
from runtime.simulate.result import ActionOutcome, SimulatedIncident, SimulationResult
from runtime.sources.alertmanager import source_severity
from runtime.sources.base import ALERTS, Inbound, Outcome
from runtime.store import Store
from runtime.store.schema import alerts, incidents, notification_groups, timers
from runtime.store.store import json_text

DATABASE_FILE = "simulation.db"
ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"
# Passes at one virtual moment after which `run_until` raises RuntimeError. A moment takes
# a few passes (the due work, then its inputs), so more means a bug in the engine or in the
# code it drives.
MAX_PASSES_PER_MOMENT = 50


@dataclass(order=True, slots=True)
class _Event:
    """One input, ordered by time and then by the order it was given (`number`)."""

    at: datetime.datetime
    number: int
    kind: str = field(compare=False)
    alert: Alert | None = field(default=None, compare=False)
    fingerprints: tuple[str, ...] = field(default=(), compare=False)
    by: str = field(default="", compare=False)
    status: str = field(default="resolved", compare=False)


class Simulation:
    """Replays alerts and people's actions through a ruleset on a virtual clock, sending nothing.

    Example:
        with Simulation(policy, start=t0) as simulation:
            simulation.fire({"alertname": "HighLatency", "service": "checkout"}, at=t0)
            simulation.acknowledge({"alertname": "HighLatency", "service": "checkout"}, at=t0 + 7 * MINUTE, by="alice")
            simulation.resolve({"alertname": "HighLatency", "service": "checkout"}, at=t0 + 12 * MINUTE)
            simulation.run_until(t0 + HOUR)
            result = simulation.result()

    Inputs may be given in any order; they are applied by time, and inputs at the
    same time in the order given. An input earlier than the virtual time already
    reached raises `ValueError`. Every time is an aware datetime.
    """

    def __init__(self, policy: Policy, *, start: datetime.datetime, directory: Path | None = None) -> None:
        """Open a scratch store in `directory` (a temporary folder when None) and set the clock to `start`.

        Raises:
            ValueError: `start` is naive, or `directory` already contains a simulation store.
        """
        _require_aware(start, "start")
        self.policy = policy
        self.start = start
        self._now = start
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="irules-simulation-")
            directory = Path(self._temporary.name)
        database = directory / DATABASE_FILE
        if database.exists():
            raise ValueError(f"simulation store {database} exists already; pass a folder without one")
        self.store = Store.open(f"sqlite:///{database}")
        self._pipeline = Pipeline(self.store, lambda: policy, clock=self.now)
        self._collector = Collector(policy)
        self._queue: list[_Event] = []
        self._input_count = 0
        # The last alert given per fingerprint, to find its dedup key and so its incident.
        self._latest: dict[str, Alert] = {}
        # Incident id -> (event number, fingerprint) of each firing event that joined it.
        self._members: dict[int, list[tuple[int, str]]] = {}
        self._actions: list[ActionOutcome] = []

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the scratch store and remove the temporary folder, if the simulation made one."""
        self.store.close()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def now(self) -> datetime.datetime:
        """Return the virtual time reached."""
        return self._now

    # ------------------------------------------------------------ inputs

    def fire(
        self,
        labels: Mapping[str, str],
        *,
        at: datetime.datetime,
        annotations: Mapping[str, str] | None = None,
        source: str = "alertmanager",
    ) -> None:
        """Receive a firing alert with these labels at `at`, as Alertmanager's webhook delivers it."""
        alert = Alert(
            source=source,
            name=labels.get("alertname", ""),
            status=FIRING,
            labels=dict(labels),
            annotations=dict(annotations or {}),
            starts_at=at,
            source_severity=source_severity(dict(labels)),
        )
        self._push(at, "alert", alert=alert)

    def resolve(self, labels: Mapping[str, str], *, at: datetime.datetime, source: str = "alertmanager") -> None:
        """Receive the resolution of the alert with these labels at `at`."""
        alert = Alert(
            source=source,
            name=labels.get("alertname", ""),
            status=RESOLVED,
            labels=dict(labels),
            ends_at=at,
            source_severity=source_severity(dict(labels)),
        )
        self._push(at, "alert", alert=alert)

    def feed(self, alert: Alert, *, at: datetime.datetime) -> None:
        """Receive a recorded alert at `at`, as it was stored, with its own fingerprint and source."""
        self._push(at, "alert", alert=dataclasses.replace(alert, labels=dict(alert.labels)))

    def acknowledge(self, alert_labels: Mapping[str, str], *, at: datetime.datetime, by: str) -> None:
        """Have `by` acknowledge, at `at`, the incident that contains the alert with these labels."""
        self.acknowledge_incidents_of([fingerprint(dict(alert_labels))], at=at, by=by)

    def resolve_incident(self, alert_labels: Mapping[str, str], *, at: datetime.datetime, by: str) -> None:
        """Have `by` resolve, at `at`, the incident that contains the alert with these labels."""
        self.resolve_incidents_of([fingerprint(dict(alert_labels))], at=at, by=by)

    def acknowledge_incidents_of(self, fingerprints: Iterable[str], *, at: datetime.datetime, by: str) -> None:
        """Have `by` acknowledge, at `at`, every incident that contains an alert with one of these fingerprints."""
        self._push(at, ACKNOWLEDGE, fingerprints=tuple(fingerprints), by=by)

    def resolve_incidents_of(
        self, fingerprints: Iterable[str], *, at: datetime.datetime, by: str, status: str = "resolved"
    ) -> None:
        """Have `by` set, at `at`, every incident that contains an alert with one of these fingerprints to `status` (resolved or closed)."""
        if status not in incident_ops.ENDED:
            raise ValueError(f"status {status!r} does not end an incident; use one of {', '.join(incident_ops.ENDED)}")
        self._push(at, RESOLVE, fingerprints=tuple(fingerprints), by=by, status=status)

    def _push(self, at: datetime.datetime, kind: str, **values: object) -> None:
        _require_aware(at, "at")
        if at < self._now:
            raise ValueError(f"input at {at.isoformat()} is before the virtual time already reached, {self._now.isoformat()}")
        heapq.heappush(self._queue, _Event(at, self._input_count, kind, **values))  # type: ignore[arg-type]
        self._input_count += 1

    # ------------------------------------------------------------ running

    def run_until(self, moment: datetime.datetime) -> None:
        """Apply every input and every due moment up to and including `moment`, then set the clock to it.

        Raises:
            ValueError: `moment` is naive or before the virtual time already reached.
        """
        _require_aware(moment, "moment")
        if moment < self._now:
            raise ValueError(f"cannot run until {moment.isoformat()}: the virtual time is already {self._now.isoformat()}")
        passes = 0
        while True:
            event_at = self._queue[0].at if self._queue and self._queue[0].at <= moment else None
            due_at = self._next_due()
            if due_at is not None and due_at > moment:
                due_at = None
            if event_at is None and due_at is None:
                break
            # Work due at a moment goes before the inputs of that moment, as the daemon's
            # notifier would have done it by then.
            work_first = due_at is not None and (event_at is None or due_at <= event_at)
            at = due_at if work_first else event_at
            assert at is not None
            passes = passes + 1 if at <= self._now else 0
            if passes >= MAX_PASSES_PER_MOMENT:
                raise RuntimeError(f"the simulation does not advance past {self._now.isoformat()}; this is a bug in irules")
            self._now = max(self._now, at)
            if not work_first:
                self._apply_inputs(at)
            self._work_due()
        self._now = moment

    def result(self) -> SimulationResult:
        """Apply the inputs not yet applied, then return what the simulation produced up to the virtual time reached.

        Pages and escalation steps due after the last input appear only after
        `run_until` has reached their time.
        """
        if self._queue:
            self.run_until(max(self._now, max(event.at for event in self._queue)))
        with self.store.read() as connection:
            rows = connection.execute(sa.select(incidents).order_by(incidents.c.created_at, incidents.c.id)).mappings().all()
        return SimulationResult(
            start=self.start,
            end=self._now,
            incidents=tuple(self._incident(dict(row)) for row in rows),
            pages=tuple(sorted(self._collector.pages, key=_order)),
            escalations=tuple(sorted(self._collector.escalations, key=_order)),
            runbooks=tuple(sorted(self._collector.runbooks, key=_order)),
            actions=tuple(sorted(self._actions, key=_order)),
        )

    def _incident(self, row: dict) -> SimulatedIncident:
        members = self._members.get(row["id"], [])
        return SimulatedIncident(
            key=row["key"],
            title=row["title"],
            status=row["status"],
            severity=row["severity"],
            team=row["team"],
            receivers=tuple(row["receivers"]),
            fingerprints=tuple(sorted({alert_fingerprint for _number, alert_fingerprint in members})),
            events=tuple(sorted(number for number, _fingerprint in members)),
            created_at=row["created_at"],
            acknowledged_at=row["acknowledged_at"],
            acknowledged_by=row["acknowledged_by"],
            resolved_at=row["resolved_at"],
            escalation_level=row["escalation_level"] or 0,
        )

    # ------------------------------------------------------------ one moment

    def _apply_inputs(self, at: datetime.datetime) -> None:
        """Apply the inputs at `at` in the order given: each run of alerts as one pipeline pass, each action alone."""
        batch: list[_Event] = []
        while self._queue and self._queue[0].at == at:
            event = heapq.heappop(self._queue)
            if event.kind == "alert":
                batch.append(event)
                continue
            self._apply_alerts(batch)
            batch = []
            self._apply_action(event)
        self._apply_alerts(batch)

    def _apply_alerts(self, batch: list[_Event]) -> None:
        if not batch:
            return
        items = []
        for event in batch:
            alert = event.alert
            assert alert is not None, "an alert input carries its alert"
            self._latest[alert.fingerprint] = alert
            body = json_text([alert.to_json()]).encode()
            items.append(Accepted(alert.source, Inbound(body, {}, event.at), Outcome(alert.source, ALERTS, [alert])))
        accept(self.store, items)
        self._pipeline.process_pending()
        self._note_members([event for event in batch if event.alert is not None and event.alert.status == FIRING])

    def _note_members(self, firing: list[_Event]) -> None:
        """Record which incident each firing event joined, read from its alert's row right after the pipeline pass."""
        if not firing:
            return
        keys = {event.number: self.policy.dedup(event.alert).key for event in firing if event.alert is not None}
        with self.store.read() as connection:
            rows = connection.execute(
                sa.select(alerts.c.key, alerts.c.incident_id).where(alerts.c.key.in_(sorted(set(keys.values()))))
            ).all()
        holder = {key: incident_id for key, incident_id in rows}
        for event in firing:
            incident_id = holder.get(keys[event.number])
            if incident_id is not None and event.alert is not None:
                self._members.setdefault(incident_id, []).append((event.number, event.alert.fingerprint))

    def _apply_action(self, event: _Event) -> None:
        holders = self._incidents_containing(event.fingerprints)
        if not holders:
            self._actions.append(ActionOutcome(event.at, event.kind, event.by, None, "no incident contains these alerts"))
        for key in holders:
            try:
                outcome = self._act(event, key)
            except incident_ops.IncidentError as error:
                outcome = str(error)
            self._actions.append(ActionOutcome(event.at, event.kind, event.by, key, outcome))

    def _act(self, event: _Event, key: str) -> str:
        if event.kind == ACKNOWLEDGE:
            row = incident_ops.acknowledge(self.store, key, event.by, self._now)
            if row["acknowledged_at"] != self._now or row["acknowledged_by"] != event.by:
                return f"already acknowledged by {row['acknowledged_by']}"
            return "acknowledged"
        before = self._incident_status(key)
        incident_ops.update(self.store, key, incident_ops.Change(status=event.status), event.by, self._now)
        return f"already {before}" if before == event.status else event.status

    def _incident_status(self, key: str) -> str:
        with self.store.read() as connection:
            return connection.execute(sa.select(incidents.c.status).where(incidents.c.key == key)).scalar_one()

    def _incidents_containing(self, fingerprints: tuple[str, ...]) -> list[str]:
        """Return the keys of the incidents that the alerts with these fingerprints are in now."""
        keys = {self.policy.dedup(self._latest[item]).key for item in fingerprints if item in self._latest}
        if not keys:
            return []
        with self.store.read() as connection:
            return list(
                connection.execute(
                    sa.select(incidents.c.key)
                    .join(alerts, alerts.c.incident_id == incidents.c.id)
                    .where(alerts.c.key.in_(sorted(keys)))
                    .distinct()
                    .order_by(incidents.c.key)
                ).scalars()
            )

    def _work_due(self) -> None:
        """Do what the daemon does at the current virtual time after the pipeline: settle flapping, notify, escalate."""
        flap_due = self._next_flap_settle()
        if flap_due is not None and flap_due <= self._now:
            self._pipeline.settle_flapping()
        planner.queue_due(self.store, self.policy, self._now)
        escalation.fire_due(self.store, self.policy, self._now)
        self._collector.collect(self.store, self._now)

    # ------------------------------------------------------------ due moments

    def _next_due(self) -> datetime.datetime | None:
        """Return the earliest moment at which a group, a timer or a flapping alert is due, or None."""
        with self.store.read() as connection:
            group = connection.execute(sa.select(sa.func.min(notification_groups.c.due_at))).scalar()
            timer = connection.execute(sa.select(sa.func.min(timers.c.due_at)).where(timers.c.status == "pending")).scalar()
        moments = [moment for moment in (group, timer, self._next_flap_settle()) if moment is not None]
        return _aware(min(moments)) if moments else None

    def _next_flap_settle(self) -> datetime.datetime | None:
        """Return when the first flapping alert has been quiet for its whole flap window, as `settle_flapping` checks it."""
        with self.store.read() as connection:
            rows = connection.execute(sa.select(alerts).where(alerts.c.flapping.is_(True))).mappings().all()
        moments = []
        for row in rows:
            alert = Alert(
                source=row["source"],
                name=row["name"],
                status=row["status"],
                labels=dict(row["labels"]),
                fingerprint=row["fingerprint"],
            )
            settings = self.policy.flap_settings(alert)
            window = settings[0] if settings else 0.0
            last = datetime.datetime.fromisoformat(row["transitions"][-1]) if row["transitions"] else row["last_seen"]
            moments.append(_aware(last) + datetime.timedelta(seconds=window))
        return min(moments) if moments else None


def _order(record: object) -> tuple:
    """Return a sort key of a result record: its fields in order, with None before every value."""
    return tuple((value is not None, value) for value in dataclasses.astuple(record))  # type: ignore[call-overload]


def _require_aware(moment: datetime.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} is a naive datetime; pass an aware one, such as one in UTC")


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """Return a time read by an aggregate, which the column type does not convert, as an aware UTC datetime."""
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment.astimezone(datetime.UTC)
