"""Alembic environment: runs against the connection vmflow hands it."""

from alembic import context

from vmflow.db.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for the alembic CLI
    raise RuntimeError("run migrations through `vmflow db upgrade`")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
