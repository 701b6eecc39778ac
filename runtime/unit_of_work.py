"""The rows one pipeline batch reads and changes, written back in a few statements.

Applying an event reads an alert row and often an incident row, and changes
both. One statement per read and per write costs more than the rest of the
pipeline together. So a batch loads the alert rows it needs in one query and
keeps every row it touches in memory, and `flush` writes them back with one
executemany per table. All of it runs in the caller's transaction.

On SQLite, `flush` sends its statements to the driver through `exec_driver_sql`
with values converted as the columns' SQLAlchemy types would convert them.
SQLAlchemy's per-row parameter processing took about half the time of a 100-row
alert insert (SQLAlchemy 2.1, measured on a 2-core VM). PostgreSQL keeps the
SQLAlchemy statements.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from runtime.alerts import FIRING
from runtime.incidents import ENDED, OPEN_STATUSES, open_incident
from runtime.notify.planner import Touch
from runtime.store import Store
from runtime.store.schema import UtcDateTime, alerts, incidents, timeline
from runtime.store.store import json_text, sqlite_time

_IN_CHUNK = 500

_ALERT_COLUMNS = [column.name for column in alerts.columns]
_INCIDENT_COLUMNS = [column.name for column in incidents.columns if column.name != "id"]

# Listed, not "not ended": an IN list uses the status index, where `!=` read every ended incident of a key.
_OPEN = incidents.c.status.in_(OPEN_STATUSES)
_OPEN_BY_CORRELATION = sa.select(incidents.c.id).where(incidents.c.correlation == sa.bindparam("correlation"), _OPEN)
_OPEN_BY_RULE = sa.select(incidents.c.id).where(incidents.c.correlation_rule == sa.bindparam("rule"), _OPEN)

# The queries that take a list of keys are built once with an expanding parameter, so
# SQLAlchemy finds them in its compiled cache instead of building them for every chunk.
_ALERTS_BY_KEY = sa.select(alerts).where(alerts.c.key.in_(sa.bindparam("keys", expanding=True)))
_INCIDENTS_BY_ID = sa.select(incidents).where(incidents.c.id.in_(sa.bindparam("ids", expanding=True)))
_LABELS_BY_ID = sa.select(incidents.c.id, incidents.c.labels).where(incidents.c.id.in_(sa.bindparam("ids", expanding=True)))
_OPEN_BY_CORRELATIONS = sa.select(incidents.c.id, incidents.c.correlation).where(
    incidents.c.correlation.in_(sa.bindparam("correlations", expanding=True)), _OPEN
)
_COUNT_ALERTS = (
    sa.select(
        alerts.c.incident_id,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.case((alerts.c.status == FIRING, 1), else_=0)), 0),
    )
    .where(alerts.c.incident_id.in_(sa.bindparam("ids", expanding=True)))
    .group_by(alerts.c.incident_id)
)

_UPDATE_ALERT = (
    alerts.update()
    .where(alerts.c.key == sa.bindparam("b_key"))
    .values({name: sa.bindparam(f"b_{name}") for name in _ALERT_COLUMNS if name != "key"})
)
_UPDATE_INCIDENT = (
    incidents.update()
    .where(incidents.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _INCIDENT_COLUMNS})
)

_SQLITE = sqlite.dialect()


class _SqliteWrite:
    """An INSERT or UPDATE that `flush` runs on SQLite with one executemany of `exec_driver_sql`.

    Each row's values are converted as the columns' SQLAlchemy types convert them for
    SQLite: JSON by `json_text` (the store's JSON serialiser), `UtcDateTime` by
    `sqlite_time`, and any other type by its own bind processor. A failed conversion
    raises `StatementError`, as in SQLAlchemy, and `exec_driver_sql` still wraps driver
    errors in SQLAlchemy's exceptions, whose types the pipeline checks.
    """

    def __init__(self, sql: str, table: sa.Table, names: Sequence[str]) -> None:
        self.sql = sql
        self.columns = [(name, _sqlite_converter(table.c[name])) for name in names]

    def execute(self, connection: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        columns = self.columns
        try:
            parameters = [
                tuple([row[name] if convert is None else convert(row[name]) for name, convert in columns]) for row in rows
            ]
        except Exception as error:
            raise sa.exc.StatementError(str(error), self.sql, None, error) from error
        connection.exec_driver_sql(self.sql, parameters)

    @classmethod
    def insert(cls, table: sa.Table, names: Sequence[str]) -> _SqliteWrite:
        quote = _SQLITE.identifier_preparer.quote
        columns = ", ".join(quote(name) for name in names)
        marks = ", ".join("?" for _name in names)
        return cls(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", table, names)

    @classmethod
    def update(cls, table: sa.Table, names: Sequence[str], key: str) -> _SqliteWrite:
        """Return an UPDATE of the columns `names` in the row that the column `key` selects."""
        quote = _SQLITE.identifier_preparer.quote
        assignments = ", ".join(f"{quote(name)} = ?" for name in names)
        return cls(f"UPDATE {table.name} SET {assignments} WHERE {quote(key)} = ?", table, [*names, key])


def _sqlite_converter(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, sa.JSON):
        # SQLAlchemy's JSON type writes None as the text `null`, as `json_text` does, unless
        # the column sets none_as_null, which stores SQL NULL.
        assert not column.type.none_as_null, f"{column} stores None as SQL NULL, which json_text does not"
        return json_text
    if isinstance(column.type, UtcDateTime):
        return sqlite_time
    return column.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)


_SQLITE_INSERT_ALERT = _SqliteWrite.insert(alerts, _ALERT_COLUMNS)
_SQLITE_UPDATE_ALERT = _SqliteWrite.update(alerts, [name for name in _ALERT_COLUMNS if name != "key"], "key")
_SQLITE_UPDATE_INCIDENT = _SqliteWrite.update(incidents, _INCIDENT_COLUMNS, "id")
_SQLITE_INSERT_TIMELINE = _SqliteWrite.insert(timeline, ["incident_id", "at", "kind", "actor", "message", "data"])


class UnitOfWork:
    def __init__(self, connection: sa.Connection, store: Store) -> None:
        self.connection = connection
        self.store = store
        self._alerts: dict[str, dict[str, Any]] = {}
        # Keys looked up and not in the table, so a new alert costs no second query.
        self._absent: set[str] = set()
        self._new_alerts: set[str] = set()
        self._dirty_alerts: set[str] = set()
        self._incidents: dict[int, dict[str, Any]] = {}
        self._dirty_incidents: set[int] = set()
        self._timeline: list[dict[str, Any]] = []
        self._after_alert: list[dict[str, Any]] = []
        # Incidents whose alerts changed: their counts are recounted on flush.
        self._recount_ids: set[int] = set()
        # Open incidents by correlation key and by correlate rule, loaded once per key in
        # this batch and kept current as the batch opens incidents.
        self._by_correlation: dict[str, set[int]] = {}
        self._by_rule: dict[str, set[int]] = {}
        # Ids of the open incidents of a correlate rule whose labels have given values, by
        # rule and values, oldest first: built by `preload_related` and extended as incidents open.
        self._related: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = {}
        # Correlation labels of the incidents that `preload_related` read without their full rows.
        self._labels: dict[int, Mapping[str, str]] = {}
        # When the last alert of an incident was resolved in this batch, by incident id.
        self.quieted_at: dict[int, datetime.datetime] = {}
        # Incidents whose receivers have news, and incidents whose escalation starts
        # (opened or reopened) or stops (resolved), with the moment.
        self.touched: dict[int, Touch] = {}
        self.escalate: dict[int, datetime.datetime] = {}
        self.resolved: dict[int, datetime.datetime] = {}
        # The alert that opened each incident of this batch, for its automatic runbooks.
        self.opened_by: dict[int, Any] = {}

    def touch(
        self,
        incident_id: int,
        at: datetime.datetime,
        timings: dict[str, tuple[float, float, float, str]] | None = None,
        source: str | None = None,
    ) -> None:
        """Note that an incident's receivers have news at `at`: an alert joined or resolved, or its state changed."""
        self.touched.setdefault(incident_id, Touch(at)).add(timings or {}, source)

    # ------------------------------------------------------------ alerts

    def preload_alerts(self, keys: Iterable[str]) -> None:
        missing_keys = sorted(set(keys) - self._alerts.keys() - self._absent)
        for start in range(0, len(missing_keys), _IN_CHUNK):
            chunk = missing_keys[start : start + _IN_CHUNK]
            for row in self.connection.execute(_ALERTS_BY_KEY, {"keys": chunk}).mappings():
                self._alerts[row["key"]] = dict(row)
        self._absent.update(key for key in missing_keys if key not in self._alerts)

    def alert(self, key: str) -> dict[str, Any] | None:
        if key not in self._alerts and key not in self._absent:
            self.preload_alerts([key])
        return self._alerts.get(key)

    def add_alert(self, row: dict[str, Any]) -> None:
        self._alerts[row["key"]] = row
        self._absent.discard(row["key"])
        self._new_alerts.add(row["key"])
        if row["incident_id"] is not None:
            self._recount_ids.add(row["incident_id"])

    def change_alert(self, key: str, **values: Any) -> None:
        row = self._alerts[key]
        if "status" in values or "incident_id" in values:
            # An alert that changes state or moves changes the counts of the incidents it leaves and joins.
            self._recount_ids.update(number for number in (row["incident_id"], values.get("incident_id")) if number is not None)
        row.update(values)
        if key not in self._new_alerts:
            self._dirty_alerts.add(key)

    # ------------------------------------------------------------ incidents

    def incident(self, incident_id: int) -> dict[str, Any]:
        if incident_id not in self._incidents:
            row = self.connection.execute(sa.select(incidents).where(incidents.c.id == incident_id)).mappings().one()
            self._incidents[incident_id] = dict(row)
        return self._incidents[incident_id]

    def change_incident(self, incident_id: int, **values: Any) -> dict[str, Any]:
        row = self.incident(incident_id)
        row.update(values)
        self._dirty_incidents.add(incident_id)
        return row

    def open_incident(self, id_format: str, now: datetime.datetime, **fields: Any) -> dict[str, Any]:
        """Insert a new incident at once (its id is needed for the timeline) and keep it in memory."""
        row = open_incident(self.connection, self.store, id_format, now, **fields)
        self._incidents[row["id"]] = {**dict.fromkeys(column.name for column in incidents.columns), **row}
        self._open_with_correlation(row["correlation"]).add(row["id"])
        rule = row["correlation_rule"]
        if rule is not None:
            self._open_with_rule(rule).add(row["id"])
            for (indexed_rule, values), ids in self._related.items():
                if indexed_rule == rule and _has_labels(self._incidents[row["id"]]["labels"], values):
                    ids.append(row["id"])
        return self._incidents[row["id"]]

    def preload_correlations(self, keys: Iterable[str]) -> None:
        """Look up the open incidents of many correlation keys at once, as `find_open_incident` would one by one."""
        missing_keys = sorted(set(keys) - self._by_correlation.keys())
        for start in range(0, len(missing_keys), _IN_CHUNK):
            chunk = missing_keys[start : start + _IN_CHUNK]
            found: dict[str, set[int]] = {key: set() for key in chunk}
            for number, correlation in self.connection.execute(_OPEN_BY_CORRELATIONS, {"correlations": chunk}):
                found[correlation].add(number)
            self._by_correlation.update(found)

    def _open_with_correlation(self, correlation: str) -> set[int]:
        if correlation not in self._by_correlation:
            self._by_correlation[correlation] = set(
                self.connection.execute(_OPEN_BY_CORRELATION, {"correlation": correlation}).scalars()
            )
        return self._by_correlation[correlation]

    def _open_with_rule(self, rule: str) -> set[int]:
        if rule not in self._by_rule:
            self._by_rule[rule] = set(self.connection.execute(_OPEN_BY_RULE, {"rule": rule}).scalars())
        return self._by_rule[rule]

    def has_open_incident(self, correlation: str) -> bool:
        """Return whether an incident with this correlation key is open, however old its last alert."""
        return bool(self._open_with_correlation(correlation))

    def find_open_incident(self, correlation: str, since: datetime.datetime | None) -> dict[str, Any] | None:
        """Return the oldest open incident with this correlation key whose last alert is not before `since`."""
        return self._first_open(self._open_with_correlation(correlation), since)

    def find_related_incidents(
        self, rule: str, since: datetime.datetime | None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Return open incidents of a correlate rule, oldest first; with `labels`, those whose labels have these values."""
        if labels is None:
            ids = self._open_with_rule(rule)
            self._load_incidents(ids)
            return [self._incidents[number] for number in sorted(ids) if self._is_open(self._incidents[number], since)]
        values = tuple(sorted(labels.items()))
        if (rule, values) not in self._related:
            self.preload_related([(rule, labels)])
        chosen = self._related[(rule, values)]
        return [self._incidents[number] for number in chosen if self._is_open(self._incidents[number], since)]

    def preload_related(self, lookups: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        """Choose the open incidents of correlate rules whose labels have given values, as `find_related_incidents` would.

        `lookups` lists (rule, label values) pairs. A rule may have many open incidents
        and few with the values of a batch, so this reads the labels of all of them
        first and full rows only for the chosen ones.
        """
        values_by_rule: dict[str, set[tuple[tuple[str, str], ...]]] = {}
        for rule, labels in lookups:
            values = tuple(sorted(labels.items()))
            if (rule, values) not in self._related:
                values_by_rule.setdefault(rule, set()).add(values)
        chosen_ids: set[int] = set()
        for rule, value_sets in values_by_rule.items():
            members = sorted(self._open_with_rule(rule))
            self._load_labels(members)
            found: dict[tuple[tuple[str, str], ...], list[int]] = {values: [] for values in value_sets}
            # Value tuples with the same label names are matched in one pass over the members.
            for names in {tuple(name for name, _value in values) for values in value_sets}:
                for number in members:
                    labels = self._labels_of(number)
                    # A missing label counts as empty, as in `_has_labels`.
                    chosen = found.get(tuple((name, labels.get(name, "")) for name in names))
                    if chosen is not None:
                        chosen.append(number)
                        chosen_ids.add(number)
            self._related.update(((rule, values), chosen) for values, chosen in found.items())
        self._load_incidents(chosen_ids)

    def _load_labels(self, ids: Iterable[int]) -> None:
        missing_ids = sorted(set(ids) - self._incidents.keys() - self._labels.keys())
        for start in range(0, len(missing_ids), _IN_CHUNK):
            chunk = missing_ids[start : start + _IN_CHUNK]
            self._labels.update(self.connection.execute(_LABELS_BY_ID, {"ids": chunk}).all())

    def _labels_of(self, incident_id: int) -> Mapping[str, str]:
        row = self._incidents.get(incident_id)
        return self._labels[incident_id] if row is None else row["labels"]

    def _load_incidents(self, ids: Iterable[int]) -> None:
        missing_ids = sorted(set(ids) - self._incidents.keys())
        for start in range(0, len(missing_ids), _IN_CHUNK):
            chunk = missing_ids[start : start + _IN_CHUNK]
            for row in self.connection.execute(_INCIDENTS_BY_ID, {"ids": chunk}).mappings():
                self._incidents[row["id"]] = dict(row)

    def _first_open(self, ids: set[int], since: datetime.datetime | None) -> dict[str, Any] | None:
        self._load_incidents(ids)
        for number in sorted(ids):
            row = self.incident(number)
            if self._is_open(row, since):
                return row
        return None

    @staticmethod
    def _is_open(row: dict[str, Any], since: datetime.datetime | None) -> bool:
        return row["status"] not in ENDED and (since is None or row["last_alert_at"] >= since)

    def flapping_in(self, incident_id: int) -> bool:
        """Return whether any alert of the incident is flapping, counting this batch's changes."""
        stored = self.connection.execute(
            sa.select(alerts.c.key).where(alerts.c.incident_id == incident_id, alerts.c.flapping.is_(True))
        ).scalars()
        keys = set(stored) | {key for key, row in self._alerts.items() if row["incident_id"] == incident_id}
        return any(self._alerts[key]["flapping"] if key in self._alerts else True for key in keys)

    # ------------------------------------------------------------ timeline

    def add_timeline(
        self, incident_id: int, at: datetime.datetime, kind: str, actor: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        self._timeline.append(
            {"incident_id": incident_id, "at": at, "kind": kind, "actor": actor, "message": message, "data": data or {}}
        )

    def add_timeline_after_alert(
        self, incident_id: int, at: datetime.datetime, kind: str, actor: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Add an entry about what an alert did to its incident, to follow the entry that adds the alert.

        The incident is found or opened before the alert's own entry can name it, but a
        reader expects "alert added" before "severity raised by that alert".
        `timeline_alert_done` writes the held entries.
        """
        self._after_alert.append(
            {"incident_id": incident_id, "at": at, "kind": kind, "actor": actor, "message": message, "data": data or {}}
        )

    def timeline_alert_done(self) -> None:
        """Write the entries held by `add_timeline_after_alert`, after the alert's own entry."""
        self._timeline.extend(self._after_alert)
        self._after_alert.clear()

    # ------------------------------------------------------------ writing back

    def flush(self) -> None:
        """Write every new and changed row, then recount the alerts of each touched incident."""
        if self.connection.dialect.name == "sqlite":
            self._write_sqlite()
        else:
            self._write()
        self._new_alerts.clear()
        self._dirty_alerts.clear()
        self._dirty_incidents.clear()
        self._timeline = []

    def _write(self) -> None:
        connection = self.connection
        if self._new_alerts:
            connection.execute(alerts.insert(), [self._alerts[key] for key in sorted(self._new_alerts)])
        if self._dirty_alerts:
            connection.execute(
                _UPDATE_ALERT,
                [{f"b_{name}": self._alerts[key][name] for name in _ALERT_COLUMNS} for key in sorted(self._dirty_alerts)],
            )
        self._recount()
        if self._dirty_incidents:
            connection.execute(
                _UPDATE_INCIDENT,
                [
                    {"b_id": number, **{f"b_{name}": self._incidents[number][name] for name in _INCIDENT_COLUMNS}}
                    for number in sorted(self._dirty_incidents)
                ],
            )
        if self._timeline:
            connection.execute(timeline.insert(), self._timeline)

    def _write_sqlite(self) -> None:
        """Write like `_write`, in the same statements and order, through the driver."""
        connection = self.connection
        if self._new_alerts:
            _SQLITE_INSERT_ALERT.execute(connection, [self._alerts[key] for key in sorted(self._new_alerts)])
        if self._dirty_alerts:
            _SQLITE_UPDATE_ALERT.execute(connection, [self._alerts[key] for key in sorted(self._dirty_alerts)])
        self._recount()
        if self._dirty_incidents:
            _SQLITE_UPDATE_INCIDENT.execute(connection, [self._incidents[number] for number in sorted(self._dirty_incidents)])
        if self._timeline:
            _SQLITE_INSERT_TIMELINE.execute(connection, self._timeline)

    def _recount(self) -> None:
        """Set alert and firing counts of the touched incidents from the alerts table, which is the truth."""
        touched = sorted(self._recount_ids)
        self._recount_ids = set()
        for start in range(0, len(touched), _IN_CHUNK):
            chunk = touched[start : start + _IN_CHUNK]
            counts = {number: (0, 0) for number in chunk}
            for number, total, firing_total in self.connection.execute(_COUNT_ALERTS, {"ids": chunk}):
                counts[number] = (int(total), int(firing_total))
            for number, (total, firing_total) in counts.items():
                row = self.incident(number)
                if (row["alert_count"], row["firing_count"]) != (total, firing_total):
                    self.change_incident(number, alert_count=total, firing_count=firing_total)


def _has_labels(labels: Mapping[str, str], values: tuple[tuple[str, str], ...]) -> bool:
    """Return whether an incident's correlation labels have these values (a missing label counts as empty)."""
    return all(labels.get(name, "") == value for name, value in values)
