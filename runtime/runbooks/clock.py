"""Clocks for the runbook executor: the real one, and a virtual one that tests drive.

`RealClock` reads the system time and sleeps on the event loop. `VirtualClock`
keeps its own time, which moves only when every task is blocked: it then jumps
straight to the earliest pending sleep or deadline. A test of a one-hour
approval timeout therefore finishes in milliseconds, and its clock advances
by exactly one hour, whatever the machine's load.

Example:
    async with VirtualClock.running() as clock:
        with clock.deadline_scope(10) as scope:
            await clock.sleep(60)
        assert scope.cancelled_caught and clock.elapsed == 10
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

__all__ = ["ClockStalled", "RealClock", "VirtualClock"]


class RealClock:
    """The system's UTC time, with sleeps and deadlines on the event loop's monotonic clock."""

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def deadline_scope(self, seconds: float | None) -> anyio.CancelScope:
        """Return a cancel scope that cancels its body `seconds` from now (None: never)."""
        deadline = math.inf if seconds is None else anyio.current_time() + seconds
        return anyio.CancelScope(deadline=deadline)


class ClockStalled(RuntimeError):
    """Raised by `VirtualClock.running` when every task is blocked and no sleep or deadline is pending."""


@dataclass(order=True, slots=True)
class _Timer:
    due: float
    sequence: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class VirtualClock:
    """A clock whose time moves only when every task is blocked, by jumping to the next timer.

    Timers (sleeps and deadlines) due at the same virtual time fire in the
    order they were set, one at a time, and the clock waits for every task to
    block again before it fires the next one. Use it through `running()`,
    which starts the task that moves time.
    """

    DEFAULT_START = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

    def __init__(self, start: datetime.datetime = DEFAULT_START, *, stall_timeout: float = 5.0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start time {start.isoformat()!r} has no time zone")
        self._start = start
        self._elapsed = 0.0
        self._timers: list[_Timer] = []
        self._sequence = itertools.count()
        self._timer_added: anyio.Event | None = None
        self._stall_timeout = stall_timeout
        self._stalled = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, start: datetime.datetime = DEFAULT_START, *, stall_timeout: float = 5.0
    ) -> AsyncIterator[VirtualClock]:
        """Yield a clock whose time moves while the body runs.

        `stall_timeout` is how many real seconds the clock waits, with every
        task blocked and no timer pending, before it cancels the body and
        raises `ClockStalled`: without it a deadlocked test would hang.

        Raises:
            ClockStalled: every task stayed blocked and nothing could wake one.
        """
        clock = cls(start, stall_timeout=stall_timeout)
        error: Exception | None = None
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(clock._move_time, task_group.cancel_scope)
            try:
                yield clock
            except Exception as raised:
                # Re-raised below, outside the task group, so that callers see it unwrapped.
                error = raised
            finally:
                task_group.cancel_scope.cancel()
        if error is not None:
            raise error
        if clock._stalled:
            raise ClockStalled(f"every task was blocked at {clock.elapsed:g} virtual seconds with no sleep or deadline pending")

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock started."""
        return self._elapsed

    def now(self) -> datetime.datetime:
        return self._start + datetime.timedelta(seconds=self._elapsed)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        timer = self._schedule(seconds, woken.set)
        try:
            await woken.wait()
        finally:
            timer.cancelled = True

    @contextlib.contextmanager
    def deadline_scope(self, seconds: float | None) -> Iterator[anyio.CancelScope]:
        """Yield a cancel scope that is cancelled `seconds` of virtual time from now (None: never)."""
        with anyio.CancelScope() as scope:
            timer = None
            if seconds is not None and seconds <= 0:
                scope.cancel()
            elif seconds is not None:
                timer = self._schedule(seconds, scope.cancel)
            try:
                yield scope
            finally:
                if timer is not None:
                    timer.cancelled = True

    def _schedule(self, seconds: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self._elapsed + seconds, next(self._sequence), callback)
        heapq.heappush(self._timers, timer)
        if self._timer_added is not None:
            self._timer_added.set()
        return timer

    def _next_timer(self) -> _Timer | None:
        while self._timers:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                return timer
        return None

    async def _move_time(self, body_scope: anyio.CancelScope) -> None:
        while True:
            await _wait_all_tasks_blocked()
            timer = self._next_timer()
            if timer is not None:
                self._elapsed = max(self._elapsed, timer.due)
                timer.callback()
                continue

            # Nothing is due: wait, in real time, for some task to set a timer.
            self._timer_added = anyio.Event()
            with anyio.move_on_after(self._stall_timeout) as wait:
                await self._timer_added.wait()
            self._timer_added = None
            if wait.cancelled_caught:
                self._stalled = True
                body_scope.cancel()
                return


async def _wait_all_tasks_blocked() -> None:
    """Return once every other task waits for something and the event loop has no callback left to run.

    On trio this is `anyio.wait_all_tasks_blocked`, which is exact. On asyncio,
    anyio's version polls every 0.1 real seconds while some task is runnable,
    so each jump of the clock would cost that long. It also ignores callbacks
    already queued, such as a finished task's done callback, which wakes the
    task that waits for it. This one yields to the event loop until no task is
    runnable and no callback is queued.
    """
    try:
        this_task = asyncio.current_task()
    except RuntimeError:
        this_task = None
    if this_task is None:
        await anyio.wait_all_tasks_blocked()
        return
    loop = asyncio.get_running_loop()
    rounds_with_callbacks = 0
    while True:
        await asyncio.sleep(0)
        if not all(_blocked(task) for task in asyncio.all_tasks() if task is not this_task):
            rounds_with_callbacks = 0
            continue
        if not _has_queued_callbacks(loop) or rounds_with_callbacks >= _MAX_CALLBACK_ROUNDS:
            return
        rounds_with_callbacks += 1


# A callback that queues itself again on every loop iteration would keep the queue from
# ever emptying: anyio, for one, retries a cancellation that way until the cancelled task
# finishes. After this many rounds in which only callbacks ran and every task stayed
# blocked, time moves anyway.
_MAX_CALLBACK_ROUNDS = 50


def _blocked(task: asyncio.Task[object]) -> bool:
    # NOTE: `_fut_waiter` is private to asyncio. anyio reads it the same way, and it is the
    # only sign of whether a task waits for a future or is about to run. A task whose future
    # another thread is about to complete counts as blocked, so time may jump meanwhile.
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


def _has_queued_callbacks(loop: asyncio.AbstractEventLoop) -> bool:
    # `_ready` is the private queue of asyncio's own event loops. A loop without one counts
    # as busy, so the clock waits the full number of rounds before each jump.
    return bool(getattr(loop, "_ready", True))
