"""The `slack_requests` table: verified Slack requests, stored before the daemon responds to Slack.

A request is stored once per delivery id: Slack's `event_id` for events, and
the SHA-256 of the raw body for slash commands and clicks, whose bodies carry a
`trigger_id` of their own. A redelivery of a stored id inserts nothing, so it is
acted on once. A row counts as processed once `processed_at` is set.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.store import Store
from runtime.store.schema import slack_requests

EVENT = "event"
COMMAND = "command"
INTERACTION = "interaction"
# `outcome` is a Text column; keep it readable in a table listing.
MAX_OUTCOME = 2000


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """One stored request: `kind` is `event`, `command` or `interaction`, `body` the parsed request without its token."""

    delivery_id: str
    kind: str
    body: dict[str, Any]
    received_at: datetime.datetime


def insert_if_absent(store: Store, delivery_id: str, kind: str, body: dict[str, Any], now: datetime.datetime) -> bool:
    """Store a request unless its delivery id is stored already; return whether it was inserted."""
    if store.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    statement = (
        insert(slack_requests)
        .values(delivery_id=delivery_id, kind=kind, received_at=now, body=body)
        .on_conflict_do_nothing(index_elements=[slack_requests.c.delivery_id])
        .returning(slack_requests.c.delivery_id)
    )
    with store.write() as connection:
        return connection.execute(statement).first() is not None


def pending(store: Store, limit: int) -> list[StoredRequest]:
    """Return up to `limit` unprocessed requests, oldest first."""
    query = (
        sa.select(slack_requests)
        .where(slack_requests.c.processed_at.is_(None))
        .order_by(slack_requests.c.received_at, slack_requests.c.delivery_id)
        .limit(limit)
    )
    with store.read() as connection:
        rows = connection.execute(query).mappings().all()
    return [StoredRequest(row["delivery_id"], row["kind"], dict(row["body"]), row["received_at"]) for row in rows]


def mark_processed(connection: sa.Connection, delivery_id: str, outcome: str, now: datetime.datetime) -> None:
    """Set `processed_at` and `outcome` in the caller's transaction, unless the request is marked already."""
    connection.execute(
        slack_requests.update()
        .where(slack_requests.c.delivery_id == delivery_id, slack_requests.c.processed_at.is_(None))
        .values(processed_at=now, outcome=outcome[:MAX_OUTCOME])
    )


def finish(store: Store, delivery_id: str, outcome: str, now: datetime.datetime) -> None:
    """Mark a request processed with its outcome, in a transaction of its own.

    The outcome replaces one that the operation's own transaction wrote; the time it
    was first marked processed stays.
    """
    with store.write() as connection:
        connection.execute(
            slack_requests.update()
            .where(slack_requests.c.delivery_id == delivery_id)
            .values(processed_at=sa.func.coalesce(slack_requests.c.processed_at, now), outcome=outcome[:MAX_OUTCOME])
        )


def purge(store: Store, received_before: datetime.datetime) -> int:
    """Delete the processed requests received before `received_before`; return how many were deleted.

    Unprocessed requests are kept whatever their age, so no stored work is lost.
    """
    statement = slack_requests.delete().where(
        slack_requests.c.received_at < received_before, slack_requests.c.processed_at.is_not(None)
    )
    with store.write() as connection:
        return connection.execute(statement).rowcount
