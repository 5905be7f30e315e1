"""The kernel runner, driven through its client over a real Unix socket (no mocks)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bai.agent.runner.client import RunnerBusyError, RunnerClient, RunnerError

RUNNER_DIR = Path(__file__).resolve().parents[2] / "agent" / "runner"
RUNNER = RUNNER_DIR / "runner.py"
IMAGE = "bai/python:3.11-debian12"

Event = dict[str, Any]


@pytest.fixture(scope="module")
def runner_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One runner for the module: tests leave it idle when they end."""
    sock = tmp_path_factory.mktemp("runner") / "r.sock"
    proc = subprocess.Popen([sys.executable, str(RUNNER), "--socket", str(sock)])
    try:
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not sock.exists(), "the runner removes its socket on SIGTERM"


@pytest.fixture
async def client(runner_socket: Path) -> RunnerClient:
    c = RunnerClient(runner_socket)
    await c.wait_ready(10)
    return c


async def run(
    c: RunnerClient, code: str, mode: str = "query", limit: float | None = None
) -> list[Event]:
    return [event async for event in c.execute(mode, code, limit)]


def text(events: list[Event], stream: str) -> str:
    return "".join(e["data"] for e in events if e.get("stream") == stream)


def finished(events: list[Event]) -> Event:
    assert events[-1].get("finished") is True
    assert sum(1 for e in events if e.get("finished")) == 1
    return events[-1]


