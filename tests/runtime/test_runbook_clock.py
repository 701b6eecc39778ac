"""The runbook clocks: virtual time moves only when every task is blocked, and by exact amounts."""

from __future__ import annotations

import datetime
import math

import anyio
import anyio.lowlevel
import pytest

from runtime.runbooks.clock import ClockStalled, RealClock, VirtualClock

pytestmark = pytest.mark.anyio

START = VirtualClock.DEFAULT_START


async def test_sleep_advances_exactly():
    async with VirtualClock.running() as clock:
        await clock.sleep(3600)
        assert clock.elapsed == 3600
        assert clock.now() == START + datetime.timedelta(hours=1)


async def test_now_starts_at_given_time():
    start = datetime.datetime(2024, 6, 1, 12, 30, tzinfo=datetime.UTC)
    async with VirtualClock.running(start) as clock:
        assert clock.now() == start
        await clock.sleep(0.5)
        assert clock.now() == start + datetime.timedelta(seconds=0.5)


def test_naive_start_is_rejected():
    with pytest.raises(ValueError, match="has no time zone"):
        VirtualClock(datetime.datetime(2025, 1, 1))


async def test_deadline_cancels_at_its_second():
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(10) as scope:
            await clock.sleep(3600)
        assert scope.cancelled_caught
        assert clock.elapsed == 10


async def test_deadline_not_reached_is_not_caught():
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(60) as scope:
            await clock.sleep(59)
        assert not scope.cancelled_caught
        assert clock.elapsed == 59
        # The cancelled timer of the scope must not move time later.
        await clock.sleep(5)
        assert clock.elapsed == 64


async def test_zero_deadline_cancels_at_once():
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(0) as scope:
            await clock.sleep(1)
        assert scope.cancelled_caught
        assert clock.elapsed == 0


async def test_no_deadline_never_cancels():
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(None) as scope:
            await clock.sleep(86_400)
        assert not scope.cancelled_caught
        assert clock.elapsed == 86_400


async def test_concurrent_sleeps_overlap():
    woken: list[tuple[str, float]] = []
    async with VirtualClock.running() as clock:

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woken.append((name, clock.elapsed))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(sleeper, "long", 20)
            task_group.start_soon(sleeper, "short", 10)
            task_group.start_soon(sleeper, "middle", 15)
        assert clock.elapsed == 20
    assert woken == [("short", 10), ("middle", 15), ("long", 20)]


async def test_equal_timers_fire_in_order_set():
    woken: list[str] = []
    async with VirtualClock.running() as clock:

        async def sleeper(name: str) -> None:
            await clock.sleep(5)
            woken.append(name)

        async with anyio.create_task_group() as task_group:
            for name in ("a", "b", "c"):
                task_group.start_soon(sleeper, name)
                await anyio.lowlevel.checkpoint()
    assert woken == ["a", "b", "c"]


async def test_time_waits_for_runnable_tasks():
    seen: list[float] = []
    async with VirtualClock.running() as clock:

        async def busy() -> None:
            for _ in range(200):
                await anyio.lowlevel.checkpoint()
            seen.append(clock.elapsed)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(busy)
            task_group.start_soon(clock.sleep, 30)
        assert clock.elapsed == 30
    assert seen == [0]


async def test_many_sleeps_are_exact():
    async with VirtualClock.running() as clock:
        for _ in range(1000):
            await clock.sleep(0.25)
        assert clock.elapsed == 250


async def test_blocked_forever_raises_stalled():
    with pytest.raises(ClockStalled, match="every task was blocked at 7 virtual seconds"):
        async with VirtualClock.running(stall_timeout=0.05) as clock:
            await clock.sleep(7)
            await anyio.Event().wait()


async def test_body_error_propagates_unwrapped():
    with pytest.raises(LookupError, match="from the body"):
        async with VirtualClock.running() as clock:
            await clock.sleep(1)
            raise LookupError("from the body")


async def test_real_clock_now_is_utc():
    now = RealClock().now()
    assert now.tzinfo is datetime.UTC


async def test_real_clock_zero_deadline_cancels():
    clock = RealClock()
    with clock.deadline_scope(0) as scope:
        await clock.sleep(60)
    assert scope.cancelled_caught


async def test_real_clock_no_deadline_is_infinite():
    assert RealClock().deadline_scope(None).deadline == math.inf


async def test_finished_child_does_not_look_blocked():
    # A child's done callback, still queued, is what wakes its task group's host.
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(900) as outer:
            async with anyio.create_task_group() as task_group:

                async def child() -> None:
                    with clock.deadline_scope(60):
                        await clock.sleep(0)

                task_group.start_soon(child)
        assert not outer.cancelled_caught
        assert clock.elapsed == 0


async def test_shielded_cleanup_lets_time_move():
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(10) as scope:
            try:
                await clock.sleep(100)
            finally:
                with anyio.CancelScope(shield=True):
                    await clock.sleep(5)
        assert scope.cancelled_caught
        assert clock.elapsed == 15
