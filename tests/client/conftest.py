"""Fixtures of the CLI tests; helpers live in cli_stack.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cli_stack import Manager, start_manager


@pytest.fixture(scope="module")
async def manager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Manager]:
    """A real manager (SQLite) with one protocol agent."""
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('cli') / 'manager.db'}"
    async with start_manager(db_url) as running:
        yield running
