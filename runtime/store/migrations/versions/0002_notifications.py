"""Add notifications: notification groups, outbox, threads, timers, Slack requests, escalation columns.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from runtime.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("escalation_policy", sa.String(200), nullable=True))
        batch.add_column(sa.Column("escalation_started_at", UtcDateTime, nullable=True))
    op.create_table(
        "notification_groups",
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
    )
    op.create_index("ix_notification_groups_due_at", "notification_groups", ["due_at"])
    op.create_table(
        "outbox",
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
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_incident_id", "outbox", ["incident_id"])
    op.create_table(
        "threads",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("endpoint", sa.String(300), primary_key=True),
        sa.Column("reference", sa.JSON, nullable=False),
    )
    op.create_table(
        "timers",
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
    )
    op.create_index("ix_timers_status_due_at", "timers", ["status", "due_at"])
    op.create_index("ix_timers_incident_id", "timers", ["incident_id"])
    op.create_table(
        "slack_requests",
        sa.Column("delivery_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("processed_at", UtcDateTime, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
    )
    op.create_index("ix_slack_requests_processed_at", "slack_requests", ["processed_at"])


def downgrade() -> None:
    for name in ("slack_requests", "timers", "threads", "outbox", "notification_groups"):
        op.drop_table(name)
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("escalation_started_at")
        batch.drop_column("escalation_policy")
        batch.drop_column("escalation_level")
