"""Alembic environment: migrations always run on a connection that the store hands over."""

from alembic import context

from runtime.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through runtime.store.Store.migrate(), which passes the connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
