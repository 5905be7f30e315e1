"""``bai admin resource-group`` and ``bai admin fair-share`` as an operator runs them against
the real manager, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest
from bai.client.cli import main
from bai.manager.server import run_manager
from cli_stack import Keys, manager_config, prepare_db


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class RgManager:
    address: str
    admin: Keys
    user: Keys


@pytest.fixture
async def rg_manager(db_url: str) -> AsyncIterator[RgManager]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        yield RgManager(running.address, admin, user)


async def bai(m: RgManager, keys: Keys, *args: str) -> Result:
    """Runs ``bai ARGS`` in-process (a worker thread: main() runs its own event loop), with
    the environment a user would set. The console script itself runs in a subprocess in
    test_help_names_every_action; starting one per call here would take most of the test."""
    env = {"BAI_MANAGER_ADDR": m.address, "BACKEND_ACCESS_KEY": keys.access_key,
           "BACKEND_SECRET_KEY": keys.secret_key}

    def run() -> Result:
        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as exc:  # argparse refusing the command line
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return Result(code, out.getvalue(), err.getvalue())

    return await asyncio.to_thread(run)


async def test_resource_groups_and_weights_from_the_cli(rg_manager: RgManager) -> None:
    m, root = rg_manager, rg_manager.admin
    made = await bai(m, root, "-o", "json", "admin", "resource-group", "create", "gpu",
                     "--scheduler", "fair-share", "--agent-selector", "concentrated",
                     "--scheduler-opts", '{"window_seconds": 3600}', "--allow-domain", "default",
                     "-d", "A100 nodes")
    assert made.code == 0, made.err
    group = json.loads(made.out)
    assert (group["name"], group["scheduler"], group["agentSelector"], group["allowedDomains"],
            group["schedulerOptions"], group["description"]) == (
        "gpu", "fair-share", "concentrated", ["default"], {"window_seconds": 3600}, "A100 nodes")

    listed = await bai(m, root, "admin", "resource-group", "list")
    header, *rows = listed.out.splitlines()
    assert header.split() == ["NAME", "ACTIVE", "SCHEDULER", "SELECTOR", "DOMAINS", "PROJECTS",
                              "AGENTS", "PENDING"]
    assert [r.split() for r in rows if r.strip() and not r.startswith("─")] == [
        ["default", "yes", "fifo", "dispersed", "*", "*", "0", "0"],
        ["gpu", "yes", "fair-share", "concentrated", "default", "*", "0", "0"]]

    updated = await bai(m, root, "admin", "resource-group", "update", "gpu", "--active", "no",
                        "--scheduler", "drf", "--allowed-domains", "")
    assert updated.code == 0, updated.err
    assert updated.out.startswith('resource group "gpu" updated')
    info = json.loads((await bai(m, root, "-o", "json", "admin", "resource-group", "info",
                                 "gpu")).out)
    assert (info["isActive"], info["scheduler"], info["allowedDomains"]) == (False, "drf", [])
    table = (await bai(m, root, "admin", "resource-group", "info", "gpu")).out
    assert "* (every domain)" in table and '{"window_seconds": 3600}' in table, table

    bad = await bai(m, root, "admin", "resource-group", "update", "gpu", "--scheduler", "sjf")
    assert bad.code == 1 and bad.err.strip() == (
        "error: unknown scheduler 'sjf'; installed (backendai_scheduler_v10): drf, fair-share, "
        "fifo, lifo (UNKNOWN_SCHEDULER)")
    bad = await bai(m, root, "admin", "resource-group", "create", "x", "--scheduler-opts", "[1]")
    assert bad.code == 2 and "must be a JSON object" in bad.err
    denied = await bai(m, m.user, "admin", "resource-group", "delete", "gpu")
    assert denied.code == 1 and denied.err.strip().endswith("(PERMISSION_DENIED)")

    put = await bai(m, root, "admin", "fair-share", "set", "user", "User@localhost", "2.50")
    assert put.code == 0 and put.out.strip() == (
        "fair-share weight of user user@localhost is now 2.5")
    await bai(m, root, "admin", "fair-share", "set", "project", "default/default", "3")
    weights = json.loads((await bai(m, root, "-o", "json", "admin", "fair-share", "list")).out)
    assert weights == {"weights": [
        {"scope": "project", "subject": "default/default", "weight": "3"},
        {"scope": "user", "subject": "user@localhost", "weight": "2.5"}], "totalCount": 2}
    bad = await bai(m, root, "admin", "fair-share", "set", "user", "user@localhost", "0")
    assert bad.code == 1 and bad.err.strip().endswith("(INVALID_WEIGHT)")

    deleted = await bai(m, root, "admin", "resource-group", "delete", "gpu")
    assert deleted.code == 0 and deleted.out.strip() == 'resource group "gpu" deleted'
    gone = await bai(m, root, "admin", "resource-group", "info", "gpu")
    assert gone.code == 1 and gone.err.strip() == (
        "error: resource group 'gpu' not found (RESOURCE_GROUP_NOT_FOUND)")


async def test_help_names_every_action() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bai.client.cli", "admin", "resource-group", "--help",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0
    for action in ("list", "info", "create", "update", "delete", "agents"):
        assert action in text
