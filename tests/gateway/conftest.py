"""Fixtures of the gateway tests; helpers live in gateway_stack.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from gateway_stack import Stack, serve_gateway, start_stack


@pytest.fixture(scope="session")
def gateway_server() -> Callable[..., AbstractAsyncContextManager[str]]:
    """``async with gateway_server(manager_addr, **config) as addr``: a served gateway."""
    return serve_gateway


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A real manager (SQLite) with one protocol agent, and the gateway in front of it."""
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('gw') / 'manager.db'}"
    async with start_stack(db_url) as running:
        yield running
