"""Index `alert_events.payload_id`, and drop the index on `payloads.received_at`.

Retention deletes old payloads with their events by payload id. Without an index
on the events' payload id, a batch of 500 payloads scanned the whole `alert_events`
table for the delete, and once more per payload to check the foreign key, which
SQLite and PostgreSQL both enforce. It held the write lock meanwhile: 68 s per batch
on a SQLite store of 300,000 payloads (`bench/retention_bench.py`). The index on `payloads.received_at`, which only retention
read, goes in exchange, so a stored webhook still writes as many index pages.

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
    op.create_index("ix_alert_events_payload_id", "alert_events", ["payload_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_events_payload_id", table_name="alert_events")
    op.create_index("ix_payloads_received_at", "payloads", ["received_at"])
