"""The daemon's runbook loop: execute every active run in the store, and resume them after a restart.

Runs are started elsewhere (the pipeline starts automatic runbooks when an
incident opens, people start manual ones); this loop finds each run that is
running or waiting and has no task in this process, and executes it. After a
restart that is every active run, which the executor resumes from its journal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import httpx
import sqlalchemy as sa

from runtime.policy import Policy
from runtime.runbooks.clock import RealClock
from runtime.runbooks.runs import ACTIVE
from runtime.runbooks.steps import RunnerSettings, run_stored
from runtime.store import Store
from runtime.store.schema import runbook_runs

log = logging.getLogger("irules.runbooks")

# How often the store is looked at for runs that have no task yet.
SCAN_EVERY_S = 1.0


class RunManager:
    def __init__(self, store: Store, policy: Callable[[], Policy], client: httpx.AsyncClient, settings: RunnerSettings) -> None:
        self.store = store
        self.policy = policy
        self.client = client
        self.settings = settings
        self.active: set[int] = set()
        self._wakeup = anyio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def _waiting_runs(self) -> list[int]:
        with self.store.read() as connection:
            return list(
                connection.execute(
                    sa.select(runbook_runs.c.id).where(runbook_runs.c.status.in_(ACTIVE)).order_by(runbook_runs.c.id)
                ).scalars()
            )

    async def run(self, stop: anyio.Event | None = None) -> None:
        async with anyio.create_task_group() as group:
            while stop is None or not stop.is_set():
                for run_id in await anyio.to_thread.run_sync(self._waiting_runs):
                    if run_id not in self.active:
                        self.active.add(run_id)
                        group.start_soon(self._execute, run_id)
                with anyio.move_on_after(SCAN_EVERY_S):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
            # Steps in flight are cancelled. Their journal records them as running, so the next start resumes them.
            group.cancel_scope.cancel()

    async def _execute(self, run_id: int) -> None:
        try:
            result = await run_stored(self.store, self.policy(), run_id, RealClock(), self.client, self.settings)
        except Exception:
            # The run stays active in the store and in `active`, so it is resumed at the next start
            # rather than retried in a loop; a bug in one run must not stop the others.
            log.exception("run %d failed in the executor; it is resumed at the next start", run_id)
            return
        if result is not None:
            log.info("run %d ended %s: %s", run_id, result.state, result.detail)
        self.active.discard(run_id)
