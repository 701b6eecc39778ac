"""Keep the time of each endpoint's last digest in the store, so every daemon on the database keeps one cadence.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoint_state") as batch:
        batch.add_column(sa.Column("last_digest_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_state") as batch:
        batch.drop_column("last_digest_at")
