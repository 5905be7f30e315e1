"""The runner's bridged apps: a service definition's command, an app on a TCP port, and the
Unix socket the runner relays to it (a real runner process, real sockets, no Docker)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bai.agent.runner.client import RunnerClient, RunnerError

RUNNER = Path(__file__).resolve().parents[2] / "agent" / "runner" / "runner.py"
# A tiny HTTP app: waits a moment before listening, so the bridge must wait for it too.
APP = """
import http.server, os, sys, time
time.sleep(float(sys.argv[2]))
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello {os.environ['GREETING']} on {os.environ['APP_PORT']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hello).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def runner_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="bai-rb-", dir="/tmp"))
    proc = subprocess.Popen([sys.executable, str(RUNNER), "--socket", str(directory / "r.sock")])
    try:
        yield directory
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        shutil.rmtree(directory, ignore_errors=True)


def _http_get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


async def _until(check: object, within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_service_def_app_is_bridged_once_it_listens(runner_dir: Path) -> None:
    client = RunnerClient(runner_dir / "r.sock")
    await client.wait_ready(10)
    (runner_dir / "app.py").write_text(APP)
    service_def = runner_dir / "hello.json"
    service_def.write_text(json.dumps({
        "command": ["{runtime_path}", str(runner_dir / "app.py"), "{ports[0]}"],
        "env": {"APP_PORT": "{port}", "GREETING": "from the def"},
    }))
    port = _free_port()
    sock = runner_dir / "hello.sock"
    reply = await client.start_service("hello", ["0.5"], {"GREETING": "from the request"},
                                       service_def=str(service_def), bridge_port=port)
    assert reply["started"] is True
    assert not sock.exists()  # not before the app listens on its port
    await _until(sock.exists)
    response = _http_get(sock)
    assert response.startswith(b"HTTP/1.0 200")
    # the request's env wins over the definition's; placeholders are filled in
    assert response.endswith(f"hello from the request on {port}".encode())
    again = await client.start_service("hello", [], {}, service_def=str(service_def),
                                       bridge_port=port)
    assert again["started"] is False and again["pid"] == reply["pid"]

    # The app dies: its socket goes with it (the proxy's health check then ejects it).
    os.kill(reply["pid"], signal.SIGTERM)
    await _until(lambda: not sock.exists())
    restarted = await client.start_service("hello", ["0"], {"GREETING": "again"},
                                           service_def=str(service_def), bridge_port=port)
    assert restarted["started"] is True
    await _until(sock.exists)
    assert _http_get(sock).endswith(f"hello again on {port}".encode())


async def test_bad_service_requests_are_refused(runner_dir: Path) -> None:
    client = RunnerClient(runner_dir / "r.sock")
    await client.wait_ready(10)
    with pytest.raises(RunnerError, match="no service definition"):
        await client.start_service("ghost", [], {}, service_def=str(runner_dir / "none.json"),
                                   bridge_port=8000)
    bad = runner_dir / "bad.json"
    bad.write_text(json.dumps({"command": "not a list"}))
    with pytest.raises(RunnerError, match="'command' must be a list"):
        await client.start_service("bad", [], {}, service_def=str(bad))
    bad.write_text(json.dumps({"command": ["x", "{ports[3]}"]}))
    with pytest.raises(RunnerError, match="bad placeholder"):
        await client.start_service("bad", [], {}, service_def=str(bad), bridge_port=8000)
    for request in ({"name": "../up", "argv": ["true"]}, {"name": "x", "argv": ["true"],
                                                          "bridge_port": 70000}):
        with pytest.raises(RunnerError, match="service:"):
            await client.start_service(
                str(request["name"]), ["true"], {},
                bridge_port=request.get("bridge_port"))  # type: ignore[arg-type]
