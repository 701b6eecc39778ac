"""Rate limits and circuit breakers of outbox endpoints, kept in the store so every daemon on it shares them.

Each endpoint (a Slack channel, a PagerDuty routing key, a webhook URL) has one
`endpoint_state` row with a token bucket and a circuit breaker. Several daemons
on one PostgreSQL database therefore send at most an endpoint's rate together,
and a breaker that one of them opened keeps the others from sending as well.

- `take_token` is one upsert per attempt: it refills the bucket up to now,
  takes one token when one is available and the breaker allows a message, and
  returns nothing otherwise. On PostgreSQL the row lock it takes makes
  concurrent claims of one endpoint wait for each other until commit, so no
  token is counted twice.
- An open breaker allows one trial message once its pause has passed. The take
  that grants the trial moves `open_until` forward by the trial hold (the
  outbox lease time), so no other node sends a second trial meanwhile, and a
  trial whose sender died is allowed again after that hold.
- `record_outcome` is one conditional UPDATE after each attempt. A retryable
  failure counts toward `threshold` and reopens a breaker that is open or on
  trial, with a pause that doubles up to `max_open_s`. Any other outcome closes
  the breaker.
- `last_digest_at` is when the endpoint's last digest was folded, while its
  storm lasts, so the digest cadence is the same for every daemon. The time
  that `take_token` returns was read under the row lock, so it counts a digest
  that another daemon committed while this one waited for the lock.

Times in this table are seconds since the Unix epoch, taken from the calling
node's clock, because the refill arithmetic must be the same in SQLite and
PostgreSQL. `refilled_at` never moves back, so a node whose clock runs behind
the others' refills nothing rather than counting time twice.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.store.schema import endpoint_state

# A stored refill time this many seconds after the caller's clock is taken for a clock that
# was stepped back (or a node far off NTP). The bucket then starts full at the caller's time,
# because otherwise it would refill nothing until the caller's clock caught up. So each such
# step allows one extra burst.
CLOCK_STEP_S = 60.0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Circuit breaker thresholds: retryable failures in a row before it opens, and its pause in seconds."""

    threshold: int = 5
    open_s: float = 30.0
    max_open_s: float = 300.0

    @property
    def first_pause_s(self) -> float:
        return min(self.open_s, self.max_open_s)


@dataclass(frozen=True, slots=True)
class Grant:
    """One token taken from an endpoint's bucket.

    `trial` is True when the message is the breaker's trial; `last_digest_at` is the
    endpoint's last digest time as the row contains it now (None outside a storm).
    """

    endpoint: str
    trial: bool
    last_digest_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class Opened:
    """Breaker state after a retryable failure opened it: failures in a row and the time it allows a trial."""

    failures: int
    open_until: datetime.datetime


def take_token(
    connection: sa.Connection,
    endpoint: str,
    rate: float,
    burst: float,
    now: datetime.datetime,
    *,
    breaker: BreakerSettings,
    trial_hold_s: float,
) -> Grant | None:
    """Take one token of `endpoint` when its bucket has one and its breaker allows a message, else return None.

    `rate` is tokens per second and `burst` the bucket's size. The first take of an
    endpoint inserts its row with a full bucket.
    """
    state = endpoint_state.c
    now_s = sa.literal(now.timestamp(), sa.Float)
    clock_ran_back = state.refilled_at > now_s + CLOCK_STEP_S
    elapsed = sa.case((state.refilled_at < now_s, now_s - state.refilled_at), else_=sa.literal(0.0, sa.Float))
    level = state.tokens + elapsed * rate
    available = sa.case((sa.or_(level > burst, clock_ran_back), sa.literal(burst, sa.Float)), else_=level)
    breaker_allows = sa.or_(state.open_until.is_(None), state.open_until <= now_s)
    statement = (
        _insert(connection)
        .values(
            endpoint=endpoint,
            tokens=burst - 1.0,
            refilled_at=now.timestamp(),
            failures=0,
            open_until=None,
            pause_s=breaker.first_pause_s,
        )
        .on_conflict_do_update(
            index_elements=[state.endpoint],
            set_={
                "tokens": available - 1.0,
                "refilled_at": sa.case((sa.or_(state.refilled_at < now_s, clock_ran_back), now_s), else_=state.refilled_at),
                # A breaker whose pause has passed lets this message through as its trial, and stays held meanwhile.
                "open_until": sa.case((state.open_until.is_(None), sa.null()), else_=now_s + trial_hold_s),
            },
            where=sa.and_(available >= 1.0, breaker_allows),
        )
        .returning(state.open_until, state.last_digest_at)
    )
    row = connection.execute(statement).first()
    if row is None:
        return None
    return Grant(endpoint, trial=row.open_until is not None, last_digest_at=_moment(row.last_digest_at))


