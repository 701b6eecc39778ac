"""Outbox queries for the CLI and the API: list notifications and queue failed ones again."""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa

from runtime.incidents import IncidentError, _iso
from runtime.store import Store
from runtime.store.schema import incidents, outbox

STATUSES = ("pending", "sending", "delivered", "failed", "cancelled", "folded")
# Statuses of the rows that `retry` may queue again.
RETRYABLE = ("failed",)


def list_notifications(
    store: Store, *, status: str | None = None, incident: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Return outbox rows, newest first, without their rendered messages."""
    if status is not None and status not in STATUSES:
        raise IncidentError(f"unknown notification status {status!r}; use one of {', '.join(STATUSES)}", status=400)
    query = (
        sa.select(outbox, incidents.c.key.label("incident_key"))
        .select_from(outbox.outerjoin(incidents, outbox.c.incident_id == incidents.c.id))
        .order_by(outbox.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(outbox.c.status == status)
    if incident is not None:
        query = query.where(incidents.c.key == incident)
    with store.read() as connection:
        return [to_json(dict(row)) for row in connection.execute(query).mappings()]


def to_json(row: dict[str, Any]) -> dict[str, Any]:
    """Return the API form of an outbox row, without its rendered message."""
    return {
        "id": row["id"],
        "incident": row.get("incident_key"),
        "receiver": row["receiver"],
        "channel": row["channel"],
        "endpoint": row["endpoint"],
        "event": row["event"],
        "status": row["status"],
        "attempts": row["attempts"],
        "created_at": _iso(row["created_at"]),
        "next_attempt_at": _iso(row["next_attempt_at"]),
        "sent_at": _iso(row["sent_at"]),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
    }


def retry(store: Store, number: int, now: datetime.datetime) -> dict[str, Any]:
    """Queue a failed notification again with its attempt count reset to zero and its last error kept, and return it."""
    with store.write() as connection:
        row = connection.execute(sa.select(outbox).where(outbox.c.id == number)).mappings().first()
        if row is None:
            raise IncidentError(f"notification {number} not found", status=404)
        if row["status"] not in RETRYABLE:
            raise IncidentError(
                f"notification {number} is {row['status']}; only failed ones can be sent again (a cancelled one was stopped by an acknowledgement or resolution)"
            )
        connection.execute(
            outbox.update()
            .where(outbox.c.id == number)
            .values(status="pending", attempts=0, next_attempt_at=now, lease_until=None)
        )
        key = connection.execute(sa.select(incidents.c.key).where(incidents.c.id == row["incident_id"])).scalar()
        return to_json({**row, "incident_key": key, "status": "pending", "attempts": 0, "next_attempt_at": now})
