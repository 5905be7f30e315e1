"""The official client's ``admin`` create/update commands (backend.ai-client 26.9.6) against the
real gateway and manager (SQLite and PostgreSQL), judged by what they print.

The client exits 0 on several failures, so every check reads its output. No containers are
needed: these commands only talk GraphQL.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from bai.manager.server import run_manager
from e2e_util import OFFICIAL_CLIENT
from gateway_stack import serve_gateway
from manager_harness import Keys, ProtocolAgent, manager_config, prepare_db

pytestmark = pytest.mark.official_client


def succeeded(out: str) -> bool:
    """The client's mutation table has an ``ok True`` row."""
    return re.search(r"^ok\s+True$", out, re.M) is not None


@dataclass
class Client:
    endpoint: str
    keys: Keys
    agent_id: str

    async def run(self, *args: str) -> str:
        if not OFFICIAL_CLIENT.exists():
            pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test`")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BACKEND_ENDPOINT=self.endpoint, BACKEND_ENDPOINT_TYPE="api",
                   BACKEND_ACCESS_KEY=self.keys.access_key,
                   BACKEND_SECRET_KEY=self.keys.secret_key)
        # An empty cwd: the client reads .env files upward, which would override env.
        with tempfile.TemporaryDirectory(prefix="bai-client-") as cwd:
            env["XDG_STATE_HOME"] = cwd
            proc = await asyncio.create_subprocess_exec(
                str(OFFICIAL_CLIENT), *args, cwd=cwd, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        assert "Traceback" not in text, text
        return text


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    admin, _ = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        agent = await ProtocolAgent("i-oc-" + secrets.token_hex(3), running.address,
                                    token).start()
        try:
            async with serve_gateway(running.address, token) as addr:
                yield Client(endpoint=f"http://{addr}", keys=admin, agent_id=agent.agent_id)
        finally:
            await agent.stop()


async def test_admin_create_update_commands(client: Client) -> None:
    out = await client.run("admin", "domain", "add", "lab2", "--description", "second lab")
    assert succeeded(out) and re.search(r"^name\s+lab2$", out, re.M), out
    out = await client.run("admin", "domain", "list")
    assert "lab2" in out and "second lab" in out, out

    out = await client.run("admin", "group", "add", "lab2", "team", "-d", "the team")
    assert succeeded(out) and re.search(r"^name\s+team$", out, re.M), out

    out = await client.run("admin", "user", "add", "lab2", "gina@lab2.example", "gina-password",
                           "-g", "team", "-n", "Gina")
    assert succeeded(out) and "gina@lab2.example" in out and "team" in out, out
    out = await client.run("admin", "user", "info", "-e", "gina@lab2.example")
    assert "Gina" in out and "lab2" in out, out

    out = await client.run("admin", "keypair", "add", "gina@lab2.example", "default",
                           "-r", "1200")
    keys = re.search(r"(AKIA[A-Z0-9]{16})", out)
    assert keys is not None and "secret_key" in out.lower().replace(" ", "_"), out
    access_key = keys.group(1)

    out = await client.run("admin", "keypair", "deactivate", access_key)
    assert succeeded(out), out
    listed = await client.run("admin", "keypair", "list", "--is-active", "false")
    assert access_key in listed, listed
    out = await client.run("admin", "keypair", "activate", access_key)
    assert succeeded(out), out

    out = await client.run("admin", "user", "update", "gina@lab2.example", "-n", "Gina G.")
    assert succeeded(out), out
    out = await client.run("admin", "user", "info", "-e", "gina@lab2.example")
    assert "Gina G." in out, out

    # Refusals are printed as failures with the manager's reason.
    out = await client.run("admin", "user", "add", "lab2", "gina@lab2.example", "gina-password",
                           "-g", "team")
    assert not succeeded(out) and re.search(r"^Message\s+ALREADY_EXISTS: user", out, re.M), out
    out = await client.run("admin", "domain", "add", "bad name")
    assert not succeeded(out) and re.search(r"^Message\s+INVALID_NAME", out, re.M), out

    out = await client.run("admin", "user", "delete", "gina@lab2.example")
    assert succeeded(out), out
    out = await client.run("admin", "user", "info", "-e", "gina@lab2.example")
    assert "deleted" in out, out


async def test_admin_lists(client: Client) -> None:
    out = await client.run("admin", "user", "list")
    assert "admin@localhost" in out and "superadmin" in out and "user@localhost" in out, out
    out = await client.run("admin", "keypair", "list")
    assert client.keys.access_key in out and "admin@localhost" in out, out
    out = await client.run("admin", "agent", "list")
    assert client.agent_id in out and "ALIVE" in out, out
