"""Alembic environment: runs on the connection that bai.manager.adapters.db.migrate hands in."""

from __future__ import annotations

from alembic import context
from bai.manager.adapters.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through bai.manager.adapters.db.migrate.run_migrations "
        "(the manager does this at serve and bootstrap)"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
