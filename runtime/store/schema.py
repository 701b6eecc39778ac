"""The store's tables, in SQLAlchemy Core.

Alembic migrations under `runtime/store/migrations` create and change these
tables; this module is what the code queries. A change here needs a new
migration, and `tests/runtime/test_store.py` checks that the two agree.

Times are aware UTC datetimes in Python. SQLite keeps them as naive UTC text,
PostgreSQL as `timestamptz`.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """A timestamp that is always an aware UTC datetime in Python, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: sa.Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime.datetime | None, dialect: sa.Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


# Every request body the daemon accepted, kept so an incident can be traced back
# to exactly what was sent and a bad normalisation can be replayed.
payloads = sa.Table(
    "payloads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("alert_count", sa.Integer, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("replay_of", sa.Integer, nullable=True),
)

# The normalised alerts of each payload, in arrival order. The pipeline claims the
# unprocessed ones in order; `processed_at` is set in the same transaction that
# applies the event, so each event is applied exactly once.
alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("payload_id", sa.Integer, sa.ForeignKey("payloads.id"), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("alert", sa.JSON, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("processed_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.String(40), nullable=True),
    sa.Index("ix_alert_events_pending", "processed_at", "id"),
)

# One row per deduplicated alert: the current state of everything with that key.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("annotations", sa.JSON, nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=True),
    sa.Column("ends_at", UtcDateTime, nullable=True),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("severity", sa.String(20), nullable=True),
    sa.Column("receivers", sa.JSON, nullable=False),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("transitions", sa.JSON, nullable=False),
    sa.Column("flapping", sa.Boolean, nullable=False),
    sa.Index("ix_alerts_incident_id", "incident_id"),
    sa.Index("ix_alerts_status", "status"),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(100), nullable=False, unique=True),
    sa.Column("title", sa.String(1000), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("severity", sa.String(20), nullable=True),
    sa.Column("severity_source", sa.String(20), nullable=True),
    sa.Column("team", sa.String(200), nullable=True),
    sa.Column("services", sa.JSON, nullable=False),
    sa.Column("receivers", sa.JSON, nullable=False),
    sa.Column("correlation", sa.String(500), nullable=True),
    sa.Column("correlation_rule", sa.String(200), nullable=True),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("last_alert_at", UtcDateTime, nullable=False),
    sa.Column("acknowledged_at", UtcDateTime, nullable=True),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.Column("alert_count", sa.Integer, nullable=False),
    sa.Column("firing_count", sa.Integer, nullable=False),
    sa.Index("ix_incidents_status", "status"),
    sa.Index("ix_incidents_correlation", "correlation"),
)

# Append only: rows are inserted, never updated or deleted (retention aside).
timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(60), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_timeline_incident_id", "incident_id", "id"),
)

# Requests and events that did not become alerts, with the reason, so nothing
# that reached the daemon disappears without a trace.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("body_truncated", sa.Boolean, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("payload_id", sa.Integer, nullable=True),
    sa.Column("replayed_at", UtcDateTime, nullable=True),
    sa.Column("replay_outcome", sa.Text, nullable=True),
)

# Named counters, such as the incident number of each year.
sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
