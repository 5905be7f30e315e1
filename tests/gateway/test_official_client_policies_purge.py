"""The official client (backend.ai-client 26.9.6) purging a user and managing user resource
policies against the real gateway and manager (SQLite and PostgreSQL), judged by its output.

``backend.ai admin user purge`` is a CLI command; user resource policies have no legacy CLI
command (the client's v2 CLI talks REST v2), so they are driven through the client's own SDK
functions (``Session().UserResourcePolicy``, and ``User.list`` / ``User.detail_by_uuid`` for the
unpaged ``users`` and ``user_from_uuid`` queries), which send the GraphQL this gateway answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from bai.manager.server import run_manager
from e2e_util import OFFICIAL_CLIENT
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db

pytestmark = pytest.mark.official_client

# Runs inside the client's own interpreter; prints one JSON line per SDK call.
SDK_SCRIPT = """
import json
from ai.backend.client.session import Session
with Session() as s:
    P = s.UserResourcePolicy
    print(json.dumps(P.create("silver", max_vfolder_count=3, max_quota_scope_size=5 << 30,
                              max_session_count_per_model_session=2,
                              max_customized_image_count=1)))
    print(json.dumps(P.list()))
    print(json.dumps(P.update("silver", max_vfolder_count=9)))
    print(json.dumps(P("silver").get_info()))
    print(json.dumps(P("silver").delete()))
    print(json.dumps(P("silver").delete()))
    users = s.User.list()
    print(json.dumps(users, default=str))
    admin = next(u for u in users if u["email"] == "admin@localhost")
    print(json.dumps(s.User.detail_by_uuid(admin["uuid"]), default=str))
"""


def succeeded(out: str) -> bool:
    """The client's mutation table has an ``ok True`` row."""
    return re.search(r"^ok\s+True$", out, re.M) is not None


@dataclass
class Client:
    endpoint: str
    keys: Keys

    def env(self, home: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BACKEND_ENDPOINT=self.endpoint, BACKEND_ENDPOINT_TYPE="api",
                   BACKEND_ACCESS_KEY=self.keys.access_key,
                   BACKEND_SECRET_KEY=self.keys.secret_key, XDG_STATE_HOME=home)
        return env

    async def run(self, program: str, *args: str, stdin: str = "") -> str:
        if not OFFICIAL_CLIENT.exists():
            pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test`")
        # An empty cwd: the client reads .env files upward, which would override env.
        with tempfile.TemporaryDirectory(prefix="bai-client-") as cwd:
            proc = await asyncio.create_subprocess_exec(
                program, *args, cwd=cwd, env=self.env(cwd), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=120)
        text = out.decode()
        assert "Traceback" not in text, text
        return text

    async def cli(self, *args: str, stdin: str = "") -> str:
        return await self.run(str(OFFICIAL_CLIENT), *args, stdin=stdin)

    async def sdk(self, script: str) -> list[Any]:
        python = OFFICIAL_CLIENT.parent / "python"
        out = await self.run(str(python), "-c", script)
        return [json.loads(line) for line in out.splitlines() if line.startswith(("{", "["))]


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Client]:
    admin, _ = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        async with serve_gateway(running.address, token) as addr:
            yield Client(endpoint=f"http://{addr}", keys=admin)


async def test_user_purge_command(client: Client) -> None:
    out = await client.cli("admin", "user", "add", "default", "quinn@example.com",
                           "quinn-password")
    assert succeeded(out), out
    out = await client.cli("admin", "user", "purge", "quinn@example.com", stdin="y\n")
    assert succeeded(out) and "quinn@example.com" in out, out
    out = await client.cli("admin", "user", "info", "-e", "quinn@example.com")
    assert "quinn@example.com" not in out, out
    # Purging oneself is refused with the manager's reason.
    out = await client.cli("admin", "user", "purge", "admin@localhost", stdin="y\n")
    assert not succeeded(out) and re.search(r"^Message\s+SELF_DELETE", out, re.M), out


async def test_user_resource_policy_sdk(client: Client) -> None:
    created, listed, updated, info, deleted, again, users, admin = await client.sdk(SDK_SCRIPT)
    assert created == {"ok": True, "msg": "success"}
    assert [p["name"] for p in listed] == ["default", "silver"]
    assert listed[1] == {"name": "silver", "max_vfolder_count": 3,
                         "max_quota_scope_size": 5 << 30,
                         "max_session_count_per_model_session": 2,
                         "max_customized_image_count": 1}
    assert updated == {"ok": True}
    assert info["max_vfolder_count"] == 9 and info["max_quota_scope_size"] == 5 << 30
    assert deleted == {"ok": True, "msg": "success"}
    assert again["ok"] is False and again["msg"].startswith("RESOURCE_POLICY_NOT_FOUND:")
    # The SDK's unpaged user queries (``users``, ``user_from_uuid``).
    assert sorted(u["email"] for u in users) == ["admin@localhost", "user@localhost"]
    assert admin["email"] == "admin@localhost" and admin["role"] == "superadmin"
    assert admin["groups"] == [{"id": admin["groups"][0]["id"], "name": "default"}]