def last_digest(connection: sa.Connection, endpoint: str) -> datetime.datetime | None:
    """Return when the endpoint's last digest was folded, or None outside a storm; read without a lock."""
    stored = connection.execute(
        sa.select(endpoint_state.c.last_digest_at).where(endpoint_state.c.endpoint == endpoint)
    ).scalar_one_or_none()
    return _moment(stored)


def note_digest(connection: sa.Connection, endpoint: str, now: datetime.datetime) -> None:
    """Record that a digest to the endpoint is folded now; call it after `take_token` granted the digest's token."""
    connection.execute(
        endpoint_state.update().where(endpoint_state.c.endpoint == endpoint).values(last_digest_at=now.timestamp())
    )


def end_storm(connection: sa.Connection, endpoint: str, last: datetime.datetime) -> None:
    """Forget the endpoint's digest time `last`, so its messages go one by one again; a later digest time stays."""
    state = endpoint_state.c
    connection.execute(
        endpoint_state.update()
        # A microsecond of slack for the float round trip of the stored time; another digest is seconds later.
        .where(state.endpoint == endpoint, state.last_digest_at <= last.timestamp() + 1e-6)
        .values(last_digest_at=None)
    )


def _moment(seconds: float | None) -> datetime.datetime | None:
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def refund_token(connection: sa.Connection, grant: Grant, burst: float, now: datetime.datetime) -> None:
    """Give back a token that sent nothing because another worker leased the row first, and allow a new trial at once."""
    state = endpoint_state.c
    values: dict[str, Any] = {
        "tokens": sa.case((state.tokens + 1.0 > burst, sa.literal(burst, sa.Float)), else_=state.tokens + 1.0)
    }
    if grant.trial:
        values["open_until"] = now.timestamp()
    connection.execute(endpoint_state.update().where(state.endpoint == grant.endpoint).values(**values))


def record_outcome(
    connection: sa.Connection, endpoint: str, retryable: bool, now: datetime.datetime, breaker: BreakerSettings
) -> Opened | None:
    """Count one attempt's outcome in the endpoint's breaker, and return its state when this failure opened it.

    A retryable failure (429, 5xx, a timeout) adds one failure. It opens the breaker
    at `threshold` failures in a row, and reopens it with a doubled pause when it was
    already open or on trial. Any other outcome closes the breaker.
    """
    state = endpoint_state.c
    if not retryable:
        connection.execute(
            endpoint_state.update()
            .where(state.endpoint == endpoint, sa.or_(state.failures != 0, state.open_until.is_not(None)))
            .values(failures=0, open_until=None, pause_s=breaker.first_pause_s)
        )
        return None
    now_s = sa.literal(now.timestamp(), sa.Float)
    opens = sa.or_(state.failures + 1 >= breaker.threshold, state.open_until.is_not(None))
    doubled = sa.case((state.pause_s * 2 > breaker.max_open_s, sa.literal(breaker.max_open_s, sa.Float)), else_=state.pause_s * 2)
    row = connection.execute(
        endpoint_state.update()
        .where(state.endpoint == endpoint)
        .values(
            failures=state.failures + 1,
            open_until=sa.case((opens, now_s + state.pause_s), else_=state.open_until),
            pause_s=sa.case((opens, doubled), else_=state.pause_s),
        )
        .returning(state.failures, state.open_until)
    ).first()
    if row is None or row.open_until is None:
        return None
    return Opened(row.failures, datetime.datetime.fromtimestamp(row.open_until, datetime.UTC))


def _insert(connection: sa.Connection) -> Any:
    if connection.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert(endpoint_state)
