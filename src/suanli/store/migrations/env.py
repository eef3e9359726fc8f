"""Alembic environment: the connection is handed in by ``suanli.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from suanli.store.tables import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through suanli.store.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
