"""The limit on failed web logins per client address."""

from __future__ import annotations

from runtime.web.lockout import FailedLogins


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_ends_with_oldest_failure() -> None:
    clock = Clock()
    limiter = FailedLogins(limit=3, window_s=60.0, clock=clock)
    for moment in (1000.0, 1010.0, 1020.0):
        clock.now = moment
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
    # Failures at 1000, 1010 and 1020: the oldest leaves the window at 1060.
    assert limiter.retry_after("10.0.0.1") == 40.0
    assert limiter.retry_after("10.0.0.2") is None
    clock.now = 1059.5
    assert limiter.retry_after("10.0.0.1") == 0.5
    clock.now = 1060.0
    assert limiter.retry_after("10.0.0.1") is None
    # One more failure: the last three are now 1010, 1020 and 1060, so the wait runs to 1070.
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 10.0


def test_right_token_clears_failures() -> None:
    clock = Clock()
    limiter = FailedLogins(limit=2, window_s=60.0, clock=clock)
    limiter.failed("10.0.0.1")
    limiter.succeeded("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None


def test_address_memory_is_bounded() -> None:
    clock = Clock()
    limiter = FailedLogins(limit=1, window_s=60.0, clients=2, clock=clock)
    limiter.failed("a")
    limiter.failed("b")
    limiter.failed("a")  # `a` becomes the most recently seen.
    limiter.failed("c")  # `b` is forgotten.
    assert limiter.retry_after("a") == 60.0
    assert limiter.retry_after("b") is None
    assert limiter.retry_after("c") == 60.0
    assert len(limiter._failures) == 2
