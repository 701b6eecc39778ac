"""Opening the store, running its migrations, and its transactions.

SQLite is the embedded default: one file in the state folder, in WAL mode with a
busy timeout, written by one writer at a time (a process-wide lock plus
`BEGIN IMMEDIATE`, so a writer never fails half-way on a lock upgrade).
`synchronous=NORMAL` makes every commit survive a crash of the process, which
is what the daemon's 2xx promises; a power loss can lose the last commits
unless `durability="full"` is chosen. PostgreSQL is used when a URL names it.
"""

from __future__ import annotations

import datetime
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event

from runtime.store import schema

log = logging.getLogger("irules.store")

DATABASE_FILE = "irules.db"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_ID = 0x6972756D


class StoreError(Exception):
    """The store cannot be opened or migrated; the message gives the reason and the fix."""


def database_url(state_dir: Path | None = None, url: str | None = None) -> str:
    """Return the SQLAlchemy URL for `--database URL`, or the SQLite file in `--state DIR`."""
    if url:
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    if state_dir is None:
        raise StoreError("no store given: pass --state DIR or --database URL")
    return f"sqlite:///{state_dir / DATABASE_FILE}"


class Store:
    """The database behind the daemon and the CLI, with write and read transactions."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # One writer at a time in this process. SQLite allows one writer per file, so
        # queueing here keeps threads from spinning on the busy timeout.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        # The pool connection that `sqlite_write` keeps checked out, guarded by `_write_lock`.
        self._driver_connection: sa.PoolProxiedConnection | None = None

    @classmethod
    def open(cls, url: str, *, durability: str = "normal", migrate: bool = True) -> Store:
        """Open (and create, for SQLite) the database at `url`, and bring its schema up to date."""
        store = cls.create(url, durability=durability)
        try:
            if migrate:
                store.migrate()
            else:
                with store.engine.connect():
                    pass
        except sa.exc.OperationalError as error:
            store.engine.dispose()
            raise StoreError(f"cannot open the database {store._url()}: {error.orig}") from error
        return store

    @classmethod
    def create(cls, url: str, *, durability: str = "normal") -> Store:
        """Build the store for `url` without connecting, so a daemon can wait for a PostgreSQL server that is down.

        Raises:
            StoreError: the SQLite file's folder cannot be created.
        """
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the state folder {path.parent}: {error.strerror}") from error
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8, **_JSON_CODEC)
            _configure_sqlite(engine, durability)
        else:
            engine = sa.create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **_JSON_CODEC)
        return cls(engine)

    def migrate(self) -> None:
        """Apply every Alembic migration that the database lacks.

        Raises:
            StoreError: the database's schema is at a revision that this irules does not
                know (a newer irules migrated it), or Alembic refused the upgrade otherwise.
        """
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.write() as connection:
            if not self.is_sqlite:
                # Daemons starting together on one PostgreSQL database migrate one after another.
                schema_key = sa.func.hashtext(sa.func.current_schema())
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_ID, schema_key)))
            scripts = ScriptDirectory.from_config(config)
            current = MigrationContext.configure(connection).get_current_revision()
            known = {script.revision for script in scripts.walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(
                    f"the database {self._url()} has schema revision {current}, which this irules does not know "
                    f"(its newest is {scripts.get_current_head()}): a newer irules migrated it. "
                    "Run that version or a newer one on this database"
                )
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as error:
                raise StoreError(f"cannot migrate the database {self._url()}: {error}") from error

    def _url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """Run one write transaction: commit on success, roll back on any exception."""
        if self._write_lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._write_lock, self._immediate() as connection:
            yield connection

    @contextmanager
    def write_if_free(self) -> Iterator[sa.Connection | None]:
        """Run a write transaction when no other thread of this process writes to SQLite now, else yield None.

        This lets the event loop write small transactions itself instead of waiting in a
        worker thread. PostgreSQL always yields None, because its writes wait on the network.
        """
        if self._write_lock is None or not self._write_lock.acquire(blocking=False):
            yield None
            return
        try:
            with self._immediate() as connection:
                yield connection
        finally:
            self._write_lock.release()

    @contextmanager
    def sqlite_write(self, *, wait: bool = True) -> Iterator[sqlite3.Connection | None]:
        """Run one SQLite write transaction on the driver's connection, for the statements on the hot path of ingest.

        It takes the same process-wide lock and `BEGIN IMMEDIATE` as `write`, on a connection
        the store keeps checked out for this, so it skips SQLAlchemy's pool and statement
        compilation. The caller passes values as the driver takes them, converted the way
        the columns' SQLAlchemy types would convert them. With `wait=False` it yields None
        when another thread of this process writes now. After a failure the connection is
        closed, and the next call opens another.
        """
        assert self._write_lock is not None, "sqlite_write needs an SQLite store"
        if not self._write_lock.acquire(blocking=wait):
            yield None
            return
        try:
            if self._driver_connection is None:
                self._driver_connection = self.engine.raw_connection()
                # A commit that grows the WAL past `wal_autocheckpoint` pages runs a checkpoint,
                # which syncs the WAL and the database file. This connection leaves checkpoints
                # to the store's other connections, such as the pipeline's, which commits after
                # every batch of stored alerts. So no webhook's commit runs a checkpoint itself.
                self._driver_connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
            connection = self._driver_connection.driver_connection
            assert isinstance(connection, sqlite3.Connection)
            try:
                connection.execute("BEGIN IMMEDIATE")
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                self._discard_driver_connection(connection)
                raise
        finally:
            self._write_lock.release()

    def _discard_driver_connection(self, connection: sqlite3.Connection) -> None:
        """Roll back what a failed `sqlite_write` left open and close its connection."""
        assert self._driver_connection is not None
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("rollback of a failed ingest transaction failed, so its connection is closed", exc_info=True)
        finally:
            self._driver_connection.invalidate()
            self._driver_connection = None

    @contextmanager
    def _immediate(self) -> Iterator[sa.Connection]:
        """Run one SQLite transaction that takes the write lock at its start, so it never fails on a lock upgrade."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """Run one read transaction on a consistent snapshot."""
        with self.engine.connect() as connection:
            if self.is_sqlite:
                connection.exec_driver_sql("BEGIN")
                try:
                    yield connection
                finally:
                    connection.exec_driver_sql("ROLLBACK")
            else:
                with connection.begin():
                    yield connection

    def next_number(self, connection: sa.Connection, name: str) -> int:
        """Increment the counter `name` and return its new value, inside the caller's transaction."""
        table = schema.sequences
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(table).values(name=name, value=1)
        statement = statement.on_conflict_do_update(index_elements=[table.c.name], set_={"value": table.c.value + 1})
        return connection.execute(statement.returning(table.c.value)).scalar_one()

    def close(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:
                if self._driver_connection is not None:
                    self._driver_connection.close()
                    self._driver_connection = None
        self.engine.dispose()


def json_text(value: Any) -> str:
    """Serialise a value for a JSON column as text, as SQLAlchemy's JSON type would, but faster.

    orjson writes compact JSON. A value it rejects, such as an integer beyond 64 bits or a
    key that is not a string, goes through `json.dumps`, which the JSON type itself uses.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def sqlite_time(moment: datetime.datetime | None) -> str | None:
    """Return the text that `UtcDateTime` stores in SQLite for `moment`: naive UTC with microseconds, or None for None.

    For statements that skip SQLAlchemy's parameter processing on the hot paths.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
    return moment.astimezone(datetime.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# JSON columns are encoded by `json_text` and decoded by orjson, because the pipeline writes
# a few JSON values per alert and orjson is several times faster than the json module.
_JSON_CODEC: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": orjson.loads}


def _configure_sqlite(engine: sa.Engine, durability: str) -> None:
    synchronous = {"normal": "NORMAL", "full": "FULL"}[durability]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Autocommit mode in the driver: the store issues BEGIN and COMMIT itself, so
        # pysqlite never opens or commits a transaction behind its back.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
