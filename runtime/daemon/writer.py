"""Group commit: payloads from concurrent requests share one transaction.

Each request hands its payload to the writer and waits. The writer takes every
payload that is waiting (up to a limit), stores them in one transaction, and
then wakes each request with its payload id or the error. A request gets its
2xx only after that commit, so a 2xx always means stored, while many
concurrent senders cost one commit instead of one each.

While the database is unreachable, `store_or_spool` appends payloads to the
local spool instead (see `runtime.daemon.outage`).

When nothing waits and the SQLite writer is free, a request with a small
payload commits it itself, on the event loop. Waking the writer task and being
woken by it would cost about 80,000 instructions of a one-alert webhook's
570,000 (counted with callgrind on Python 3.11).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from runtime.daemon.outage import DatabaseHealth, is_unreachable
from runtime.faults import crash_point
from runtime.pipeline import Accepted, accept, accept_if_free
from runtime.spool import Spool
from runtime.store import Store

log = logging.getLogger("irules.writer")

MAX_BATCH = 500
# Batches of up to this many alerts are written on the event loop when the SQLite writer
# is free. The hand-off to a worker thread and back costs more than it saves, because the
# senders in the batch wait for the commit either way. Larger batches go to a thread, so
# that the event loop keeps serving other requests meanwhile.
INLINE_ALERTS = 1000
QUEUE_LIMIT = 10_000


@dataclass(slots=True)
class _Pending:
    item: Accepted
    done: anyio.Event = field(default_factory=anyio.Event)
    payload_id: int | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """Destination of an accepted payload: the store (`payload_id`) or the spool (`spool_id`)."""

    payload_id: int | None = None
    spool_id: str | None = None


class Overloaded(Exception):
    """The writer takes no payload now, because its queue is full or it is closed.

    The request gets a 503, which senders retry.
    """


class Writer:
    def __init__(
        self,
        store: Store,
        on_commit: Callable[[list[Accepted]], None] | None = None,
        *,
        spool: Spool | None = None,
        health: DatabaseHealth | None = None,
        on_spool: Callable[[Accepted], None] | None = None,
    ) -> None:
        self.store = store
        self._on_commit = on_commit
        assert spool is None or health is not None, "a spool needs a DatabaseHealth to know when to use it"
        self._spool = spool
        self._health = health
        self._on_spool = on_spool
        self._queue: deque[_Pending] = deque()
        self._wakeup = anyio.Event()
        self._closed = False
        # True while the writer task stores a batch, which payloads must not overtake.
        self._storing = False

    async def store_or_spool(self, item: Accepted) -> Receipt:
        """Store `item`, or spool it while the database is unreachable or the spool has older payloads.

        Raises:
            Overloaded: the writer's queue is full or the daemon is stopping.
            SpoolFull: the database is unreachable and the spool has no room.
        """
        if self._spool is None or self._health is None:
            return Receipt(payload_id=await self.submit(item))
        if self._spool.pending or self._health.problem is not None:
            return await self._to_spool(item)
        try:
            return Receipt(payload_id=await self.submit(item))
        except Overloaded:
            raise
        except Exception as error:
            if not is_unreachable(error):
                raise
            self._health.report_failure(error)
            return await self._to_spool(item)

    def store_now(self, item: Accepted) -> Receipt | None:
        """Store `item` on the event loop when that needs no waiting, else return None and store nothing.

        No waiting is needed when nothing is spooled and `_store_inline` finds the SQLite
        writer free. `store_or_spool` takes the other cases.

        Raises:
            Overloaded: the daemon is stopping.
            Exception: what storing raised.
        """
        if self._closed:
            raise Overloaded("the daemon is stopping")
        if self._spool is not None and (self._spool.pending or self._health is None or self._health.problem is not None):
            return None
        try:
            payload_id = self._store_inline(item)
        except Exception as error:
            if self._health is not None and self._spool is not None and is_unreachable(error):
                # As in `store_or_spool`: the outage begins, and the caller's retry spools the payload.
                self._health.report_failure(error)
                return None
            raise
        return None if payload_id is None else Receipt(payload_id=payload_id)

    def _store_inline(self, item: Accepted) -> int | None:
        """Commit `item` on the event loop and return its payload id, or None when it has to go through the queue.

        It goes through the queue when payloads are queued or being stored, which it must
        not overtake, when it is large, when the store is PostgreSQL, or when the SQLite
        writer is busy.
        """
        if self._queue or self._storing or len(item.outcome.alerts) > INLINE_ALERTS:
            return None
        try:
            ids = accept_if_free(self.store, [item])
        except Exception as error:
            self._log_failure(error, 1)
            raise
        if ids is None:
            return None
        self._committed([item])
        return ids[0]

    async def _to_spool(self, item: Accepted) -> Receipt:
        assert self._spool is not None
        data = self._spool.encode(item)
        spool_id = self._spool.reserve(len(data))
        try:
            await anyio.to_thread.run_sync(self._spool.write, spool_id, data)
        except BaseException:
            self._spool.release(len(data), spool_id)
            raise
        if self._on_spool is not None:
            self._on_spool(item)
        return Receipt(spool_id=spool_id)

    async def submit(self, item: Accepted) -> int:
        """Store `item` durably and return its payload id; raise what storing raised."""
        if self._closed:
            raise Overloaded("the daemon is stopping")
        if len(self._queue) >= QUEUE_LIMIT:
            raise Overloaded("too many payloads waiting to be stored")
        payload_id = self._store_inline(item)
        if payload_id is not None:
            return payload_id
        pending = _Pending(item)
        self._queue.append(pending)
        self._wakeup.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.payload_id is not None
        return pending.payload_id

    async def run(self) -> None:
        """Store batches until `close` is called and the queue is empty."""
        while True:
            if not self._queue:
                if self._closed:
                    return
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            self._storing = True
            try:
                await self._store(batch)
            finally:
                self._storing = False

    async def _store(self, batch: list[_Pending]) -> None:
        items = [pending.item for pending in batch]
        try:
            ids = None
            if sum(len(item.outcome.alerts) for item in items) <= INLINE_ALERTS:
                ids = accept_if_free(self.store, items)
            if ids is None:
                # The SQLite writer is busy (the pipeline's transaction), the batch is large,
                # or the store is PostgreSQL: wait in a worker thread.
                ids = await anyio.to_thread.run_sync(accept, self.store, items)
        except Exception as error:
            self._log_failure(error, len(batch))
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        for pending, payload_id in zip(batch, ids, strict=True):
            pending.payload_id = payload_id
            pending.done.set()
        self._committed(items)

    def _log_failure(self, error: Exception, count: int) -> None:
        if self._spool is not None and is_unreachable(error):
            # The payloads go to the spool, and `DatabaseHealth` logs the outage once.
            return
        log.exception("storing %d payloads failed; their senders get 503", count)

    def _committed(self, items: list[Accepted]) -> None:
        crash_point("ingest.after_commit")
        if self._on_commit is not None:
            self._on_commit(items)

    def close(self) -> None:
        """Accept no more payloads; `run` returns once the queued ones are stored."""
        self._closed = True
        self._wakeup.set()
