"""Add what triage and auto-approval keep: impact and classifier results on incidents, assistant sessions, and
runs started with `--auto-approve-safe`.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from runtime.store.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("impact", sa.JSON, nullable=True))
        batch.add_column(sa.Column("triage", sa.JSON, nullable=True))
    with op.batch_alter_table("runbook_runs") as batch:
        batch.add_column(sa.Column("auto_approve", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "assistant_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("focus", sa.String(40), nullable=True),
        sa.Column("linked_by", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("incident_id", "provider", "session_id"),
    )
    op.create_index("ix_assistant_sessions_incident_id", "assistant_sessions", ["incident_id"])


def downgrade() -> None:
    op.drop_table("assistant_sessions")
    with op.batch_alter_table("runbook_runs") as batch:
        batch.drop_column("auto_approve")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("triage")
        batch.drop_column("impact")
