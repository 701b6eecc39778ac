"""The store's tables, in SQLAlchemy Core.

Alembic migrations under `runtime/store/migrations` create and change these
tables; this module is what the code queries. A change here needs a new
migration, and `test_store_schema_matches_migrations` in tests/runtime/test_pipeline.py checks that the two agree.

Times are aware UTC datetimes in Python. SQLite keeps them as naive UTC text,
PostgreSQL as `timestamptz`. The one exception is `endpoint_state`, which keeps
seconds since the Unix epoch.
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
    # Set when the payload was first written to a node's local spool while the database was
    # unreachable, so draining the spool twice stores it once.
    sa.Column("spool_id", sa.String(200), nullable=True, unique=True),
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
    # Retention deletes events by payload, and PostgreSQL checks the foreign key by it.
    sa.Index("ix_alert_events_payload_id", "payload_id"),
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
    # Retention walks resolved alerts without an incident in key order.
    sa.Index("ix_alerts_status_incident_id_key", "status", "incident_id", "key"),
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
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("escalation_policy", sa.String(200), nullable=True),
    sa.Column("escalation_started_at", UtcDateTime, nullable=True),
    # Impact analysis (blast radius, likely causes, scores) and the classifier's verdict.
    sa.Column("impact", sa.JSON, nullable=True),
    sa.Column("triage", sa.JSON, nullable=True),
    sa.Index("ix_incidents_status", "status"),
    sa.Index("ix_incidents_correlation", "correlation"),
)

# Investigations by an assistant (Claude Code, say) linked to an incident, so a responder can resume them.
assistant_sessions = sa.Table(
    "assistant_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(200), nullable=False),
    sa.Column("focus", sa.String(40), nullable=True),
    sa.Column("linked_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("incident_id", "provider", "session_id"),
    sa.Index("ix_assistant_sessions_incident_id", "incident_id"),
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
# that reached the daemon disappears without a trace. `replay_outcome` and
# `replay_attempted_at` describe the latest replay, and `replay_status` is the
# HTTP status it failed with. `replayed_at` and `payload_id` are set once a
# replay succeeds. A dismissed letter is kept until retention deletes it.
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
    sa.Column("replay_attempted_at", UtcDateTime, nullable=True),
    sa.Column("replay_status", sa.Integer, nullable=True),
    sa.Column("dismissed_at", UtcDateTime, nullable=True),
    sa.Column("dismissed_by", sa.String(200), nullable=True),
    sa.Column("dismiss_reason", sa.Text, nullable=True),
    sa.Index("ix_dead_letters_received_at", "received_at"),
)

# Named counters, such as the incident number of each year.
sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


# One row per incident and receiver: what was last notified, and when to look again.
# The pipeline sets `due_at` when the incident changes; the notifier renders and
# queues messages when it is due, honouring the route's group wait, group interval
# and repeat interval.
notification_groups = sa.Table(
    "notification_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("receiver", sa.String(200), nullable=False),
    sa.Column("route_id", sa.String(200), nullable=True),
    sa.Column("group_wait_s", sa.Float, nullable=False),
    sa.Column("group_interval_s", sa.Float, nullable=False),
    sa.Column("repeat_interval_s", sa.Float, nullable=False),
    sa.Column("via_alertmanager", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("notified_state", sa.String(64), nullable=True),
    sa.Column("notified_at", UtcDateTime, nullable=True),
    sa.Column("notified_count", sa.Integer, nullable=False),
    sa.UniqueConstraint("incident_id", "receiver"),
    sa.Index("ix_notification_groups_due_at", "due_at"),
)

# Notifications to send. `key` makes queueing idempotent; a row is claimed with a
# lease before it is sent, so it is sent by one worker at a time. `endpoint` names
# what rate limits and circuit breakers apply to, such as `slack:#alerts`.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("receiver", sa.String(200), nullable=True),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("endpoint", sa.String(300), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("message", sa.JSON, nullable=False),
    sa.Column("cancel_on", sa.String(20), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("reference", sa.JSON, nullable=False),
    sa.Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_outbox_incident_id", "incident_id"),
    # `irules notifications list --status S` reads the newest rows of one status.
    sa.Index("ix_outbox_status_id", "status", "id"),
)

# The first message of an incident in a chat channel, so later ones go into its thread.
threads = sa.Table(
    "threads",
    metadata,
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
    sa.Column("endpoint", sa.String(300), primary_key=True),
    sa.Column("reference", sa.JSON, nullable=False),
)

# Timers: escalation steps and other work due at a moment. A timer fires once: the
# transaction that marks it fired also queues what it does.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("done_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Index("ix_timers_status_due_at", "status", "due_at"),
    sa.Index("ix_timers_incident_id", "incident_id"),
)

# Verified Slack requests (events, commands, button clicks), stored before Slack gets
# its answer and worked off afterwards. `delivery_id` is Slack's `event_id`, or a
# digest of the request for commands and clicks, so a redelivery is acted on once.
slack_requests = sa.Table(
    "slack_requests",
    metadata,
    sa.Column("delivery_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("processed_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Index("ix_slack_requests_processed_at", "processed_at"),
)

# Runbook runs. `values` keeps what the run's conditions and templates read when it
# started, so a run resumed after a restart sees the same alert. `concurrency_key`
# is set while the run is active and cleared when it ends, so the unique index
# allows one active run per key.
runbook_runs = sa.Table(
    "runbook_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("runbook_id", sa.String(200), nullable=False),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("concurrency_key", sa.String(500), nullable=True, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("values", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("deadline_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    # Started with `--auto-approve-safe`: approvals of read-only and low-risk steps are granted at once.
    sa.Column("auto_approve", sa.Boolean, nullable=False, server_default=sa.false()),
    # The node that executes the run while `lease_until` is in the future. Another node
    # takes the run over only after the lease expired.
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Index("ix_runbook_runs_incident_id", "incident_id"),
    sa.Index("ix_runbook_runs_status", "status"),
    sa.Index("ix_runbook_runs_runbook_id_created_at", "runbook_id", "created_at"),
)

# One row per step of a run, written before the step acts: its state, attempt, the
# exact operation it performs, and what it produced.
step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runbook_runs.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("operation", sa.JSON, nullable=False),
    sa.Column("outcome", sa.JSON, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("run_id", "name"),
)

# Approvals asked of a team, with the operation shown, and who decided and when.
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runbook_runs.id"), nullable=False),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("team", sa.String(200), nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("operation", sa.JSON, nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("timeout_at", UtcDateTime, nullable=True),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.UniqueConstraint("run_id", "step", "kind"),
    sa.Index("ix_approvals_status", "status"),
)

# The daemons sharing this database. A node inserts its row at start and moves
# `heartbeat_at` forward while it runs; a node silent for longer than the lease
# time is taken for dead, and its leases may be taken over.
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("listen", sa.String(200), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    sa.Index("ix_nodes_heartbeat_at", "heartbeat_at"),
)

# Periodic jobs that one node of the cluster runs per period. A node runs a job
# when its conditional update moves `next_run_at` forward; the other nodes see
# the new value and skip it.
cluster_jobs = sa.Table(
    "cluster_jobs",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("next_run_at", UtcDateTime, nullable=False),
    sa.Column("last_node", sa.String(200), nullable=True),
    sa.Column("last_run_at", UtcDateTime, nullable=True),
)

# Rate limit and circuit breaker of each outbox endpoint, shared by every daemon on the
# database (see `runtime.notify.limits`). `refilled_at` and `open_until` are seconds since
# the Unix epoch rather than timestamps, so that one UPDATE computes refills and pauses with
# the same arithmetic on SQLite and PostgreSQL. `pause_s` is how long the breaker stays open
# when it opens next.
endpoint_state = sa.Table(
    "endpoint_state",
    metadata,
    sa.Column("endpoint", sa.String(300), primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("refilled_at", sa.Float, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("open_until", sa.Float, nullable=True),
    sa.Column("pause_s", sa.Float, nullable=False),
    # When the endpoint's last digest was folded, while its storm lasts; NULL when its messages go one by one.
    sa.Column("last_digest_at", sa.Float, nullable=True),
)
