"""CLI test helpers: a real manager (``run_manager``) with one protocol agent.

(A uniquely named module rather than conftest.py, so test modules can import from it.)"""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manager"))

from bai.manager.server import run_manager
from manager_harness import InteractiveAgent, Keys, manager_config, prepare_db


@dataclass(frozen=True)
class Manager:
    address: str
    user: Keys
    agent_id: str


@asynccontextmanager
async def start_manager(db_url: str) -> AsyncIterator[Manager]:
    _, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        agent_id = "i-cli-" + secrets.token_hex(3)
        agent = await InteractiveAgent(agent_id, running.address, token).start()
        try:
            yield Manager(address=running.address, user=user, agent_id=agent_id)
        finally:
            await agent.stop()
