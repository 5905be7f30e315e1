"""Alembic migrations from an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from bai.manager.adapters.db import Database, run_migrations
from bai.manager.adapters.db.migrate import HEAD, current_revision
from bai.manager.adapters.db.tables import Base
from sqlalchemy import inspect


async def test_migrations_create_the_schema_of_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert await current_revision(db) is None
        await run_migrations(db)
        assert await current_revision(db) == HEAD
        await run_migrations(db)  # idempotent
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
        assert {"domains", "projects", "users", "keypairs", "agents", "images", "agent_images",
                "sessions", "kernels", "session_status_history"} <= tables
        assert diff == []
    finally:
        await db.close()


async def test_in_memory_sqlite_keeps_one_database_for_concurrent_work() -> None:
    import asyncio

    from bai.manager.adapters.db import SqlAccountRepository, bootstrap_admin

    db = Database("sqlite+aiosqlite://")
    try:
        await run_migrations(db)
        await bootstrap_admin(db, "AKIAMEMORY", "secret")
        accounts = SqlAccountRepository(db)
        found = await asyncio.gather(*(accounts.get_keypair("AKIAMEMORY") for _ in range(20)))
        assert all(k is not None and k.secret_key == "secret" for k in found)
        assert await current_revision(db) == HEAD
    finally:
        await db.close()
