"""The manager database: SQLAlchemy 2 async models, Alembic migrations, repositories."""

from bai.manager.adapters.db.accounts import SqlAccountRepository, bootstrap_admin
from bai.manager.adapters.db.agents import SqlAgentRepository
from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.migrate import run_migrations
from bai.manager.adapters.db.sessions import SqlSessionRepository

__all__ = [
    "Database",
    "SqlAccountRepository",
    "SqlAgentRepository",
    "SqlSessionRepository",
    "bootstrap_admin",
    "run_migrations",
]
