"""Drop the index on `payloads.received_at`, which every stored webhook paid for and only retention read.

Each index on `payloads` adds a page to the commit of every webhook: about 15
microseconds of a one-alert webhook's 240 on SQLite, measured with
`bench/ingest_bench.py`. Retention finds old payloads by scanning them in id
order instead, which stops after one batch while old payloads remain.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_payloads_received_at", table_name="payloads")


def downgrade() -> None:
    op.create_index("ix_payloads_received_at", "payloads", ["received_at"])
