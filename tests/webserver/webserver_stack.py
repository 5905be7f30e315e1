"""Test helpers: the real webserver app on 127.0.0.1:0 in front of a real gateway and manager.

A uniquely named module rather than conftest.py, so tests can import it whatever other
conftest.py files are loaded. The manager is the real one on the given database, with an
agent that speaks the agent protocols over real gRPC without containers (``InteractiveAgent``);
the superadmin ``admin@localhost`` gets a web-login password.
"""

from __future__ import annotations

import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from bai.common import auth
from bai.manager.adapters.db import Database, run_migrations
from bai.manager.adapters.db.accounts import ADMIN_EMAIL, bootstrap_admin
from bai.manager.server import run_manager
from bai.webserver import WebserverConfig, create_app

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS / "gateway"))
sys.path.insert(0, str(_TESTS / "manager"))

from gateway_stack import serve_gateway  # noqa: E402  (test helpers found through sys.path)
from manager_harness import InteractiveAgent, Keys, manager_config  # noqa: E402

__all__ = ["ADMIN_EMAIL", "WebStack", "serve_webserver", "start_web_stack"]


@asynccontextmanager
async def serve_webserver(gateway_url: str, **config: Any) -> AsyncIterator[str]:
    """Serves the webserver app for ``gateway_url``; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(create_app(WebserverConfig(gateway_url=gateway_url, **config)),
                           access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


@dataclass(frozen=True)
class WebStack:
    """manager + protocol agent + gateway + webserver, and the superadmin's credentials."""

    web: str
    """Base URL of the webserver."""
    gateway: str
    """Base URL of the gateway."""
    admin: Keys
    password: str


async def _prepare(db_url: str, password: str) -> Keys:
    admin = Keys(*auth.generate_keypair())
    db = Database(db_url)
    try:
        await run_migrations(db)
        await bootstrap_admin(db, admin.access_key, admin.secret_key, password)
    finally:
        await db.close()
    return admin


@asynccontextmanager
async def start_web_stack(db_url: str, **config: Any) -> AsyncIterator[WebStack]:
    password = "pw-" + secrets.token_urlsafe(9)
    admin = await _prepare(db_url, password)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        agent = await InteractiveAgent("i-web-" + secrets.token_hex(3), running.address,
                                       token).start()
        try:
            async with serve_gateway(running.address, token, execute_wait=5.0) as gateway, \
                    serve_webserver(f"http://{gateway}", **config) as base:
                yield WebStack(web=base, gateway=f"http://{gateway}", admin=admin,
                               password=password)
        finally:
            await agent.stop()
