"""Which database errors start an outage: only an unreachable server, never a deadlock or a timed-out statement.

The PostgreSQL errors are real: two transactions on the machine's server that
lock two rows in opposite orders, and a statement past its `statement_timeout`.
A deadlock used to count as an outage, so one deadlock between an
acknowledgement and the outbox spooled the webhooks and sent degraded pages.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from runtime import incidents as incident_ops
from runtime.daemon import service
from runtime.daemon.outage import DatabaseHealth, is_transient, is_unreachable
from runtime.daemon.service import Daemon
from tests.runtime.conftest import postgres_schema_url  # noqa: F401
from tests.web.conftest import daemon_config, serving


@pytest.fixture
def engine(postgres_schema_url: str) -> Iterator[sa.Engine]:  # noqa: F811
    engine = sa.create_engine(postgres_schema_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pair (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"))
        connection.execute(sa.text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
    yield engine
    engine.dispose()


def deadlock(engine: sa.Engine) -> sa.exc.OperationalError:
    """Run two transactions that lock rows 1 and 2 in opposite orders, and return the error of the one PostgreSQL aborted."""
    both_locked_one = threading.Barrier(2)
    errors: list[BaseException] = []

    def update(first: int, second: int) -> None:
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE pair SET value = value + 1 WHERE id = :id"), {"id": first})
                both_locked_one.wait(timeout=10)
                connection.execute(sa.text("UPDATE pair SET value = value + 1 WHERE id = :id"), {"id": second})
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=update, args=order) for order in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], sa.exc.OperationalError)
    return errors[0]


def test_deadlock_is_transient_and_not_an_outage(engine: sa.Engine) -> None:
    error = deadlock(engine)

    assert error.orig.sqlstate == "40P01"
    assert is_transient(error)
    assert not is_unreachable(error)


def test_statement_timeout_is_neither(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as connection:
        connection.execute(sa.text("SET statement_timeout = 50"))
        connection.execute(sa.text("SELECT pg_sleep(2)"))

    assert raised.value.orig.sqlstate == "57014"
    assert not is_transient(raised.value)
    assert not is_unreachable(raised.value)


def test_refused_connection_is_an_outage() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    with pytest.raises(sa.exc.OperationalError) as raised:
        engine.connect()
    engine.dispose()

    assert is_unreachable(raised.value)
    assert not is_transient(raised.value)


def test_locked_sqlite_file_is_an_outage() -> None:
    assert is_unreachable(sqlite3.OperationalError("database is locked"))
    assert not is_transient(sqlite3.OperationalError("database is locked"))


# ---------------------------------------------------------------- the daemon's handling


@pytest.mark.anyio
async def test_acknowledgement_aborted_by_deadlock_runs_again(
    tmp_path: Path, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    aborted = deadlock(engine)
    real_acknowledge = incident_ops.acknowledge
    calls: list[str] = []

    def acknowledge_once_aborted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        if len(calls) == 1:
            raise aborted
        return real_acknowledge(*args, **kwargs)

    async with serving(daemon_config(tmp_path)) as served:
        served.daemon.health = DatabaseHealth(served.daemon.store)  # type: ignore[arg-type]
        await served.post_alert("DiskFull", {"service": "api"})
        monkeypatch.setattr(incident_ops, "acknowledge", acknowledge_once_aborted)
        with caplog.at_level(logging.WARNING, logger="irules.http"):
            response = await served.client.post("/api/v1/incidents/INC-1/ack", json={"actor": "alice"})
        problem = served.daemon.health.problem

    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "alice"
    assert calls == ["INC-1", "INC-1"]
    assert problem is None
    assert [record.getMessage() for record in caplog.records if record.name == "irules.http"] == [
        "acknowledge_incident: attempt 1 was aborted by the database: deadlock detected"
    ]


@pytest.mark.anyio
async def test_worker_restarts_after_deadlock_without_outage(
    tmp_path: Path, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    aborted = deadlock(engine)
    monkeypatch.setattr(service, "WORKER_RESTART_S", 0.0)
    daemon = Daemon(daemon_config(tmp_path))
    daemon.health = DatabaseHealth(None)  # type: ignore[arg-type]
    runs: list[int] = []

    async def loop(_stop: anyio.Event) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise aborted

    with anyio.fail_after(5):
        await daemon._worker(loop)

    assert runs == [0, 1]
    assert daemon.health.problem is None
