"""Store fixtures for triage tests: the same SQLite and PostgreSQL stores as the runtime tests use."""

from tests.runtime.conftest import postgres_schema_url, store, store_url

__all__ = ["postgres_schema_url", "store", "store_url"]
