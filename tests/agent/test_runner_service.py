"""The runner's ``service`` op (apps), over a real Unix socket with a real runner process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bai.agent.runner.client import RunnerClient, RunnerError

RUNNER = Path(__file__).resolve().parents[2] / "agent" / "runner" / "runner.py"


def _spawn_runner(sock: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(RUNNER), "--socket", str(sock)])


@pytest.fixture
def runner_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="bai-rs-", dir="/tmp"))
    proc = _spawn_runner(directory / "r.sock")
    try:
        yield directory
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def _wait(check: object, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_service_starts_once_logs_and_restarts_after_exit(runner_dir: Path) -> None:
    client = RunnerClient(runner_dir / "r.sock")
    await client.wait_ready(10)
    marker = runner_dir / "started"
    argv = ["/bin/sh", "-c", f'echo "run $APP_GREETING" >> {marker}; echo to-log; exec sleep 30']
    first = await client.start_service("demo", argv, {"APP_GREETING": "hi"})
    assert first["ok"] is True and first["started"] is True
    again = await client.start_service("demo", argv)
    assert again == {"ok": True, "pid": first["pid"], "started": False}
    await _wait(lambda: marker.exists() and (runner_dir / "demo.log").read_text() == "to-log\n")
    assert marker.read_text() == "run hi\n"

    os.killpg(first["pid"], signal.SIGKILL)  # the app dies: the next request starts it anew
    await _wait(lambda: not _alive(first["pid"]))
    await asyncio.sleep(0.1)
    third = await client.start_service("demo", argv, {"APP_GREETING": "again"})
    assert third["started"] is True and third["pid"] != first["pid"]
    await _wait(lambda: marker.read_text() == "run hi\nrun again\n")


async def test_service_rejects_bad_requests(runner_dir: Path) -> None:
    client = RunnerClient(runner_dir / "r.sock")
    await client.wait_ready(10)
    with pytest.raises(RunnerError, match="service:"):
        await client.start_service("demo", [])
    with pytest.raises(RunnerError, match="cannot start"):
        await client.start_service("demo", ["/nonexistent/program"])
    assert (await client.ping())["ok"] is True


async def test_runner_kills_its_apps_on_sigterm() -> None:
    sock = Path(tempfile.mkdtemp(prefix="bai-rs-", dir="/tmp")) / "r.sock"
    proc = _spawn_runner(sock)
    client = RunnerClient(sock)
    await client.wait_ready(10)
    reply = await client.start_service("demo", ["sleep", "30"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    await _wait(lambda: not _alive(reply["pid"]))
