"""Add the rate limits and circuit breakers of outbox endpoints, shared by every daemon on the database.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoint_state",
        sa.Column("endpoint", sa.String(300), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.Float, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("open_until", sa.Float, nullable=True),
        sa.Column("pause_s", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoint_state")
