"""``bai vfolder`` sharing, trash, clone, rename, mv, rm and quota commands, run as a user runs
them (subprocesses) against a real manager and storage proxy."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.accounts import create_user
from bai.manager.server import run_manager
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import running_proxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manager"))

from manager_harness import Keys, manager_config, prepare_db


@dataclass
class VCli:
    address: str
    owner: Keys
    bob: Keys
    admin: Keys

    async def run(self, keys: Keys, *args: str) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "BAI_"))}
        env.update(BAI_MANAGER_ADDR=self.address, BACKEND_ACCESS_KEY=keys.access_key,
                   BACKEND_SECRET_KEY=keys.secret_key)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bai.client.cli", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ok(self, keys: Keys, *args: str) -> str:
        code, out, err = await self.run(keys, *args)
        assert code == 0, (args, out, err)
        return out

    async def json(self, keys: Keys, *args: str) -> Any:
        return json.loads(await self.ok(keys, "-o", "json", *args))


@pytest.fixture
async def vcli(tmp_path: Path) -> AsyncIterator[VCli]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}"
    admin, owner = await prepare_db(db_url)
    bob = Keys("AK" + secrets.token_hex(8).upper(), secrets.token_hex(16))
    db = Database(db_url)
    try:
        await create_user(db, email="bob@localhost", access_key=bob.access_key,
                          secret_key=bob.secret_key)
    finally:
        await db.close()
    token = "tok-" + secrets.token_hex(8)
    storage = StorageConfig(service_token=token, listen="127.0.0.1:0",
                            transfer_listen="127.0.0.1:0",
                            volumes=(VolumeConfig("local", "fs", {"path": str(tmp_path / "v")}),))
    async with running_proxy(storage) as proxy:
        config = manager_config(db_url, token, storage_addr=f"127.0.0.1:{proxy.grpc_port}")
        async with run_manager(config) as running:
            yield VCli(running.address, owner, bob, admin)


async def test_share_invite_trash_clone_and_files(vcli: VCli, tmp_path: Path) -> None:
    o, b = vcli.owner, vcli.bob
    await vcli.ok(o, "vfolder", "create", "data", "--cloneable")
    local = tmp_path / "f.txt"
    local.write_text("hello")
    await vcli.ok(o, "vfolder", "upload", "data", str(local), "--dest", "in")

    assert "invited bob@localhost" in await vcli.ok(o, "vfolder", "invite", "data",
                                                    "bob@localhost", "-p", "ro")
    (inv,) = (await vcli.json(b, "vfolder", "invitations"))["invitations"]
    assert inv["vfolderName"] == "data" and inv["permission"] == "FOLDER_PERMISSION_READ_ONLY"
    assert "now shared with you" in await vcli.ok(b, "vfolder", "accept", inv["id"])
    listed = (await vcli.json(b, "vfolder", "list"))["vfolders"]
    assert [(f["name"], f["accessPermission"]) for f in listed] == [
        ("data", "FOLDER_PERMISSION_READ_ONLY")]
    code, _, err = await vcli.run(b, "vfolder", "mkdir", "data", "x")
    assert code == 1 and "read-only" in err
    shared = await vcli.json(o, "vfolder", "share", "data", "bob@localhost", "-p", "rw")
    assert shared == {"shared": ["bob@localhost"], "permission": "rw"}
    await vcli.ok(b, "vfolder", "mkdir", "data", "x")
    shares = (await vcli.json(o, "vfolder", "shares", "data"))["shares"]
    assert [(x["email"], x["permission"]) for x in shares] == [
        ("bob@localhost", "FOLDER_PERMISSION_READ_WRITE")]
    clone = await vcli.json(b, "vfolder", "clone", "data", "bobs-copy")
    assert clone["isOwner"] and clone["name"] == "bobs-copy"
    assert "f.txt" in await vcli.ok(b, "vfolder", "ls", "bobs-copy", "in")

    assert "moved in/f.txt to g.txt" in await vcli.ok(o, "vfolder", "mv", "data", "in/f.txt",
                                                       "g.txt")
    code, _, err = await vcli.run(o, "vfolder", "mv", "data", "g.txt", "../../x")
    assert code == 1 and "error:" in err
    await vcli.ok(o, "vfolder", "rm", "data", "in", "x", "-r")
    files = (await vcli.json(o, "vfolder", "ls", "data"))["files"]
    assert [f["name"] for f in files] == ["g.txt"]

    assert "renamed" in await vcli.ok(o, "vfolder", "rename", "data", "data2")
    assert "deleted" in await vcli.ok(o, "vfolder", "delete", "data2")
    trash = (await vcli.json(o, "vfolder", "trash"))["vfolders"]
    assert [f["name"] for f in trash] == ["data2"]
    await vcli.ok(o, "vfolder", "create", "data2")
    code, _, err = await vcli.run(o, "vfolder", "restore", trash[0]["id"])
    assert code == 1 and "exists" in err
    await vcli.ok(o, "vfolder", "purge", trash[0]["id"])
    assert (await vcli.json(o, "vfolder", "trash"))["vfolders"] == []

    quota = await vcli.json(o, "vfolder", "quota", "data2", "4")
    assert quota["quotaBytes"] == "4"
    code, _, err = await vcli.run(o, "vfolder", "upload", "data2", str(local))
    assert code == 1 and "quota" in err.lower()
    code, _, err = await vcli.run(o, "vfolder", "scope-quota", "user", "bob@localhost",
                                  "--set", "100")
    assert code == 1 and "error:" in err
    scope = await vcli.json(vcli.admin, "vfolder", "scope-quota", "user", "bob@localhost",
                            "--set", "100")
    assert scope["maxBytes"] == "100" and scope["usedBytes"] == "5"


async def test_every_model_command_has_help() -> None:
    cli = VCli("127.0.0.1:1", Keys("", ""), Keys("", ""), Keys("", ""))  # --help needs no server
    for command in ("invite", "invitations", "accept", "reject", "share", "shares", "unshare",
                    "leave",
                    "clone", "trash", "restore", "purge", "rename", "mv", "rm", "mkdir",
                    "update-options", "quota", "scope-quota"):
        out = await cli.ok(cli.owner, "vfolder", command, "--help")
        assert out.startswith("usage: bai vfolder " + command), out
        assert "-o {table,json}" in out
