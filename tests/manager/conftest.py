"""Fixtures of the manager tests; helpers live in manager_harness.py."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bai.manager.server import run_manager
from manager_harness import Harness, ProtocolAgent, manager_config, prepare_db


@pytest.fixture
async def manager(db_url: str) -> AsyncIterator[Harness]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        harness = Harness(running=running, token=token, admin=admin, user=user, db_url=db_url)
        try:
            yield harness
        finally:
            await harness.close()
            watchdog = asyncio.create_task(_dump_tasks_after(20))
    watchdog.cancel()


async def _dump_tasks_after(seconds: float) -> None:
    """Diagnostics for a teardown that hangs: print every task's stack."""
    await asyncio.sleep(seconds)
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()} ---", file=sys.stderr)
        task.print_stack(file=sys.stderr)


@pytest.fixture
async def agents(manager: Harness) -> AsyncIterator[Callable[..., Awaitable[ProtocolAgent]]]:
    """Starts ProtocolAgents registered with the manager; stops them afterwards."""
    started: list[ProtocolAgent] = []

    async def start(**kw: Any) -> ProtocolAgent:
        agent = await manager.agent(**kw).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop()
