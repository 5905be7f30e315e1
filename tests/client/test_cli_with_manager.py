"""The ``bai`` CLI as a user runs it (a subprocess) against the real manager."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass

from cli_stack import Manager


@dataclass
class Result:
    code: int
    out: str
    err: str


async def bai(manager: Manager, *args: str, stdin: str = "") -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "BAI_"))}
    env.update(
        BAI_MANAGER_ADDR=manager.address,
        BACKEND_ACCESS_KEY=manager.user.access_key,
        BACKEND_SECRET_KEY=manager.user.secret_key,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bai.client.cli", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def _name() -> str:
    return "cli-" + uuid.uuid4().hex[:8]


async def test_session_lifecycle(manager: Manager) -> None:
    name = _name()
    created = await bai(
        manager, "session", "create", "-n", name, "-r", "cpu=1", "-r", "mem=256m", "-e", "A=B"
    )
    assert created.code == 0, created.err
    assert created.out.startswith(f"Session {name} (") and created.out.rstrip().endswith(
        "created: RUNNING"
    )
    listed = await bai(manager, "session", "list")
    header, *rows = listed.out.splitlines()
    assert header.split()[:3] == ["NAME", "ID", "STATE"]
    assert any(row.split()[0] == name and "RUNNING" in row for row in rows)
    info = json.loads((await bai(manager, "-o", "json", "session", "info", name)).out)
    assert info["name"] == name and info["status"]["state"] == "STATE_RUNNING"
    assert info["spec"]["environ"] == {"A": "B"}
    table = (await bai(manager, "session", "info", name)).out
    assert "RUNNING" in table and manager.agent_id in table
    logs = await bai(manager, "session", "logs", name)
    assert (logs.code, logs.out) == (0, "line 1\nline 2\n")
    destroyed = await bai(manager, "session", "destroy", name)
    assert destroyed.code == 0 and "destroyed" in destroyed.out
    everything = json.loads((await bai(manager, "session", "list", "--all", "-o", "json")).out)
    assert name in [s["name"] for s in everything["sessions"]]


async def test_run_streams_output_and_exits_with_the_codes_status(manager: Manager) -> None:
    result = await bai(manager, "run", "count")
    assert (result.code, result.out, result.err) == (7, "0\n1\n2\n", "done\n")
    summary = json.loads((await bai(manager, "run", "print(1)", "-o", "json")).out)
    assert summary["created"] and summary["destroyed"]
    assert summary["console"] == [["stdout", "ran print(1)\n"]]
    gone = json.loads(
        (await bai(manager, "-o", "json", "session", "info", summary["sessionId"])).out
    )
    assert gone["status"]["state"] in ("STATE_TERMINATING", "STATE_TERMINATED")


async def test_run_answers_input_from_stdin_and_keeps_reused_sessions(manager: Manager) -> None:
    name = _name()
    assert (await bai(manager, "session", "create", "-n", name)).code == 0
    result = await bai(manager, "run", "ask", "--session", name, stdin="carol\n")
    assert (result.code, result.out) == (0, "before\nname? hello carol\n")
    kept = json.loads((await bai(manager, "-o", "json", "session", "info", name)).out)
    assert kept["status"]["state"] == "STATE_RUNNING"  # reused, so not destroyed
    await bai(manager, "session", "destroy", name)


async def test_errors_and_images(manager: Manager) -> None:
    missing = await bai(manager, "session", "info", "no-such-session")
    assert missing.code == 1 and missing.out == ""
    assert missing.err.startswith("error: ") and missing.err.rstrip().endswith(
        "(SESSION_NOT_FOUND)"
    )
    images = await bai(manager, "image", "list")
    assert images.code == 0 and "bai/python:3.11-debian12" in images.out
    assert manager.agent_id in images.out
