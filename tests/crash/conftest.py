"""Fixtures of the crash matrix: the PostgreSQL schema per test comes from the runtime tests."""

from tests.runtime.conftest import postgres_schema_url  # noqa: F401
