"""Index notifications by status and id, and resolved alerts by incident and key.

Measured on a SQLite store of 100,000 notifications and 50,000 alerts:

- listing the newest 100 delivered notifications sorted all 93,000 of them with
  their messages, 404 ms a request; with `(status, id)` it reads 100 rows, 0.3 ms;
- retention's pass over resolved alerts without an incident sorted about 50,000
  rows for every batch of 500, 865 ms a pass for 10,000 expired rows; with
  `(status, incident_id, key)` each batch reads its rows in key order, 1.3 ms.
  That index starts with `status`, so it replaces `ix_alerts_status`.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_status_id", "outbox", ["status", "id"])
    op.drop_index("ix_alerts_status", table_name="alerts")
    op.create_index("ix_alerts_status_incident_id_key", "alerts", ["status", "incident_id", "key"])


def downgrade() -> None:
    op.drop_index("ix_alerts_status_incident_id_key", table_name="alerts")
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.drop_index("ix_outbox_status_id", table_name="outbox")
