"""Store fixtures: every store test runs on a fresh SQLite file and on the machine's PostgreSQL.

PostgreSQL tests get a schema of their own (dropped afterwards), so they never see
each other's rows. Set IRULES_TEST_POSTGRES to another URL to use another server;
when none responds, the PostgreSQL variants fail rather than skip, because the
store promises to work on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.store import Store, database_url

POSTGRES_URL = os.environ.get("IRULES_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """Return a PostgreSQL URL whose search path is a new, empty schema."""
    schema = f"irules_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield database_url(tmp_path / "state")
    else:
        yield request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
