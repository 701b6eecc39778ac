"""Dead letters: listing them and feeding them back through ingestion after a fix.

A replay runs the stored body through the current rules' source again, without
authentication (the request was received and kept by this daemon, and an
operator asks for the replay). A replay that succeeds stores the payload like
a new request and marks the dead letter replayed; one that fails again records
the new reason and leaves the dead letter pending.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import sqlalchemy as sa

from compiler import ir
from runtime.incidents import IncidentError
from runtime.ingest import receive
from runtime.pipeline import UNTRUSTED_STATUSES, accept
from runtime.secrets import Secrets
from runtime.sources.base import Inbound, Rejected
from runtime.store import Store
from runtime.store.schema import dead_letters

log = logging.getLogger("irules.replay")


def list_dead_letters(
    store: Store, *, source: str | None = None, pending_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    query = sa.select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
    if source:
        query = query.where(dead_letters.c.source == source)
    if pending_only:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    with store.read() as connection:
        return [_json(dict(row)) for row in connection.execute(query).mappings()]


def replay(store: Store, ruleset: ir.Ruleset, number: int, now: datetime.datetime) -> dict[str, Any]:
    """Replay one dead letter and return what happened: `replayed` with the payload id, or `failed` or `skipped` with the reason.

    Requests rejected for failed authentication (401, 403), an unknown source (404) or
    credentials the daemon could not check (503, which senders retry) may come from
    anyone, so they are never replayed.
    """
    with store.read() as connection:
        row = connection.execute(sa.select(dead_letters).where(dead_letters.c.id == number)).mappings().first()
    if row is None:
        raise IncidentError(f"dead letter {number} not found", status=404)
    if row["status"] in UNTRUSTED_STATUSES:
        return {
            "id": number,
            "outcome": "skipped",
            "detail": f"rejected with {row['status']} before the sender was authenticated; such requests are never replayed",
            "payload_id": None,
        }
    if row["replayed_at"] is not None and row["payload_id"] is not None:
        return {"id": number, "outcome": "already replayed", "payload_id": row["payload_id"]}
    if row["body_truncated"]:
        return _record(store, number, now, None, "the stored body was cut at the size limit; it cannot be replayed")
    inbound = Inbound(bytes(row["body"]), dict(row["headers"]), now)
    try:
        accepted = receive(row["source"], inbound, ruleset, Secrets(None), check_auth=False, replay_of=number)
    except Rejected as rejected:
        return _record(store, number, now, None, f"{rejected.status}: {rejected.reason}")
    (payload_id,) = accept(store, [accepted])
    log.info("dead letter %d replayed as payload %d with %d alerts", number, payload_id, len(accepted.outcome.alerts))
    return _record(store, number, now, payload_id, f"replayed: {len(accepted.outcome.alerts)} alerts")


def _record(store: Store, number: int, now: datetime.datetime, payload_id: int | None, outcome: str) -> dict[str, Any]:
    values: dict[str, Any] = {"replay_outcome": outcome}
    if payload_id is not None:
        values.update(replayed_at=now, payload_id=payload_id)
    with store.write() as connection:
        connection.execute(dead_letters.update().where(dead_letters.c.id == number).values(**values))
    if payload_id is None:
        log.warning("dead letter %d failed again: %s", number, outcome)
    return {
        "id": number,
        "outcome": "replayed" if payload_id is not None else "failed",
        "detail": outcome,
        "payload_id": payload_id,
    }


def _json(row: dict[str, Any]) -> dict[str, Any]:
    received = row["received_at"]
    replayed = row["replayed_at"]
    return {
        "id": row["id"],
        "source": row["source"],
        "received_at": received.isoformat() if received else None,
        "status": row["status"],
        "reason": row["reason"],
        "size": len(row["body"]),
        "body_truncated": row["body_truncated"],
        "replayed_at": replayed.isoformat() if replayed else None,
        "replay_outcome": row["replay_outcome"],
        "payload_id": row["payload_id"],
    }
