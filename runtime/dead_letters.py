"""Dead letters: listing them, feeding them back through ingestion after a fix, and dismissing them.

A replay runs the stored body through the current rules' source again, without
authentication (the request was received and kept by this daemon, and an
operator asks for the replay). A replay that succeeds stores the payload like
a new request and marks the dead letter replayed. One that fails records its
time, status and reason on the letter, which is `failed` from then on. A bulk
replay leaves failed letters out unless asked to retry them, because most
failures, such as malformed JSON or a cut body, repeat on every try.

A dismissed letter is one that an operator will not replay. Its row stays, for
audit, until retention deletes it with the other dead letters.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from compiler import ir
from runtime.incidents import IncidentError
from runtime.ingest import receive
from runtime.pipeline import UNTRUSTED_STATUSES, accept
from runtime.secrets import Secrets
from runtime.sources.base import Inbound, Rejected
from runtime.sources.payload import FORM_TYPES, media_type
from runtime.store import Store
from runtime.store.schema import dead_letters

log = logging.getLogger("irules.replay")

# The states a dead letter can be in. Each letter is in exactly one, taken from
# its columns by `_state` in this order of precedence: replayed, dismissed,
# untrusted (rejected before the sender was authenticated, never replayed),
# failed (its latest replay failed), pending (never replayed).
STATES = ("pending", "failed", "replayed", "dismissed", "untrusted")
# Maximum number of dead letters that one request to the daemon's API lists. Callers page back with `before`.
LIST_LIMIT_MAX = 1000


def _state() -> sa.ColumnElement[str]:
    # A failed replay before schema revision 0010 left only `replay_outcome`, so
    # that column, not `replay_attempted_at`, marks a failed letter.
    return sa.case(
        (dead_letters.c.replayed_at.is_not(None), "replayed"),
        (dead_letters.c.dismissed_at.is_not(None), "dismissed"),
        (dead_letters.c.status.in_(sorted(UNTRUSTED_STATUSES)), "untrusted"),
        (dead_letters.c.replay_outcome.is_not(None), "failed"),
        else_="pending",
    )


def list_dead_letters(
    store: Store,
    *,
    source: str | None = None,
    states: Collection[str] | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Return up to `limit` dead letters, newest first, without their bodies.

    `states` keeps only letters in those states (all when None). `before` keeps
    only ids below it, so a caller pages back by passing the last id it got.

    Raises:
        IncidentError: `states` names a state that is not in `STATES` (status 400).
    """
    unknown = sorted(set(states or ()) - set(STATES))
    if unknown:
        raise IncidentError(f"unknown dead letter state {', '.join(unknown)}: expected one of {', '.join(STATES)}", status=400)
    listed = [column for column in dead_letters.c if column.name not in ("body", "headers")]
    query = (
        sa.select(*listed, sa.func.length(dead_letters.c.body).label("size"), _state().label("state"))
        .order_by(dead_letters.c.id.desc())
        .limit(limit)
    )
    if source:
        query = query.where(dead_letters.c.source == source)
    if states is not None:
        query = query.where(_state().in_(list(states)))
    if before is not None:
        query = query.where(dead_letters.c.id < before)
    with store.read() as connection:
        return [_json(row) for row in connection.execute(query).mappings()]


