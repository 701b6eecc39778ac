"""The daemon's runbook loop: execute the active runs this node holds a lease on, and resume them after a restart.

Runs are started elsewhere (the pipeline starts automatic runbooks when an
incident opens, people start manual ones); this loop finds each active run
that no live node holds, leases it with a conditional update of `lease_owner`
and `lease_until`, and executes it. While the run executes, the loop renews the
lease every third of the lease time. A node that cannot renew a lease (it was
silent for longer than the lease time, so another node may have taken the run)
cancels its task at once. Another node then takes the run over and resumes it
from its journal, where a mutating step found `running` waits for a person's
decision instead of running again.

NOTE: a node that stalls for longer than the lease time (a stopped process, a
long garbage-collection pause) can still write one step result after another
node took the run over, because step writes do not check `lease_owner`.
"""

from __future__ import annotations

import datetime
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
# Seconds a lease lasts unless the daemon's `--lease-time` sets another value.
DEFAULT_LEASE_S = 30.0


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RunManager:
    """Executes the active runs that this node leases, one task per run."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        client: httpx.AsyncClient,
        settings: RunnerSettings,
        *,
        node_id: str = "local",
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.policy = policy
        self.client = client
        self.settings = settings
        self.node_id = node_id
        self.lease_s = lease_s
        self.clock = clock
        self.active: set[int] = set()
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._wakeup = anyio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    # ------------------------------------------------------------ leases

    def claim_free_runs(self) -> list[int]:
        """Lease every active run that has no live holder and no task here, and return their ids."""
        now = self.clock()
        free = sa.or_(
            runbook_runs.c.lease_owner.is_(None),
            runbook_runs.c.lease_owner == self.node_id,
            runbook_runs.c.lease_until.is_(None),
            runbook_runs.c.lease_until < now,
        )
        if self.store.is_sqlite:
            # One daemon per SQLite file: a lease found at start is that of this daemon's previous
            # process, so it is taken over at once instead of after the lease time.
            free = sa.true()
        with self.store.read() as connection:
            candidates = connection.execute(
                sa.select(runbook_runs.c.id).where(runbook_runs.c.status.in_(ACTIVE), free).order_by(runbook_runs.c.id)
            ).scalars()
            candidates = [run_id for run_id in candidates if run_id not in self.active]
        claimed = []
        for run_id in candidates:
            with self.store.write() as connection:
                updated = connection.execute(
                    runbook_runs.update()
                    .where(runbook_runs.c.id == run_id, runbook_runs.c.status.in_(ACTIVE), free)
                    .values(lease_owner=self.node_id, lease_until=self._lease_end(now))
                ).rowcount
            if updated:
                claimed.append(run_id)
        return claimed

    def renew_leases(self) -> set[int]:
        """Extend the lease of every run executing here, and return the ids of runs whose lease this node lost."""
        if not self.active:
            return set()
        now = self.clock()
        with self.store.write() as connection:
            kept = set(
                connection.execute(
                    runbook_runs.update()
                    .where(
                        runbook_runs.c.id.in_(sorted(self.active)),
                        runbook_runs.c.lease_owner == self.node_id,
                        runbook_runs.c.status.in_(ACTIVE),
                    )
                    .values(lease_until=self._lease_end(now))
                    .returning(runbook_runs.c.id)
                ).scalars()
            )
            # Runs that ended here keep their owner and have no lease; only runs another node took are lost.
            taken = set(
                connection.execute(
                    sa.select(runbook_runs.c.id).where(
                        runbook_runs.c.id.in_(sorted(self.active - kept)), runbook_runs.c.lease_owner != self.node_id
                    )
                ).scalars()
            )
        return taken

    def _lease_end(self, now: datetime.datetime) -> datetime.datetime:
        return now + datetime.timedelta(seconds=self.lease_s)

    # ------------------------------------------------------------ the loop

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Lease and execute free runs, and renew the leases held, until `stop` is set."""
        renew_every = self.lease_s / 3
        renewed_at = anyio.current_time()
        async with anyio.create_task_group() as group:
            while stop is None or not stop.is_set():
                if anyio.current_time() - renewed_at >= renew_every:
                    renewed_at = anyio.current_time()
                    await self._renew()
                for run_id in await anyio.to_thread.run_sync(self.claim_free_runs):
                    self.active.add(run_id)
                    group.start_soon(self._execute, run_id)
                with anyio.move_on_after(min(SCAN_EVERY_S, renew_every)):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
            # Steps in flight are cancelled. Their journal records them as running, so the next start resumes them.
            group.cancel_scope.cancel()

    async def _renew(self) -> None:
        try:
            lost = await anyio.to_thread.run_sync(self.renew_leases)
        except sa.exc.OperationalError:
            log.warning("renewing runbook run leases failed; trying again in %.1f s", self.lease_s / 3, exc_info=True)
            return
        for run_id in lost:
            log.warning("run %d: lease lost to another node; stopping it here", run_id)
            scope = self._scopes.get(run_id)
            if scope is not None:
                scope.cancel()

    async def _execute(self, run_id: int) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[run_id] = scope
            try:
                result = await run_stored(self.store, self.policy(), run_id, RealClock(), self.client, self.settings)
            except Exception:
                # The run stays active in the store and in `active`, so this node keeps its lease and does not
                # retry it in a loop. The exception is caught because a bug in one run must not stop the others.
                log.exception("run %d failed in the executor; it is resumed at the next start", run_id)
                self._scopes.pop(run_id, None)
                return
            if result is not None:
                log.info("run %d ended %s: %s", run_id, result.state, result.detail)
        self._scopes.pop(run_id, None)
        self.active.discard(run_id)
