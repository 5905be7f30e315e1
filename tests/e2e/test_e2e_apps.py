"""Apps end to end: gateway → manager → agent (runner starts the app in the container) →
app proxy coordinator → Envoy → the app's Unix socket. One cluster (SQLite) with the app proxy."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.appproxy.v1 import circuit_service_pb2, circuit_service_pb2_grpc
from cluster import Cluster, start_cluster
from e2e_util import OFFICIAL_CLIENT
from e2e_util import body as _body
from e2e_util import unique_name as _name
from postgres import free_port
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def apps_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_ready: None
) -> Iterator[Cluster]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'manager.db'}"
    c = start_cluster(url, apps=True)
    try:
        yield c
    finally:
        c.shutdown()


def _session(c: httpx.Client) -> str:
    name = _name()
    r = c.post("/session", json=_body(name))
    assert r.status_code == 201, r.text
    return name


def _start(c: httpx.Client, session: str, service: str) -> dict[str, Any]:
    r = c.post(f"/v1/sessions/{session}:startService", json={"service": service})
    assert r.status_code == 200, r.text
    reply: dict[str, Any] = r.json()
    return reply


def _bai(cluster: Cluster, *args: str) -> str:
    """Runs the ``bai`` CLI against the cluster; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from bai.client.cli import main; sys.exit(main())",
         *args],
        capture_output=True, text=True, env=cluster.client_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_http(url: str, within_s: float = 10.0) -> httpx.Response:
    """Envoy applies a new circuit within ~100 ms: retry until the frontend answers."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _circuits(cluster: Cluster, session_id: str) -> list[str]:
    with grpc.insecure_channel(cluster.appproxy_addr) as channel:
        stub = circuit_service_pb2_grpc.CircuitServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ListCircuits(
            circuit_service_pb2.ListCircuitsRequest(session_id=session_id),
            metadata=((SERVICE_TOKEN_KEY, cluster.service_token),), timeout=5)
    return [c.app for c in reply.circuits]


def _jupyter_execute(base: str, token: str, code: str) -> str:
    """Starts a notebook kernel over REST and runs ``code`` over its channels websocket."""
    r = httpx.post(f"{base}/api/kernels", params={"token": token}, json={}, timeout=30)
    assert r.status_code == 201, r.text
    kernel_id = r.json()["id"]
    ws_url = f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels?token={token}"
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }
    out = ""
    with ws_connect(ws_url, open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps(request))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=60))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out
    raise AssertionError(f"no idle status after executing {code!r}; output so far {out!r}")


def test_jupyter_through_envoy_with_token_auth(apps_cluster: Cluster) -> None:
    with apps_cluster.client() as c:
        name, other = _session(c), _session(c)
        app = _start(c, name, "jupyter")
        assert app["protocol"] == "http" and app["token"] and app["port"] > 0
        assert app["url"].startswith("http://") and f"token={app['token']}" in app["url"]
        base = app["url"].split("/?", 1)[0]
        # idempotent: the same circuit comes back (the CLI prints its URL)
        assert _start(c, name, "jupyter")["circuitId"] == app["circuitId"]
        assert _bai(apps_cluster, "app", name, "jupyter").strip() == app["url"]

        assert _wait_http(f"{base}/api/status").status_code == 401  # no token
        # Backend.AI-compatible route (envs/arguments as JSON text, as the official client sends)
        r = c.post(f"/session/{other}/start-service",
                   json={"app": "jupyter", "envs": "{}", "arguments": "[]"})
        assert r.status_code == 200, r.text
        other_app = r.json()
        assert other_app["protocol"] == "http" and other_app["token"] != app["token"]
        refused = httpx.get(f"{base}/api/status", params={"token": other_app["token"]})
        assert refused.status_code == 403  # another circuit's token

        with httpx.Client(timeout=10) as browser:
            ok = browser.get(f"{base}/api/status", params={"token": app["token"]})
            assert ok.status_code == 200, ok.text
            assert "started" in ok.json()
            # the permit cookie admits later requests without the token
            assert browser.get(f"{base}/api/kernelspecs").status_code == 200

        assert _jupyter_execute(base, app["token"], "print(6*7)") == "42\n"

        session_id = c.get(f"/session/{name}").json()["sessionId"]
        assert _circuits(apps_cluster, session_id) == ["jupyter"]
        assert c.delete(f"/session/{name}").status_code in (200, 204)
        deadline = time.monotonic() + 10
        while _circuits(apps_cluster, session_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _circuits(apps_cluster, session_id) == []
        c.delete(f"/session/{other}")


def test_web_terminal_echoes_a_typed_command(apps_cluster: Cluster) -> None:
    with apps_cluster.client() as c:
        name = _session(c)
        app = _start(c, name, "ttyd")
        base = app["url"].split("/?", 1)[0]
        page = _wait_http(app["url"])
        assert page.status_code == 200 and "ttyd" in page.text.lower()
        ws_url = f"{base.replace('http', 'ws', 1)}/ws?token={app['token']}"
        with ws_connect(ws_url, subprotocols=["tty"], open_timeout=10) as ws:  # type: ignore[list-item]
            ws.send(json.dumps({"AuthToken": "", "columns": 80, "rows": 24}))
            ws.send(b"0echo tt-$((6*7))\r")  # '0' = input
            seen, deadline = "", time.monotonic() + 20
            while "tt-42" not in seen and time.monotonic() < deadline:
                frame = ws.recv(timeout=20)
                data = frame if isinstance(frame, bytes) else frame.encode()
                if data[:1] == b"0":  # '0' = output
                    seen += data[1:].decode(errors="replace")
            assert "tt-42" in seen, seen
        assert c.delete(f"/session/{name}").status_code in (200, 204)


def test_ssh_runs_a_command_through_the_tcp_route(apps_cluster: Cluster) -> None:
    ssh = shutil.which("ssh")
    if ssh is None:
        pytest.skip("no ssh client (openssh-client) on this host")
    with apps_cluster.client() as c:
        name = _session(c)
        app = _start(c, name, "sshd")
        assert app["protocol"] == "tcp" and app["url"].startswith("tcp://")
        assert app["sshUser"] == "work" and "OPENSSH PRIVATE KEY" in app["sshPrivateKey"]
        # `bai app SESSION ssh` saves a fresh key and prints the ssh command line
        printed = json.loads(_bai(apps_cluster, "app", name, "ssh", "-o", "json"))
        assert printed["port"] == app["port"]
        assert os.stat(printed["sshKeyFile"]).st_mode & 0o077 == 0
        cmd = [*shlex.split(printed["sshCommand"]), "-o", "BatchMode=yes",
               "-o", "ConnectTimeout=10", "echo ssh-$((6*7)); id -un"]
        assert cmd[0] == "ssh"
        deadline = time.monotonic() + 10
        while True:  # Envoy may need a moment to open the new listener
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["ssh-42", "work"]
        assert c.delete(f"/session/{name}").status_code in (200, 204)


def test_official_client_app_command_bridges_ssh(apps_cluster: Cluster) -> None:
    """``backend.ai app SESSION sshd`` relays a local port over the tcpproxy WebSocket."""
    if not OFFICIAL_CLIENT.exists():
        pytest.skip("the official client is not installed (.venv-client)")
    with apps_cluster.client() as c:
        name = _session(c)
        apps = c.get(f"/stream/session/{name}/apps")
        assert apps.status_code == 200 and "sshd" in [a["name"] for a in apps.json()]
        key = json.loads(_bai(apps_cluster, "app", name, "ssh", "-o", "json"))["sshKeyFile"]
        port = free_port()
        proxy = subprocess.Popen(
            [str(OFFICIAL_CLIENT), "app", name, "sshd", "-b", f"127.0.0.1:{port}"],
            env=apps_cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            cmd = ["ssh", "-i", key, "-p", str(port), "-o", "BatchMode=yes",
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                   "-o", "ConnectTimeout=10", "work@127.0.0.1", "echo via-$((6*7))"]
            deadline = time.monotonic() + 20
            while True:  # the client needs a moment to listen
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                if done.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "via-42"
        finally:
            proxy.send_signal(signal.SIGINT)
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        # HTTP apps are not relayed (their frontend needs the circuit token)
        refused = c.get(f"/stream/session/{name}/tcpproxy", params={"app": "jupyter"},
                        headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                 "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert refused.status_code == 409 and refused.json()["reason"] == "NOT_A_TCP_APP"
        assert c.delete(f"/session/{name}").status_code in (200, 204)
