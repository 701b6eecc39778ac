"""Add what several daemons on one database need: the node registry, periodic job claims,
runbook run lease owners, spool ids on payloads, and indexes for retention.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from runtime.store.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("listen", sa.String(200), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_nodes_heartbeat_at", "nodes", ["heartbeat_at"])
    op.create_table(
        "cluster_jobs",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("next_run_at", UtcDateTime, nullable=False),
        sa.Column("last_node", sa.String(200), nullable=True),
        sa.Column("last_run_at", UtcDateTime, nullable=True),
    )
    with op.batch_alter_table("runbook_runs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(200), nullable=True))
    with op.batch_alter_table("payloads") as batch:
        batch.add_column(sa.Column("spool_id", sa.String(200), nullable=True))
        batch.create_unique_constraint("uq_payloads_spool_id", ["spool_id"])
    op.create_index("ix_payloads_received_at", "payloads", ["received_at"])
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_received_at", "dead_letters")
    op.drop_index("ix_payloads_received_at", "payloads")
    with op.batch_alter_table("payloads") as batch:
        batch.drop_constraint("uq_payloads_spool_id", type_="unique")
        batch.drop_column("spool_id")
    with op.batch_alter_table("runbook_runs") as batch:
        batch.drop_column("lease_owner")
    op.drop_table("cluster_jobs")
    op.drop_table("nodes")