def replay(store: Store, ruleset: ir.Ruleset, number: int, now: datetime.datetime) -> dict[str, Any]:
    """Replay one dead letter and return what happened: `replayed` with the payload id, or `failed` or `skipped` with the reason.

    Requests rejected for failed authentication (401, 403), an unknown source (404) or
    credentials the daemon could not check (503, which senders retry) may come from
    anyone, so they are never replayed. Every other letter is tried, including failed
    and dismissed ones, because the caller named it.
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
        return _record_failure(store, number, now, None, "the stored body was cut at the size limit; it cannot be replayed")
    inbound = Inbound(bytes(row["body"]), _replayed_headers(row["headers"]), now)
    try:
        accepted = receive(row["source"], inbound, ruleset, Secrets(None), check_auth=False, replay_of=number)
    except Rejected as rejected:
        return _record_failure(store, number, now, rejected.status, f"{rejected.status}: {rejected.reason}")
    (payload_id,) = accept(store, [accepted])
    outcome = f"replayed: {len(accepted.outcome.alerts)} alerts"
    _update(
        store, number, replay_attempted_at=now, replay_status=None, replay_outcome=outcome, replayed_at=now, payload_id=payload_id
    )
    log.info("dead letter %d replayed as payload %d with %d alerts", number, payload_id, len(accepted.outcome.alerts))
    return {"id": number, "outcome": "replayed", "detail": outcome, "payload_id": payload_id}


def _replayed_headers(headers: dict[str, str]) -> dict[str, str]:
    """Return the stored headers without a form Content-Type, so that a replay reads the body as the JSON it should be.

    A webhook posted as a form (curl's default without `-H "Content-Type: ..."`) got 415,
    which shows the sender its mistake. Replaying it means taking the body as JSON.
    """
    return {
        name: value for name, value in headers.items() if not (name.lower() == "content-type" and media_type(value) in FORM_TYPES)
    }


def _record_failure(store: Store, number: int, now: datetime.datetime, status: int | None, outcome: str) -> dict[str, Any]:
    _update(store, number, replay_attempted_at=now, replay_status=status, replay_outcome=outcome)
    log.warning("replay of dead letter %d failed: %s", number, outcome)
    return {"id": number, "outcome": "failed", "detail": outcome, "payload_id": None}


def _update(store: Store, number: int, **values: Any) -> None:
    with store.write() as connection:
        connection.execute(dead_letters.update().where(dead_letters.c.id == number).values(**values))


def dismiss(store: Store, number: int, reason: str | None, actor: str, now: datetime.datetime) -> dict[str, Any]:
    """Mark a dead letter dismissed, so that bulk replays and the default listing leave it out.

    Returns the outcome: `dismissed`, `already dismissed` (the first dismissal's time,
    actor and reason stay) or `already replayed` (a replayed letter is not dismissed).

    Raises:
        IncidentError: no dead letter has the id `number` (status 404).
    """
    reason = (reason or "").strip() or None
    checked = (dead_letters.c.replayed_at, dead_letters.c.payload_id, dead_letters.c.dismissed_at, dead_letters.c.dismissed_by)
    with store.write() as connection:
        # FOR UPDATE locks the row on PostgreSQL, so two dismissals of one letter cannot
        # both win. SQLite ignores it because its write transactions are exclusive already.
        row = connection.execute(sa.select(*checked).where(dead_letters.c.id == number).with_for_update()).mappings().first()
        if row is None:
            raise IncidentError(f"dead letter {number} not found", status=404)
        if row["replayed_at"] is not None:
            return {
                "id": number,
                "outcome": "already replayed",
                "detail": f"replayed as payload {row['payload_id']} at {row['replayed_at']:%Y-%m-%d %H:%M} UTC; it was not dismissed",
            }
        if row["dismissed_at"] is not None:
            return {
                "id": number,
                "outcome": "already dismissed",
                "detail": f"dismissed at {row['dismissed_at']:%Y-%m-%d %H:%M} UTC by {row['dismissed_by']}",
            }
        connection.execute(
            dead_letters.update()
            .where(dead_letters.c.id == number)
            .values(dismissed_at=now, dismissed_by=actor[:200], dismiss_reason=reason)
        )
    log.info("dead letter %d dismissed by %s", number, actor)
    return {"id": number, "outcome": "dismissed", "detail": reason}


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _json(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "received_at": _iso(row["received_at"]),
        "status": row["status"],
        "reason": row["reason"],
        "size": row["size"],
        "body_truncated": row["body_truncated"],
        "state": row["state"],
        "replayed_at": _iso(row["replayed_at"]),
        "replay_attempted_at": _iso(row["replay_attempted_at"]),
        "replay_status": row["replay_status"],
        "replay_outcome": row["replay_outcome"],
        "payload_id": row["payload_id"],
        "dismissed_at": _iso(row["dismissed_at"]),
        "dismissed_by": row["dismissed_by"],
        "dismiss_reason": row["dismiss_reason"],
    }
