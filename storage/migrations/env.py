"""Alembic environment: migrations always run on a connection handed over by :mod:`storage.migrate`."""

from alembic import context
from sqlmodel import SQLModel

import storage.records  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `aios db upgrade`, which connects to AIOS_DATABASE_URL")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
