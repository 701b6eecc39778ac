"""Fixtures of the cluster tests: the store fixtures of tests/runtime/conftest.py, each test in its own PostgreSQL schema."""

from tests.runtime.conftest import postgres_schema_url, store, store_url  # noqa: F401
