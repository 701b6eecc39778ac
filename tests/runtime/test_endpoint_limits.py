"""Token buckets and circuit breakers of outbox endpoints in the store, on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from runtime.notify import limits
from runtime.notify.limits import BreakerSettings, Grant
from runtime.store import Store
from runtime.store.schema import endpoint_state

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)
ENDPOINT = "webhook:WEBHOOK_URL"
BREAKER = BreakerSettings(threshold=3, open_s=30.0, max_open_s=120.0)
TRIAL_HOLD_S = 4.0


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def take(store: Store, seconds: float, rate: float = 2.0, burst: float = 3.0) -> Grant | None:
    with store.write() as connection:
        return limits.take_token(connection, ENDPOINT, rate, burst, at(seconds), breaker=BREAKER, trial_hold_s=TRIAL_HOLD_S)


def record(store: Store, seconds: float, retryable: bool) -> limits.Opened | None:
    with store.write() as connection:
        return limits.record_outcome(connection, ENDPOINT, retryable, at(seconds), BREAKER)


def state(store: Store) -> dict:
    with store.read() as connection:
        return dict(connection.execute(sa.select(endpoint_state)).mappings().one())


def test_bucket_takes_burst_then_rate(store: Store) -> None:
    # Burst 3 at 2 tokens a second: three at once, then one every half second.
    assert [take(store, 0.0) is not None for _ in range(4)] == [True, True, True, False]
    assert take(store, 0.25) is None
    assert take(store, 0.5) == Grant(ENDPOINT, trial=False)
    assert take(store, 0.5) is None
    # Ten idle seconds refill the bucket to its burst, not beyond.
    assert [take(store, 10.5) is not None for _ in range(4)] == [True, True, True, False]
    assert state(store)["refilled_at"] == at(10.5).timestamp()


def test_bucket_refund_caps_at_burst(store: Store) -> None:
    grant = take(store, 0.0)
    assert grant is not None
    with store.write() as connection:
        limits.refund_token(connection, grant, 3.0, at(0.0))
        limits.refund_token(connection, grant, 3.0, at(0.0))
    assert state(store)["tokens"] == 3.0


def test_bucket_ignores_clock_behind_others(store: Store) -> None:
    # A node whose clock is 5 s behind gets no refill from the time the others already counted.
    assert [take(store, 10.0) is not None for _ in range(3)] == [True, True, True]
    assert take(store, 5.0) is None
    assert state(store)["refilled_at"] == at(10.0).timestamp()
    assert take(store, 10.5) is not None


def test_bucket_restarts_after_clock_step_back(store: Store) -> None:
    # A clock stepped back by more than CLOCK_STEP_S finds a full bucket instead of waiting for the old time.
    assert [take(store, 1000.0) is not None for _ in range(3)] == [True, True, True]
    assert take(store, 1000.0 - limits.CLOCK_STEP_S) is None
    stepped = 1000.0 - limits.CLOCK_STEP_S - 1
    assert [take(store, stepped) is not None for _ in range(4)] == [True, True, True, False]
    assert state(store)["refilled_at"] == at(stepped).timestamp()
    assert take(store, stepped + 0.5) is not None


def test_breaker_opens_doubles_and_closes(store: Store) -> None:
    assert take(store, 0.0) is not None
    assert [record(store, 0.0, retryable=True) for _ in range(2)] == [None, None]
    opened = record(store, 0.0, retryable=True)
    assert opened == limits.Opened(failures=3, open_until=at(30.0))
    assert take(store, 29.9) is None

    # The pause is over: one trial, and no second message while the trial is held.
    assert take(store, 30.0) == Grant(ENDPOINT, trial=True)
    assert state(store)["open_until"] == at(30.0 + TRIAL_HOLD_S).timestamp()
    assert take(store, 31.0) is None

    # The trial fails, so the breaker opens again for twice the pause.
    assert record(store, 31.0, retryable=True) == limits.Opened(failures=4, open_until=at(91.0))
    assert take(store, 90.9) is None
    assert take(store, 91.0) == Grant(ENDPOINT, trial=True)
    assert record(store, 91.5, retryable=True) == limits.Opened(failures=5, open_until=at(211.5))
    # The pause doubles up to `max_open_s` (120 s), and a delivered trial closes the breaker.
    assert take(store, 211.5) == Grant(ENDPOINT, trial=True)
    assert record(store, 212.0, retryable=True) == limits.Opened(failures=6, open_until=at(332.0))
    assert take(store, 332.0) == Grant(ENDPOINT, trial=True)
    assert record(store, 332.5, retryable=False) is None
    closed = state(store)
    assert (closed["failures"], closed["open_until"], closed["pause_s"]) == (0, None, 30.0)
    assert take(store, 332.5) == Grant(ENDPOINT, trial=False)


def test_breaker_trial_refund_allows_trial_again(store: Store) -> None:
    take(store, 0.0)
    for _ in range(3):
        record(store, 0.0, retryable=True)
    grant = take(store, 30.0)
    assert grant == Grant(ENDPOINT, trial=True)
    with store.write() as connection:
        limits.refund_token(connection, grant, 3.0, at(30.5))
    assert state(store)["open_until"] == at(30.5).timestamp()
    assert take(store, 30.5) == Grant(ENDPOINT, trial=True)


def test_breaker_success_resets_failure_count(store: Store) -> None:
    take(store, 0.0)
    assert [record(store, 0.0, retryable=True) for _ in range(2)] == [None, None]
    assert record(store, 0.0, retryable=False) is None
    assert [record(store, 0.0, retryable=True) for _ in range(2)] == [None, None]
    assert state(store)["failures"] == 2
