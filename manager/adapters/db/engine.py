"""The async engine and transaction helpers for SQLite (aiosqlite) and PostgreSQL (psycopg).

SQLite: writes run in ``BEGIN IMMEDIATE`` (one writer at a time, waiting up to busy_timeout),
reads in a deferred ``BEGIN`` that never writes; WAL lets reads run beside a writer. An in-memory
database (``sqlite+aiosqlite://``) lives on one pooled connection, so transactions queue for it.
PostgreSQL: READ COMMITTED, with row locks (``FOR UPDATE``) where a write depends on a read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool

__all__ = ["Database"]

log = logging.getLogger(__name__)
_READONLY = "bai_readonly"

PG_POOL_SIZE = 40
"""PostgreSQL connections a process keeps open: the lifecycle engine's handlers (32 by default)
plus RPCs in flight beside them. Opened lazily, so an idle process holds few."""


class Database:
    """One engine plus ``write()`` / ``read()`` transaction scopes."""

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        """``pool_size``: connections kept open (default: :data:`PG_POOL_SIZE` on PostgreSQL,
        10 on SQLite)."""
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: AsyncEngine = create_async_engine(self.url, **self._engine_args(pool_size))
        if self.is_sqlite:
            self._install_sqlite_hooks()
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def _engine_args(self, pool_size: int | None) -> dict[str, Any]:
        if not self.is_sqlite:
            # Overflow connections are closed as soon as they are returned: a pool smaller than
            # the process's steady concurrency opens and closes a PostgreSQL backend (a fork on
            # the server) per transaction under load, so the kept size covers it and the
            # overflow only absorbs bursts.
            kept = PG_POOL_SIZE if pool_size is None else pool_size
            return {"pool_size": kept, "max_overflow": kept // 2, "pool_pre_ping": True}
        pool_size = 10 if pool_size is None else pool_size
        database = self.url.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            # One connection holds the whole in-memory database; transactions queue for it.
            return {"poolclass": AsyncAdaptedQueuePool, "pool_size": 1, "max_overflow": 0,
                    "pool_timeout": 60}
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return {"pool_size": pool_size, "max_overflow": pool_size, "connect_args": {"timeout": 30}}

    def _install_sqlite_hooks(self) -> None:
        memory = (self.url.database or ":memory:") == ":memory:"

        @event.listens_for(self.engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(self.engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            readonly = conn.get_execution_options().get(_READONLY, False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-write transaction, committed on success, rolled back on error."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (must not write)."""
        async with self._sessions() as session:
            await session.connection(execution_options={_READONLY: True})
            yield session
            await session.commit()  # nothing to commit; unlike rollback, keeps objects loaded

    async def close(self) -> None:
        await self.engine.dispose()
