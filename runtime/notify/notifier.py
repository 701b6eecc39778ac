"""The daemon's notification loop: queue what groups and escalation timers have due, then let the outbox send it."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import anyio

from runtime.notify import escalation, planner
from runtime.notify.outbox import Outbox
from runtime.policy import Policy
from runtime.store import Store

log = logging.getLogger("irules.notify")

Clock = Callable[[], datetime.datetime]
# How often due groups and timers are looked for when nothing wakes the loop.
TICK_S = 0.5


class Notifier:
    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        outbox: Outbox,
        clock: Clock,
        render: planner.Renderer | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.outbox = outbox
        self.clock = clock
        self.render = render
        self._wakeup = anyio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def tick(self) -> tuple[int, int]:
        """Fire due escalation timers and queue due group messages; return (timers fired, rows queued)."""
        policy = self.policy()
        now = self.clock()
        fired = escalation.fire_due(self.store, policy, now, self.render)
        queued = planner.queue_due(self.store, policy, now, self.render)
        if fired or queued:
            self.outbox.wake()
        return fired, queued

    async def run(self, stop: anyio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.tick)
            except Exception:  # keep notifying: one bad incident or rule must not stop every page
                log.exception("the notification loop failed; trying again")
            with anyio.move_on_after(TICK_S):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
