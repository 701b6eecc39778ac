"""A private PostgreSQL server for outage tests, which stop and start it at will.

The machine's PostgreSQL serves other tests, so it is never stopped. This
server runs from the installed binaries as the `postgres` user (initdb rejects
root) in a temporary folder that user owns, on a free 127.0.0.1 port, with
fsync off because its data is thrown away. One server serves the session;
each test gets a database of its own and finds the server running.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.runtime.daemon_process import free_port
from tests.runtime.fakes import fake_saas  # noqa: F401 (a fixture)

PG_TIMEOUT_S = 60


class PrivatePostgres:
    """One PostgreSQL server in a temporary folder, started and stopped with `pg_ctl`."""

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not candidates:
            pytest.fail("no PostgreSQL binaries in /usr/lib/postgresql/*/bin; install the postgresql package")
        self.bin = Path(candidates[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="irules-outage-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.running = False

    def _run(self, *arguments: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *arguments],
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, f"{arguments[0]} failed with status {result.returncode}:\n{result.stdout}{result.stderr}"

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start"
        )
        self.running = True

    def stop(self) -> None:
        """Stop the server at once, ending every connection, as a crash or a failover would."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"outage_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return name


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running:
            server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def postgres(private_postgres: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """Return the private server, running, and start it again after a test that left it stopped."""
    if not private_postgres.running:
        private_postgres.start()
    yield private_postgres
    if not private_postgres.running:
        private_postgres.start()


@pytest.fixture
def database_url(postgres: PrivatePostgres) -> str:
    """Return the URL of a new, empty database on the private server."""
    return postgres.url(postgres.create_database())