async def first_event(it: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(anext(it), 5)


async def read_stdout_until(it: AsyncIterator[Event], expected: str) -> None:
    """Consume events until the stdout seen so far is ``expected`` (writes may be split)."""
    seen = ""
    while seen != expected:
        event = await first_event(it)
        assert event.get("stream") == "stdout", event
        seen += event["data"]


async def raw_request(sock: Path, payload: bytes) -> list[Event]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(payload)
    await writer.drain()
    lines = [json.loads(line) async for line in reader]
    writer.close()
    return lines


async def test_ping(client: RunnerClient) -> None:
    reply = await client.ping()
    assert reply["ok"] is True
    assert reply["version"] == 1
    assert isinstance(reply["pid"], int)


async def test_state_survives_between_execs(client: RunnerClient) -> None:
    assert finished(await run(client, "x = 20"))["exit_code"] == 0
    events = await run(client, "print(x + 22)")
    assert text(events, "stdout") == "42\n"
    assert finished(events) == {"finished": True, "exit_code": 0, "timed_out": False}


async def test_last_expression_not_echoed(client: RunnerClient) -> None:
    events = await run(client, "1 + 1")
    assert events == [{"finished": True, "exit_code": 0, "timed_out": False}]


async def test_stdout_and_stderr_are_separate(client: RunnerClient) -> None:
    events = await run(client, "import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert text(events, "stdout") == "out\n"
    assert text(events, "stderr") == "err\n"


async def test_exception_reported_and_namespace_survives(client: RunnerClient) -> None:
    await run(client, "kept = 'yes'")
    events = await run(client, "def f():\n    raise ValueError('boom')\nf()")
    assert finished(events)["exit_code"] == 1
    assert text(events, "exception") == "ValueError: boom"
    tb = text(events, "stderr")
    assert tb.startswith("Traceback (most recent call last):\n")
    assert "raise ValueError('boom')" in tb and tb.endswith("ValueError: boom\n")
    assert "worker.py" not in tb, "runner frames are hidden"
    assert text(await run(client, "print(kept)"), "stdout") == "yes\n"


async def test_syntax_error(client: RunnerClient) -> None:
    events = await run(client, "print(")
    assert finished(events)["exit_code"] == 1
    assert text(events, "exception").startswith("SyntaxError: ")


async def test_subprocess_output_captured(client: RunnerClient) -> None:
    events = await run(client, "import os\nos.system('echo sub; echo suberr >&2')")
    assert text(events, "stdout") == "sub\n"
    assert text(events, "stderr") == "suberr\n"


async def test_sys_exit_sets_exit_code(client: RunnerClient) -> None:
    assert finished(await run(client, "import sys; sys.exit(4)"))["exit_code"] == 4


async def test_batch_exit_code_and_output(client: RunnerClient) -> None:
    events = await run(client, "echo hi; echo oops >&2; exit 3", mode="batch")
    assert text(events, "stdout") == "hi\n"
    assert text(events, "stderr") == "oops\n"
    assert finished(events) == {"finished": True, "exit_code": 3, "timed_out": False}


async def test_query_timeout_interrupts(client: RunnerClient) -> None:
    await run(client, "survivor = 1")
    start = time.monotonic()
    events = await run(client, "while True:\n    pass", limit=1)
    assert time.monotonic() - start < 2.5
    end = finished(events)
    assert end["timed_out"] is True and end["exit_code"] != 0
    assert text(events, "exception") == "KeyboardInterrupt"
    # SIGINT was enough: the namespace is still there.
    assert text(await run(client, "print(survivor)"), "stdout") == "1\n"


async def test_query_timeout_kills_stubborn_code(client: RunnerClient) -> None:
    await run(client, "doomed = 1")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    events = await run(client, code, limit=0.5)
    end = finished(events)
    assert end["timed_out"] is True and end["exit_code"] == 137
    assert "namespace is lost" in text(events, "stderr")
    # The runner serves on with a fresh interpreter.
    events = await run(client, "print('doomed' in globals())")
    assert text(events, "stdout") == "False\n"


async def test_batch_timeout(client: RunnerClient) -> None:
    start = time.monotonic()
    events = await run(client, "sleep 30", mode="batch", limit=1)
    assert time.monotonic() - start < 2.5
    end = finished(events)
    assert end["timed_out"] is True and end["exit_code"] == 128 + signal.SIGTERM


async def test_interrupt_running_code(client: RunnerClient) -> None:
    assert await client.interrupt() is False, "nothing runs yet"
    it = client.execute("query", "import time\nprint('started')\ntime.sleep(30)", None)
    await read_stdout_until(it, "started\n")
    assert await client.interrupt() is True
    events = [event async for event in it]
    assert finished(events)["exit_code"] == 1
    assert text(events, "exception") == "KeyboardInterrupt"


async def test_interrupt_batch(client: RunnerClient) -> None:
    it = client.execute("batch", "echo started; sleep 30", None)
    await read_stdout_until(it, "started\n")
    assert await client.interrupt() is True
    events = [event async for event in it]
    assert finished(events)["exit_code"] == 128 + signal.SIGINT


async def test_input_round_trip(client: RunnerClient) -> None:
    assert await client.send_input("nobody asked") is False
    it = client.execute("query", "name = input('who? ')\nprint('hello', name)", None)
    assert await first_event(it) == {"waiting_input": True, "prompt": "who? "}
    assert await client.send_input("bai") is True
    events = [event async for event in it]
    assert text(events, "stdout") == "hello bai\n"
    assert finished(events)["exit_code"] == 0


async def test_busy_rejection(client: RunnerClient) -> None:
    it = client.execute("query", "import time\nprint('go')\ntime.sleep(30)", None)
    await read_stdout_until(it, "go\n")
    with pytest.raises(RunnerBusyError):
        await run(client, "print(1)")
    assert await client.interrupt() is True
    assert finished([event async for event in it])["exit_code"] == 1


async def test_malformed_requests(client: RunnerClient, runner_socket: Path) -> None:
    for payload in (b"this is not json\n", b"[1, 2]\n", b'{"op": "fly"}\n', b"\n"):
        replies = await raw_request(runner_socket, payload)
        assert len(replies) == 1 and "error" in replies[0], payload
    with pytest.raises(RunnerError):
        await run(client, "print(1)", mode="interactive")
    with pytest.raises(RunnerError):
        await run(client, "print(1)", limit=-1)
    assert (await client.ping())["ok"] is True


async def test_output_streams_before_the_run_ends(client: RunnerClient) -> None:
    start = time.monotonic()
    it = client.execute(
        "query", "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')", None
    )
    await read_stdout_until(it, "first\n")
    assert time.monotonic() - start < 1.0
    events = [event async for event in it]
    assert text(events, "stdout") == "second\n"
    assert time.monotonic() - start >= 1.5


async def test_worker_death_is_reported_and_recovered(client: RunnerClient) -> None:
    events = await run(client, "import os\nprint('bye', flush=True)\nos._exit(3)")
    assert text(events, "stdout") == "bye\n"
    assert finished(events)["exit_code"] == 3
    assert "namespace is lost" in text(events, "stderr")
    assert text(await run(client, "print(6 * 7)"), "stdout") == "42\n"


@pytest.mark.docker
async def test_runner_in_container(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    sock_dir.chmod(0o777)  # the runner runs as uid 1000 inside
    name = f"bai-runner-test-{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(
        subprocess.run,
        [
            "docker", "run", "-d", "--rm", "--name", name, "--network", "none",
            "-v", f"{RUNNER_DIR}:/opt/bai-runner:ro", "-v", f"{sock_dir}:/run/bai",
            "--user", "1000:1000", IMAGE,
            "python3", "/opt/bai-runner/runner.py", "--socket", "/run/bai/runner.sock",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        client = RunnerClient(sock_dir / "runner.sock")
        assert (await client.wait_ready(20))["pid"] == 1, "the runner is the container's init"
        assert finished(await run(client, "x = 20"))["exit_code"] == 0
        assert text(await run(client, "print(x + 22)"), "stdout") == "42\n"
        events = await run(client, "id -u; pwd", mode="batch")
        assert text(events, "stdout") == "1000\n/home/work\n"
        # As PID 1 it still stops on SIGTERM, and removes its socket.
        stop = ["docker", "stop", "-t", "5", name]
        await asyncio.to_thread(subprocess.run, stop, check=True, capture_output=True)
        assert not (sock_dir / "runner.sock").exists()
    finally:
        remove = ["docker", "rm", "-f", name]
        await asyncio.to_thread(subprocess.run, remove, capture_output=True)
