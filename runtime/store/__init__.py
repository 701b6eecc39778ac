"""The incident store: SQLAlchemy Core tables, Alembic migrations, SQLite or PostgreSQL."""

from runtime.store.store import DATABASE_FILE, Store, StoreError, database_url

__all__ = ["DATABASE_FILE", "Store", "StoreError", "database_url"]
