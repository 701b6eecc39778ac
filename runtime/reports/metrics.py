"""Incident metrics over a window of time: counts, MTTA and MTTR, noise, automatic remediation and escalations.

What falls inside the window `[start, end)`:

- incidents by their creation time. Their durations come from
  `runtime.reports.timings` and use the store as it is now, so an incident
  created inside the window and resolved after its end counts with that
  resolution;
- alert events by the time irules received them;
- automatic runbook runs by the time they started.

Percentiles use the nearest-rank method: the p-th percentile of n sorted
values is the value at rank ceil(p * n / 100), counting ranks from 1. So a
percentile is always one of the measured values, and for 12 values p50 is the
6th, p90 the 11th and p95 the 12th.

`docs/metrics.md` defines every figure for users.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from compiler.expr import INCIDENT_STATUSES, SEVERITY_LEVELS
from runtime.reports.timings import Timings, first_alert_starts, timings_of
from runtime.store.schema import alert_events, alerts, incidents, runbook_runs, timeline

PERCENTILE_METHOD = "nearest-rank"
PERCENTILES = (50, 90, 95)
# The group of incidents without a team, service or severity.
NONE = "(none)"
# The trigger the pipeline gives the runbook runs it starts by itself.
AUTOMATIC_TRIGGER = "auto"
FINISHED_RUN_STATUSES = ("succeeded", "failed", "cancelled")
INHIBITED_NOT_AVAILABLE = (
    "The daemon applies no inhibit rules. They are compiled into the Alertmanager configuration,"
    " and Alertmanager sends irules no alert that it inhibits."
)
# How many incidents the list of the longest times to resolve shows.
SLOWEST_SHOWN = 10

_TIMEFRAME = re.compile(r"(?:[0-9]+[smhdw])+")
_TIMEFRAME_PART = re.compile(r"([0-9]+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DISPLAY_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
# Rows per `IN (...)` list, well below SQLite's and PostgreSQL's limits on bound parameters.
_IN_CHUNK = 500
# The longest window a report covers. A report has a row per UTC day, so an unbounded window
# (year 1 to 9999 through the API, say) would build millions of rows for a handful of incidents.
MAX_WINDOW_DAYS = 3660


def parse_timeframe(text: str) -> int:
    """Return the seconds of a timeframe such as `30d`, `12h` or `1w2d` (units s, m, h, d and w).

    Raises:
        ValueError: `text` is not a positive timeframe.
    """
    compact = text.strip()
    if not _TIMEFRAME.fullmatch(compact):
        raise ValueError(f"invalid timeframe {text!r}: write a number and a unit (s, m, h, d or w), such as 30d or 12h")
    seconds = sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _TIMEFRAME_PART.findall(compact))
    if seconds == 0:
        raise ValueError(f"invalid timeframe {text!r}: it must be longer than zero")
    if seconds > MAX_WINDOW_DAYS * 86400:
        raise ValueError(f"invalid timeframe {text!r}: a report covers at most {MAX_WINDOW_DAYS} days (about 10 years)")
    return seconds


@dataclass(frozen=True, slots=True)
class Window:
    """The span of time a report covers: from `start` (included) to `end` (excluded), both aware UTC."""

    start: datetime.datetime
    end: datetime.datetime

    @classmethod
    def ending(cls, end: datetime.datetime, seconds: int) -> Window:
        """Return the window of `seconds` that ends at `end`; raise ValueError when it would start before year 1."""
        end = end.astimezone(datetime.UTC)
        try:
            start = end - datetime.timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"a window of {seconds} s ending at {end.isoformat()} would start before year 1") from None
        return cls.between(start, end)

    @classmethod
    def between(cls, start: datetime.datetime, end: datetime.datetime) -> Window:
        """Return the window from `start` to `end`, both aware.

        Raises:
            ValueError: `start` is not before `end`, or the window is longer than `MAX_WINDOW_DAYS`.
        """
        if start >= end:
            raise ValueError(f"the window's start {start.isoformat()} is not before its end {end.isoformat()}")
        if end - start > datetime.timedelta(days=MAX_WINDOW_DAYS):
            raise ValueError(
                f"the window from {start.isoformat()} to {end.isoformat()} is longer than {MAX_WINDOW_DAYS} days (about 10 years)"
            )
        return cls(start.astimezone(datetime.UTC), end.astimezone(datetime.UTC))

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def days(self) -> list[datetime.date]:
        """Return the UTC dates the window touches, in order."""
        first = self.start.date()
        last = (self.end - datetime.timedelta(microseconds=1)).date()
        return [first + datetime.timedelta(days=offset) for offset in range((last - first).days + 1)]


# ---------------------------------------------------------------- distributions


def percentile(ordered: Sequence[float], percent: int) -> float:
    """Return the nearest-rank `percent`-th percentile of `ordered`, a non-empty list sorted ascending."""
    assert ordered, "a percentile of no values is undefined"
    assert 0 < percent <= 100, f"percentile {percent} is outside 1..100"
    # Integer arithmetic: ceil(percent * n / 100) without floating-point error.
    rank = -(-percent * len(ordered) // 100)
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Distribution:
    """How many values there are, their mean, and their nearest-rank p50, p90 and p95, which are None without values."""

    count: int
    mean: float | None = None
    # A nearest-rank percentile is one of the values, so it keeps their type: a whole number
    # of alerts stays one, also after a trip through the daemon's API.
    p50: int | float | None = None
    p90: int | float | None = None
    p95: int | float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90, "p95": self.p95}


def distribution(values: Iterable[float]) -> Distribution:
    """Return the distribution of `values`."""
    ordered = sorted(values)
    if not ordered:
        return Distribution(0)
    p50, p90, p95 = (percentile(ordered, percent) for percent in PERCENTILES)
    return Distribution(len(ordered), sum(ordered) / len(ordered), p50, p90, p95)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A duration over all incidents that have it, and by team, service and severity."""

    overall: Distribution
    by_team: dict[str, Distribution]
    by_service: dict[str, Distribution]
    by_severity: dict[str, Distribution]

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "seconds",
            "all": self.overall.to_json(),
            "by_team": {name: value.to_json() for name, value in self.by_team.items()},
            "by_service": {name: value.to_json() for name, value in self.by_service.items()},
            "by_severity": {name: value.to_json() for name, value in self.by_severity.items()},
        }


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Counts:
    """Incidents created in the window, in total and by status, team, service, severity and UTC day."""

    total: int
    by_status: dict[str, int]
    by_team: dict[str, int]
    by_service: dict[str, int]
    by_severity: dict[str, int]
    per_day: list[tuple[datetime.date, int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": self.by_status,
            "by_team": self.by_team,
            "by_service": self.by_service,
            "by_severity": self.by_severity,
            "per_day": [{"date": day.isoformat(), "count": count} for day, count in self.per_day],
        }


@dataclass(frozen=True, slots=True)
class Noise:
    """How much alerting the incidents took: alerts per incident, and what became of the alert events received."""

    alerts_per_incident: Distribution
    events_received: int
    events_by_outcome: dict[str, int]
    inhibited: int | None = None
    inhibited_note: str = INHIBITED_NOT_AVAILABLE
    # The oldest event the store still keeps, when payload retention deleted the window's
    # earlier events: the counts start there. None when they cover the whole window.
    events_since: datetime.datetime | None = None

    @property
    def distinct_alerts(self) -> int:
        """Events that started a new alert: the alerts left after deduplication."""
        return self.events_by_outcome.get("new", 0)

    @property
    def deduplicated(self) -> int:
        """Events folded into an alert already in that state: a firing repeat or a second resolution."""
        return self.events_by_outcome.get("repeat", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "alerts_per_incident": self.alerts_per_incident.to_json(),
            "alert_events": {
                "received": self.events_received,
                "by_outcome": self.events_by_outcome,
                "since": _iso(self.events_since) if self.events_since else None,
            },
            "distinct_alerts": self.distinct_alerts,
            "deduplicated": self.deduplicated,
            "inhibited": self.inhibited,
            "inhibited_note": self.inhibited_note,
        }


@dataclass(frozen=True, slots=True)
class Remediation:
    """Runbook runs the pipeline started by itself in the window, and how many of the finished ones succeeded."""

    by_status: dict[str, int]
    by_runbook: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(self.by_status.values())

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(status, 0) for status in FINISHED_RUN_STATUSES)

    @property
    def succeeded(self) -> int:
        return self.by_status.get("succeeded", 0)

    @property
    def success_rate(self) -> float | None:
        """Succeeded runs over finished runs, or None while no run has finished."""
        return self.succeeded / self.finished if self.finished else None

    def to_json(self) -> dict[str, Any]:
        return {
            "trigger": AUTOMATIC_TRIGGER,
            "runs": self.runs,
            "by_status": self.by_status,
            "finished": self.finished,
            "succeeded": self.succeeded,
            "success_rate": self.success_rate,
            "by_runbook": {
                name: {"succeeded": succeeded, "finished": finished} for name, (succeeded, finished) in self.by_runbook.items()
            },
        }


