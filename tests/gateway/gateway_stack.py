"""Test helpers: the real gateway app served by uvicorn on 127.0.0.1, and a real manager.

A uniquely named module rather than conftest.py, so test modules can import from it whatever
other conftest.py files are loaded. The manager is the real one (``run_manager``: servicers,
interceptors, domain, SQLite) with an agent that speaks the agent protocols over real gRPC
without containers (the manager tests' ``ProtocolAgent``); the Docker-backed stack is
exercised by tests/e2e.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from bai.gateway.app import create_app
from bai.gateway.config import GatewayConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manager"))

from bai.manager.server import run_manager
from manager_harness import InteractiveAgent, Keys, manager_config, prepare_db

SERVICE_TOKEN = "gateway-test-token"


@asynccontextmanager
async def serve_gateway(
    manager_addr: str, service_token: str = SERVICE_TOKEN, **config: float
) -> AsyncIterator[str]:
    """Serves the gateway for ``manager_addr``; yields its ``host:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(
        GatewayConfig(manager_addr=manager_addr, service_token=service_token, **config)
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="on")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True)
class Stack:
    """A real manager with one registered agent, and the gateway in front of it."""

    gateway: str
    """host:port of the gateway."""
    manager: str
    """host:port of the manager."""
    user: Keys
    agent_id: str


@asynccontextmanager
async def start_stack(db_url: str) -> AsyncIterator[Stack]:
    """A real manager on ``db_url`` with one InteractiveAgent, and a gateway in front."""
    _, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        agent_id = "i-gw-" + secrets.token_hex(3)
        agent = await InteractiveAgent(agent_id, running.address, token).start()
        try:
            async with serve_gateway(running.address, token, execute_wait=5.0) as addr:
                yield Stack(gateway=addr, manager=running.address, user=user, agent_id=agent_id)
        finally:
            await agent.stop()
