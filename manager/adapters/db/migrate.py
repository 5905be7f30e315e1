"""Runs the Alembic migrations programmatically on the manager's own engine."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from bai.manager.adapters.db.engine import Database
from sqlalchemy import Connection, text

__all__ = ["HEAD", "alembic_config", "current_revision", "run_migrations"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


HEAD: str = ScriptDirectory.from_config(alembic_config()).get_current_head() or ""
"""The newest revision (read from the migration scripts, so new revisions need no edit here)."""


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two managers starting at once must not migrate concurrently.
        connection.execute(text("SELECT pg_advisory_xact_lock(7013001)"))
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def run_migrations(db: Database) -> None:
    """Upgrades the database to the newest revision (a no-op when it is current)."""
    async with db.engine.begin() as conn:
        before = await conn.run_sync(_current)
        await conn.run_sync(_upgrade)
        after = await conn.run_sync(_current)
    if before != after:
        log.info("database %s migrated from %s to %s", db.url.render_as_string(), before, after)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)
