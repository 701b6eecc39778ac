"""The local spool: payloads accepted while the database is unreachable, kept on disk until it is back.

Each spooled payload is one file, `<sequence>-<random hex>.spool`, whose stem is
the payload's spool id. The file is written under a temporary name, fsynced,
renamed and the folder fsynced before the sender gets its 202, so a 202 means
the payload survives a crash of the process. Sequence numbers grow within a
folder, so replaying in file-name order replays in arrival order.

A file contains what the source made of the request, not the request: the
source, the kind, the normalised alerts, the details, the receive time, the
body and the headers that the store keeps. Credentials and signatures are
never written, because authentication has already happened.

`drain` stores each file through the normal ingest insert in one transaction
that also sets `payloads.spool_id`, and only then deletes the file. A crash
between the commit and the delete leaves the file, and the next drain finds
its spool id in the store and deletes it without storing it again.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import sqlalchemy as sa

from runtime.alerts import Alert
from runtime.pipeline import Accepted, insert_payload, kept_headers
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store
from runtime.store.schema import payloads

log = logging.getLogger("irules.spool")

DEFAULT_LIMIT_BYTES = 1024**3
SUFFIX = ".spool"
_PARTIAL_SUFFIX = ".partial"
FORMAT_VERSION = 1


class SpoolFull(Exception):
    """The spool has no room for a payload; the sender gets a 503 with this message."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled payload: its spool id, the file it is in, and the payload ready to be stored."""

    spool_id: str
    path: Path
    accepted: Accepted


class Spool:
    """A folder of spooled payloads, at most `limit_bytes` in total.

    The methods that touch the disk block, so the daemon calls them in a worker
    thread. `reserve` and `release` only count, under a lock, so the event loop
    calls them directly.
    """

    def __init__(self, folder: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.folder = folder
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._next_sequence = 1
        self._used_bytes = 0
        # Payloads that are spooled or being spooled and not yet drained.
        self.pending = 0
        # Sequence numbers reserved but not yet on disk; no later file drains before them.
        self._writing: set[int] = set()

    @classmethod
    def open(cls, folder: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> Spool:
        """Create `folder` when missing, remove partial files left by a crash, and count what is spooled.

        Raises:
            OSError: the folder cannot be created or is not writable.
        """
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"spool folder {folder} is not writable")
        spool = cls(folder, limit_bytes)
        for partial in folder.glob(f"*{_PARTIAL_SUFFIX}"):
            # Written before a crash and never acknowledged: its sender got no 202 and sends it again.
            partial.unlink(missing_ok=True)
        for path in spool.paths():
            spool._used_bytes += path.stat().st_size
            spool.pending += 1
            spool._next_sequence = max(spool._next_sequence, _sequence_of(path) + 1)
        return spool

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def paths(self) -> list[Path]:
        """Return the spooled files in arrival order."""
        return sorted(self.folder.glob(f"*{SUFFIX}"), key=_sequence_of)

    def reserve(self, size: int) -> str:
        """Take `size` bytes of room and return the spool id to write them under, or raise `SpoolFull`."""
        with self._lock:
            if self._used_bytes + size > self.limit_bytes:
                raise SpoolFull(
                    f"the database is unreachable and the spool {self.folder} is full "
                    f"({self._used_bytes} of {self.limit_bytes} bytes used, --spool-limit)"
                )
            self._used_bytes += size
            self.pending += 1
            sequence = self._next_sequence
            self._next_sequence += 1
            self._writing.add(sequence)
        return f"{sequence:012d}-{uuid.uuid4().hex}"

    def release(self, size: int, spool_id: str | None = None) -> None:
        """Return the room of a payload that was drained, or of a reserved one that was never written."""
        with self._lock:
            self._used_bytes -= size
            self.pending -= 1
            if spool_id is not None:
                self._writing.discard(_sequence_of(Path(spool_id)))

    def encode(self, item: Accepted) -> bytes:
        """Return the file contents for `item`."""
        outcome = item.outcome
        document = {
            "version": FORMAT_VERSION,
            "source": item.source,
            "kind": outcome.kind,
            "outcome_source": outcome.source,
            "note": outcome.note,
            "alerts": [alert.to_json() for alert in outcome.alerts],
            "details": outcome.details,
            "received_at": item.inbound.received_at.astimezone(datetime.UTC).isoformat(),
            "headers": kept_headers(item.inbound.headers),
            "body": base64.b64encode(item.inbound.body).decode("ascii"),
            "replay_of": item.replay_of,
        }
        return orjson.dumps(document)

    def write(self, spool_id: str, data: bytes) -> None:
        """Write one encoded payload durably under the spool id that `reserve` returned."""
        final = self.folder / f"{spool_id}{SUFFIX}"
        partial = self.folder / f"{spool_id}{_PARTIAL_SUFFIX}"
        # Owner-only, whatever the umask: a spooled payload contains alert bodies, which may be confidential.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        partial.rename(final)
        _fsync_folder(self.folder)
        with self._lock:
            self._writing.discard(_sequence_of(final))

    def next_entry(self) -> SpoolEntry | None:
        """Return the oldest spooled payload, or None when there is none or an older one is still being written.

        A file that cannot be decoded is renamed to `<name>.bad`, logged and skipped.
        """
        while True:
            with self._lock:
                oldest_writing = min(self._writing, default=None)
            paths = self.paths()
            if not paths or (oldest_writing is not None and _sequence_of(paths[0]) > oldest_writing):
                return None
            path = paths[0]
            try:
                return SpoolEntry(path.stem, path, decode(path.read_bytes()))
            except (ValueError, KeyError, TypeError) as error:
                size = path.stat().st_size
                path.rename(path.with_suffix(".bad"))
                self.release(size)
                log.error("spool file %s cannot be read and is kept as %s: %s", path, path.with_suffix(".bad").name, error)

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a drained payload's file and return its room."""
        size = entry.path.stat().st_size
        entry.path.unlink()
        _fsync_folder(self.folder)
        self.release(size)


def decode(data: bytes) -> Accepted:
    """Return the payload that `Spool.encode` wrote."""
    document = orjson.loads(data)
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"spool file format {document.get('version')!r} is not {FORMAT_VERSION}")
    outcome = Outcome(
        source=document["outcome_source"],
        kind=document["kind"],
        alerts=[Alert.from_json(alert) for alert in document["alerts"]],
        note=document["note"],
        details=document["details"],
    )
    received_at = datetime.datetime.fromisoformat(document["received_at"])
    inbound = Inbound(base64.b64decode(document["body"]), document["headers"], received_at)
    return Accepted(document["source"], inbound, outcome, replay_of=document["replay_of"])


def store_entry(store: Store, entry: SpoolEntry) -> tuple[int, bool]:
    """Store a spooled payload unless the store has it already; return its payload id and whether it was new."""
    with store.write() as connection:
        found = connection.execute(sa.select(payloads.c.id).where(payloads.c.spool_id == entry.spool_id)).scalar()
        if found is not None:
            return found, False
        payload_id = insert_payload(connection, entry.accepted)
        connection.execute(payloads.update().where(payloads.c.id == payload_id).values(spool_id=entry.spool_id))
        return payload_id, True


def _sequence_of(path: Path) -> int:
    head, _, _ = path.stem.partition("-")
    return int(head) if head.isdigit() else 0


def _fsync_folder(folder: Path) -> None:
    """Make a created, renamed or deleted file name in `folder` survive a crash of the machine."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
