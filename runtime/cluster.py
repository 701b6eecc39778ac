"""Several daemons on one database: the node registry, heartbeats and periodic job claims.

Each daemon is a node with an id of the form `host:port:pid:random`. It inserts
its row in `nodes` at start and moves `heartbeat_at` forward every
`HEARTBEAT_S`, or every third of the lease time when that is shorter, so a live
node is never taken for dead. A node whose heartbeat is older than the lease time is taken for
dead: the runbook runs it leased may be taken over, and it no longer shows on
`/status`.

A periodic job (a reaper, retention) runs on one node per period: every node
tries `claim_job`, which moves the job's `next_run_at` forward with a
conditional update, and only the node whose update matched runs the job.

On SQLite there is one daemon per file, and the same code runs unchanged.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.store import Store
from runtime.store.schema import cluster_jobs, nodes

log = logging.getLogger("irules.cluster")

# Seconds between two heartbeats of a node.
HEARTBEAT_S = 5.0
# Seconds a silent node's leases stay its own, unless `--lease-time` sets another value.
DEFAULT_LEASE_S = 30.0
# Nodes silent for this many lease times are removed from `nodes`.
FORGET_AFTER_LEASES = 10


def new_node_id(host: str, port: int) -> str:
    """Return a node id that no other process gets: host name, port, process id and a random part."""
    return f"{socket.gethostname()}:{port}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One row of the node registry, as `/status` shows it."""

    id: str
    listen: str
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "listen": self.listen,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


class Node:
    """This daemon's entry in the node registry."""

    def __init__(self, store: Store, node_id: str, listen: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.store = store
        self.id = node_id
        self.listen = listen
        self.lease_s = lease_s

    @property
    def heartbeat_every_s(self) -> float:
        """Return the seconds between two heartbeats: `HEARTBEAT_S`, or a third of a shorter lease time."""
        return min(HEARTBEAT_S, self.lease_s / 3)

    def register(self, now: datetime.datetime) -> None:
        """Insert this node's row, and remove rows of nodes silent for `FORGET_AFTER_LEASES` lease times."""
        forget_before = now - datetime.timedelta(seconds=self.lease_s * FORGET_AFTER_LEASES)
        with self.store.write() as connection:
            connection.execute(nodes.delete().where(nodes.c.heartbeat_at < forget_before))
            connection.execute(nodes.insert().values(id=self.id, listen=self.listen, started_at=now, heartbeat_at=now))
        log.info("node registered: node_id=%s listen=%s lease_s=%s", self.id, self.listen, self.lease_s)

    def heartbeat(self, now: datetime.datetime) -> None:
        """Move this node's `heartbeat_at` to `now`, inserting the row again if another node removed it."""
        with self.store.write() as connection:
            updated = connection.execute(nodes.update().where(nodes.c.id == self.id).values(heartbeat_at=now)).rowcount
            if not updated:
                connection.execute(nodes.insert().values(id=self.id, listen=self.listen, started_at=now, heartbeat_at=now))

    def unregister(self) -> None:
        """Delete this node's row at a clean stop, so the others stop counting it at once."""
        with self.store.write() as connection:
            connection.execute(nodes.delete().where(nodes.c.id == self.id))

    def alive(self, now: datetime.datetime) -> list[NodeInfo]:
        """Return the nodes whose last heartbeat is within the lease time of `now`, by id."""
        since = now - datetime.timedelta(seconds=self.lease_s)
        with self.store.read() as connection:
            rows = connection.execute(sa.select(nodes).where(nodes.c.heartbeat_at >= since).order_by(nodes.c.id)).all()
        return [NodeInfo(row.id, row.listen, row.started_at, row.heartbeat_at) for row in rows]

    def members(self, now: datetime.datetime) -> tuple[list[NodeInfo], list[NodeInfo]]:
        """Return the registered nodes in two lists, by id: those alive at `now` and those silent past the lease time."""
        since = now - datetime.timedelta(seconds=self.lease_s)
        with self.store.read() as connection:
            rows = connection.execute(sa.select(nodes).order_by(nodes.c.id)).all()
        infos = [NodeInfo(row.id, row.listen, row.started_at, row.heartbeat_at) for row in rows]
        return [info for info in infos if info.heartbeat_at >= since], [info for info in infos if info.heartbeat_at < since]

    def claim_job(self, name: str, every_s: float, now: datetime.datetime) -> bool:
        """Return True when this node runs job `name` now: it was due, and this node moved it to `now + every_s`."""
        return claim_job(self.store, name, self.id, every_s, now)


class PeerWatch:
    """Logs the other nodes that join the cluster, fall silent or stop, as this node observes them at its heartbeats.

    An operator reading one node's log then learns that a peer died and that its
    leases are being taken over, without looking at `/status`.
    """

    def __init__(self, own_id: str) -> None:
        self.own_id = own_id
        # Listen address of each peer seen alive at the last look; None before the first look.
        self._alive: dict[str, str] | None = None

    def update(self, alive: list[NodeInfo], silent: list[NodeInfo]) -> list[str]:
        """Compare with the last look, log each change, and return the log messages."""
        now_alive = {info.id: info.listen for info in alive if info.id != self.own_id}
        silent_ids = {info.id for info in silent}
        messages = []
        if self._alive is not None:
            for node_id, listen in sorted(now_alive.items()):
                if node_id not in self._alive:
                    messages.append(f"node joined: node_id={node_id} listen={listen}")
            for node_id, listen in sorted(self._alive.items()):
                if node_id in now_alive:
                    continue
                if node_id in silent_ids:
                    messages.append(
                        f"node silent past the lease time: node_id={node_id} listen={listen}; "
                        "its runbook runs and messages being sent are taken over"
                    )
                else:
                    messages.append(f"node left: node_id={node_id} listen={listen}")
        self._alive = now_alive
        for message in messages:
            if message.startswith("node silent"):
                log.warning(message)
            else:
                log.info(message)
        return messages


def claim_job(store: Store, name: str, node_id: str, every_s: float, now: datetime.datetime) -> bool:
    """Claim one period of the job `name` for `node_id`, and return whether the claim succeeded.

    The job row is created due at once when missing. Of several nodes calling this for
    the same period, exactly one gets True, because the conditional update matches
    only while `next_run_at <= now`, and the first update moves it past `now`.
    """
    with store.write() as connection:
        connection.execute(_insert_missing(store, name, now))
        claimed = connection.execute(
            cluster_jobs.update()
            .where(cluster_jobs.c.name == name, cluster_jobs.c.next_run_at <= now)
            .values(next_run_at=now + datetime.timedelta(seconds=every_s), last_node=node_id, last_run_at=now)
        ).rowcount
    return claimed == 1


def _insert_missing(store: Store, name: str, now: datetime.datetime) -> Any:
    if store.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert(cluster_jobs).values(name=name, next_run_at=now).on_conflict_do_nothing(index_elements=[cluster_jobs.c.name])


def job_runs(store: Store) -> dict[str, dict[str, Any]]:
    """Return each periodic job's next run, last node and last run, by name."""
    with store.read() as connection:
        rows = connection.execute(sa.select(cluster_jobs).order_by(cluster_jobs.c.name)).mappings().all()
    return {row["name"]: dict(row) for row in rows}
