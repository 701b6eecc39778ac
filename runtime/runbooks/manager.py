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

Every write of a run's progress is fenced on the lease as well
(`runs.check_lease`, in the write's own transaction). A node that stalled past
the lease time (a stopped process, a long pause) may wake with a step result
in hand before its renewal notices the loss. Its write then raises `LeaseLost`
and writes nothing, and the run's task stops here.

A run whose task failed because the database was unreachable leaves this
node's active runs. The scan leases it again once the database responds (a
lease this node holds counts as free) and resumes it from its journal, with no
restart. A run that failed for any other reason stays leased here until the
next start, so a bug does not restart it in a loop.

NOTE: the fence covers writes to the store, not the world outside. A node that
stalls after writing a step's `running` state and before starting its program
or request can still start that operation once when it wakes; its outcome is
then rejected.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import anyio
import httpx
import sqlalchemy as sa

from runtime.daemon.outage import describe, is_transient, is_unreachable
from runtime.policy import Policy
from runtime.runbooks.clock import RealClock
from runtime.runbooks.runs import ACTIVE, LeaseLost
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
        # Whether the last scan failed because the database is unreachable, so an outage is logged once.
        self._scan_failing = False

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
                for run_id in await self._claim():
                    self.active.add(run_id)
                    group.start_soon(self._execute, run_id)
                with anyio.move_on_after(min(SCAN_EVERY_S, renew_every)):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
            # Steps in flight are cancelled. Their journal records them as running, so the next start resumes them.
            group.cancel_scope.cancel()

    async def _claim(self) -> list[int]:
        """Lease the free runs, or none while the database is unreachable, so the runs executing here go on."""
        try:
            claimed = await anyio.to_thread.run_sync(self.claim_free_runs)
        except Exception as error:
            if is_transient(error):
                log.warning("leasing runbook runs was aborted by the database (%s); retrying", describe(error))
                return []
            if not is_unreachable(error):
                raise
            if not self._scan_failing:
                log.warning("leasing runbook runs failed because the database is unreachable: %s; retrying", describe(error))
            self._scan_failing = True
            return []
        if self._scan_failing:
            log.info("leasing runbook runs works again")
            self._scan_failing = False
        return claimed

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
        kept_here = False
        try:
            with anyio.CancelScope() as scope:
                self._scopes[run_id] = scope
                try:
                    result = await run_stored(
                        self.store, self.policy(), run_id, RealClock(), self.client, self.settings, lease_owner=self.node_id
                    )
                except Exception as error:
                    # Caught because a failure of one run must not stop the others.
                    kept_here = _log_failure(run_id, error)
                    return
                if result is not None:
                    log.info("run %d ended %s: %s", run_id, result.state, result.detail)
        finally:
            # Also when the loop is cancelled: a loop that the daemon starts again must be able to lease the run.
            self._scopes.pop(run_id, None)
            if not kept_here:
                self.active.discard(run_id)


def _log_failure(run_id: int, error: Exception) -> bool:
    """Log why run `run_id` stopped with `error`, and return True when it stays leased here until the next start."""
    leaves = _leaf_errors(error)
    lost = next((leaf for leaf in leaves if isinstance(leaf, LeaseLost)), None)
    if lost is not None:
        log.warning(
            "run %d: lease lost to node %s; stopping it here without writing its progress", run_id, lost.holder or "(none)"
        )
        return False
    if all(is_unreachable(leaf) for leaf in leaves):
        log.warning(
            "run %d stopped because the database is unreachable: %s; it resumes from its journal once the database responds",
            run_id,
            describe(leaves[0]),
        )
        return False
    if all(is_transient(leaf) or is_unreachable(leaf) for leaf in leaves):
        log.warning(
            "run %d stopped because the database aborted a write (%s); it resumes from its journal at the next scan",
            run_id,
            describe(leaves[0]),
        )
        return False
    # The run stays active in the store and in `active`, so this node keeps its lease and does not retry it in a loop.
    log.error("run %d failed in the executor; it is resumed at the next start", run_id, exc_info=error)
    return True


def _leaf_errors(error: BaseException) -> list[BaseException]:
    """Return the exceptions inside `error`, with nested exception groups flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaf_errors(inner)]
    return [error]
