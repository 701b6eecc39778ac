"""Group commit: payloads from concurrent requests share one transaction.

Each request hands its payload to the writer and waits. The writer takes every
payload that is waiting (up to a limit), stores them in one transaction in a
worker thread, and then wakes each request with its payload id or the error.
A request gets its 2xx only after that commit, so a 2xx always means stored,
while many concurrent senders cost one commit instead of one each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runtime.pipeline import Accepted, accept, accept_if_free
from runtime.store import Store

log = logging.getLogger("irules.writer")

MAX_BATCH = 500
# Batches up to this many payloads are written on the event loop when the writer is free.
INLINE_BATCH = 8
QUEUE_LIMIT = 10_000


@dataclass(slots=True)
class _Pending:
    item: Accepted
    done: anyio.Event = field(default_factory=anyio.Event)
    payload_id: int | None = None
    error: BaseException | None = None


class Overloaded(Exception):
    """The writer's queue is full; the request gets a 503 so the sender retries."""


class Writer:
    def __init__(self, store: Store, on_commit: Callable[[list[Accepted]], None] | None = None) -> None:
        self.store = store
        self._on_commit = on_commit
        send, receive = anyio.create_memory_object_stream[_Pending](QUEUE_LIMIT)
        self._send: MemoryObjectSendStream[_Pending] = send
        self._receive: MemoryObjectReceiveStream[_Pending] = receive

    async def submit(self, item: Accepted) -> int:
        """Store `item` durably and return its payload id; raise what storing raised."""
        pending = _Pending(item)
        try:
            self._send.send_nowait(pending)
        except anyio.WouldBlock as error:
            raise Overloaded("too many payloads waiting to be stored") from error
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.payload_id is not None
        return pending.payload_id

    async def run(self) -> None:
        """Store batches until `close` is called and the queue is empty."""
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._store(batch)

    async def _store(self, batch: list[_Pending]) -> None:
        items = [pending.item for pending in batch]
        try:
            # A free SQLite writer commits a small batch faster on the event loop than a
            # round trip through a worker thread. A busy one is waited for in a thread.
            ids = accept_if_free(self.store, items) if len(items) <= INLINE_BATCH else None
            if ids is None:
                ids = await anyio.to_thread.run_sync(accept, self.store, items)
        except Exception as error:
            log.exception("storing %d payloads failed; their senders get 503", len(batch))
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        for pending, payload_id in zip(batch, ids, strict=True):
            pending.payload_id = payload_id
            pending.done.set()
        if self._on_commit is not None:
            self._on_commit(items)

    def close(self) -> None:
        """Accept no more payloads; `run` returns once the queued ones are stored."""
        self._send.close()
