"""Record when a dead letter's replay failed and with which status, and let operators dismiss dead letters.

Before this revision a failed replay left only its reason in `replay_outcome`.
Such letters count as failed from now on, with no time or status, because the
old rows do not contain them. A dismissed letter keeps its row for audit until
retention deletes it with the other dead letters.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from runtime.store.schema import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("replay_attempted_at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("replay_status", sa.Integer, nullable=True))
        batch.add_column(sa.Column("dismissed_at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("dismissed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("dismiss_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        for column in ("dismiss_reason", "dismissed_by", "dismissed_at", "replay_status", "replay_attempted_at"):
            batch.drop_column(column)
