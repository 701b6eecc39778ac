"""Add runbook runs, step runs and approvals.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from runtime.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runbook_runs",
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
    )
    op.create_index("ix_runbook_runs_incident_id", "runbook_runs", ["incident_id"])
    op.create_index("ix_runbook_runs_status", "runbook_runs", ["status"])
    op.create_index("ix_runbook_runs_runbook_id_created_at", "runbook_runs", ["runbook_id", "created_at"])
    op.create_table(
        "step_runs",
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
    op.create_table(
        "approvals",
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
    )
    op.create_index("ix_approvals_status", "approvals", ["status"])


def downgrade() -> None:
    for name in ("approvals", "step_runs", "runbook_runs"):
        op.drop_table(name)