@dataclass(frozen=True, slots=True)
class Escalations:
    """The highest escalation level each incident reached, counted by level."""

    highest_level: dict[int, int]

    @property
    def reached(self) -> dict[int, int]:
        """Incidents that reached at least each level from 1 up: one that reached level 2 also reached level 1."""
        top = max(self.highest_level, default=0)
        return {
            level: sum(count for highest, count in self.highest_level.items() if highest >= level) for level in range(1, top + 1)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "highest_level": {str(level): count for level, count in self.highest_level.items()},
            "reached": {str(level): count for level, count in self.reached.items()},
        }


@dataclass(frozen=True, slots=True)
class SlowIncident:
    """One incident of the list of the longest times to resolve."""

    key: str
    title: str
    team: str
    severity: str
    time_to_acknowledge: float | None
    time_to_resolve: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "title": self.title,
            "team": self.team,
            "severity": self.severity,
            "time_to_acknowledge": self.time_to_acknowledge,
            "time_to_resolve": self.time_to_resolve,
        }


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every figure of one report."""

    window: Window
    counts: Counts
    acknowledge: Breakdown
    resolve: Breakdown
    noise: Noise
    remediation: Remediation
    escalations: Escalations
    slowest: list[SlowIncident]

    def to_json(self) -> dict[str, Any]:
        return {
            "window": {"start": _iso(self.window.start), "end": _iso(self.window.end), "seconds": self.window.seconds},
            "percentile_method": PERCENTILE_METHOD,
            "incidents": self.counts.to_json(),
            "time_to_acknowledge": self.acknowledge.to_json(),
            "time_to_resolve": self.resolve.to_json(),
            "noise": self.noise.to_json(),
            "remediation": self.remediation.to_json(),
            "escalations": self.escalations.to_json(),
            "slowest_to_resolve": [incident.to_json() for incident in self.slowest],
        }


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- collecting


@dataclass(slots=True)
class _Incident:
    row: Mapping[str, Any]
    timings: Timings
    alert_keys: set[str] = field(default_factory=set)
    escalation_level: int = 0

    @property
    def team(self) -> str:
        return self.row["team"] or NONE

    @property
    def severity(self) -> str:
        return self.row["severity"] or NONE

    @property
    def services(self) -> list[str]:
        return list(dict.fromkeys(self.row["services"] or [])) or [NONE]


def collect_metrics(connection: sa.Connection, window: Window) -> Metrics:
    """Compute every figure for `window` from the store behind `connection`.

    Example:
        with store.read() as connection:
            report = collect_metrics(connection, Window.ending(now, parse_timeframe("30d")))
    """
    found = _incidents_in(connection, window)
    _add_history(connection, window, found)
    outcomes, events_since = _event_outcomes(connection, window)
    return Metrics(
        window=window,
        counts=_counts(found, window),
        acknowledge=_breakdown(found, lambda timings: timings.time_to_acknowledge),
        resolve=_breakdown(found, lambda timings: timings.time_to_resolve),
        noise=Noise(
            alerts_per_incident=distribution(len(incident.alert_keys) for incident in found),
            events_received=sum(outcomes.values()),
            events_by_outcome=outcomes,
            events_since=events_since,
        ),
        remediation=_remediation(connection, window),
        escalations=Escalations(dict(sorted(Counter(incident.escalation_level for incident in found).items()))),
        slowest=_slowest(found),
    )


_INCIDENT_COLUMNS = (
    "id",
    "key",
    "title",
    "status",
    "severity",
    "team",
    "services",
    "created_at",
    "acknowledged_at",
    "resolved_at",
    "escalation_level",
)


def _created_in(window: Window) -> sa.ColumnElement[bool]:
    return sa.and_(incidents.c.created_at >= window.start, incidents.c.created_at < window.end)


def _incidents_in(connection: sa.Connection, window: Window) -> list[_Incident]:
    columns = [getattr(incidents.c, name) for name in _INCIDENT_COLUMNS]
    query = sa.select(*columns).where(_created_in(window)).order_by(incidents.c.created_at, incidents.c.id)
    rows = connection.execute(query).mappings().all()
    ids = [row["id"] for row in rows]
    starts: dict[int, datetime.datetime] = {}
    for offset in range(0, len(ids), _IN_CHUNK):
        starts.update(first_alert_starts(connection, ids[offset : offset + _IN_CHUNK]))
    return [_Incident(row, timings_of(row, starts.get(row["id"])), escalation_level=row["escalation_level"] or 0) for row in rows]


def _add_history(connection: sa.Connection, window: Window, found: list[_Incident]) -> None:
    """Add each incident's alerts and the highest escalation level its timeline records.

    An alert counts with every incident it joined: the one it belongs to now,
    and, through the timeline's `alert.added` entries, any earlier one it left
    when it fired again after that incident had ended. The incident's
    `escalation_level` goes back to 0 when an escalation restarts, so the
    highest level comes from the `escalation.step` entries as well.
    """
    by_id = {incident.row["id"]: incident for incident in found}
    in_window = sa.select(incidents.c.id).where(_created_in(window)).scalar_subquery()

    # NOTE: on PostgreSQL each statement of a read sees the latest commits, so an incident
    # opened since the first query can show up here. It is skipped, as it was not counted.
    current = sa.select(alerts.c.incident_id, alerts.c.key).where(alerts.c.incident_id.in_(in_window))
    for incident_id, key in connection.execute(current):
        if incident_id in by_id:
            by_id[incident_id].alert_keys.add(key)

    entries = sa.select(timeline.c.incident_id, timeline.c.kind, timeline.c.data).where(
        timeline.c.incident_id.in_(in_window), timeline.c.kind.in_(("alert.added", "escalation.step"))
    )
    for incident_id, kind, data in connection.execute(entries):
        incident = by_id.get(incident_id)
        if incident is None:
            continue
        data = data or {}
        if kind == "alert.added" and data.get("key"):
            incident.alert_keys.add(data["key"])
        elif kind == "escalation.step" and isinstance(data.get("level"), int):
            incident.escalation_level = max(incident.escalation_level, data["level"])


def _counts(found: list[_Incident], window: Window) -> Counts:
    days = Counter(incident.row["created_at"].astimezone(datetime.UTC).date() for incident in found)
    return Counts(
        total=len(found),
        by_status=_ordered(Counter(incident.row["status"] for incident in found), INCIDENT_STATUSES),
        by_team=_by_count(Counter(incident.team for incident in found)),
        by_service=_by_count(Counter(service for incident in found for service in incident.services)),
        by_severity=_ordered(Counter(incident.severity for incident in found), SEVERITY_LEVELS),
        per_day=[(day, days.get(day, 0)) for day in window.days()],
    )


def _breakdown(found: list[_Incident], duration_of) -> Breakdown:
    measured = [(incident, duration_of(incident.timings)) for incident in found]
    measured = [(incident, seconds) for incident, seconds in measured if seconds is not None]
    by_team: dict[str, list[float]] = defaultdict(list)
    by_service: dict[str, list[float]] = defaultdict(list)
    by_severity: dict[str, list[float]] = defaultdict(list)
    for incident, seconds in measured:
        by_team[incident.team].append(seconds)
        by_severity[incident.severity].append(seconds)
        for service in incident.services:
            by_service[service].append(seconds)
    return Breakdown(
        overall=distribution(seconds for _incident, seconds in measured),
        by_team={name: distribution(values) for name, values in _ordered(by_team, ()).items()},
        by_service={name: distribution(values) for name, values in _ordered(by_service, ()).items()},
        by_severity={name: distribution(values) for name, values in _ordered(by_severity, SEVERITY_LEVELS).items()},
    )


def _event_outcomes(connection: sa.Connection, window: Window) -> tuple[dict[str, int], datetime.datetime | None]:
    """Count the alert events received in the window by the pipeline's outcome, with `pending` for those not yet applied.

    Also return when the counted events start, if payload retention deleted the
    window's earlier ones, else None. One pass over the events gives both.
    """
    in_window = sa.and_(alert_events.c.received_at >= window.start, alert_events.c.received_at < window.end)
    query = sa.select(
        alert_events.c.outcome, sa.func.sum(sa.case((in_window, 1), else_=0)), sa.func.min(alert_events.c.received_at)
    ).group_by(alert_events.c.outcome)
    counts: Counter[str] = Counter()
    oldest: datetime.datetime | None = None
    for outcome, count, first in connection.execute(query):
        if count:
            counts[outcome or "pending"] += count
        oldest = first if oldest is None else min(oldest, first)
    since = None if oldest is None or oldest <= window.start else min(oldest, window.end)
    return _by_count(counts), since


def _remediation(connection: sa.Connection, window: Window) -> Remediation:
    query = sa.select(runbook_runs.c.runbook_id, runbook_runs.c.status).where(
        runbook_runs.c.trigger == AUTOMATIC_TRIGGER,
        runbook_runs.c.created_at >= window.start,
        runbook_runs.c.created_at < window.end,
    )
    statuses: Counter[str] = Counter()
    runbooks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for runbook_id, status in connection.execute(query):
        statuses[status] += 1
        if status in FINISHED_RUN_STATUSES:
            runbooks[runbook_id][0] += status == "succeeded"
            runbooks[runbook_id][1] += 1
    return Remediation(
        by_status=_by_count(statuses),
        by_runbook={name: (succeeded, finished) for name, (succeeded, finished) in sorted(runbooks.items())},
    )


def _slowest(found: list[_Incident]) -> list[SlowIncident]:
    resolved = [incident for incident in found if incident.timings.time_to_resolve is not None]
    resolved.sort(key=lambda incident: (-(incident.timings.time_to_resolve or 0.0), incident.row["key"]))
    return [
        SlowIncident(
            key=incident.row["key"],
            title=incident.row["title"],
            team=incident.team,
            severity=incident.severity,
            time_to_acknowledge=incident.timings.time_to_acknowledge,
            time_to_resolve=incident.timings.time_to_resolve or 0.0,
        )
        for incident in resolved[:SLOWEST_SHOWN]
    ]


def _ordered(counts: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """Return `counts` in the given order of known names, then any other name by name, then `NONE`."""
    known = [name for name in order if name in counts]
    others = sorted(name for name in counts if name not in order and name != NONE)
    rest = [NONE] if NONE in counts else []
    return {name: counts[name] for name in [*known, *others, *rest]}


def _by_count(counts: Counter[str]) -> dict[str, int]:
    """Return `counts` from the largest to the smallest, ties by name."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def format_duration(seconds: float | None) -> str:
    """Return `seconds` rounded to whole seconds in its two largest units, such as `45s`, `12m 5s`, `3h` or `2d 4h`, or `-` for None."""
    if seconds is None:
        return "-"
    whole = int(seconds + 0.5)
    for index, (unit, size) in enumerate(_DISPLAY_UNITS):
        if whole >= size or unit == "s":
            count, rest = divmod(whole, size)
            text = f"{count}{unit}"
            if unit != "s":
                smaller_unit, smaller_size = _DISPLAY_UNITS[index + 1]
                if rest // smaller_size:
                    text += f" {rest // smaller_size}{smaller_unit}"
            return text
    raise AssertionError("the loop returns at the unit `s`")
