"""Daemon notification loop: fire due escalation timers, queue due group messages, then wake the outbox."""

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
# Seconds between checks for due groups and timers when nothing wakes the loop.
TICK_S = 0.5


class Notifier:
    """Loop that turns due escalation timers and notification groups into outbox rows."""

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
        # Groups first: after an outage an incident's first message gets the lower outbox id, so it is
        # sent (and becomes the Slack thread's root) before the escalation steps that came due meanwhile.
        queued = planner.queue_due(self.store, policy, now, self.render)
        fired = escalation.fire_due(self.store, policy, now, self.render)
        if fired or queued:
            self.outbox.wake()
        return fired, queued

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Call `tick` every `TICK_S`, or sooner after `wake`, until `stop` is set."""
        while stop is None or not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.tick)
            except Exception:  # One bad incident or rule must not stop every page, so keep notifying.
                log.exception("the notification loop failed; trying again")
            with anyio.move_on_after(TICK_S):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
