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


# A kernel image with a custom app: declared in the ai.backend.service-ports label, defined by a
# Backend.AI service definition, serving on a TCP port inside the kernel (--network none).
APPDEMO_IMAGE = "bai/appdemo:e2e"
APPDEMO_ALIAS = "appdemo-e2e"
APPDEMO_GREETING = "hello from a custom app"
APPDEMO_DOCKERFILE = f"""
FROM bai/python:3.11-debian12
LABEL ai.backend.service-ports="jupyter:http:8081,sshd:tcp:2200,ttyd:http:7681,hello:http:8000"
LABEL ai.bai.aliases="{APPDEMO_ALIAS}"
USER root
COPY hello.json /etc/backend.ai/service-defs/hello.json
RUN mkdir -p /opt/hello && echo "{APPDEMO_GREETING}" > /opt/hello/index.html
USER work
"""
APPDEMO_SERVICE_DEF = {
    "command": ["python3", "-m", "http.server", "{ports[0]}", "--bind", "127.0.0.1",
                "--directory", "/opt/hello"],
}


def _build_appdemo(directory: Any) -> None:
    (directory / "Dockerfile").write_text(APPDEMO_DOCKERFILE)
    (directory / "hello.json").write_text(json.dumps(APPDEMO_SERVICE_DEF))
    done = subprocess.run(["docker", "build", "-q", "-t", APPDEMO_IMAGE, str(directory)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def apps_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_ready: None
) -> Iterator[Cluster]:
    _build_appdemo(tmp_path_factory.mktemp("appdemo"))  # before the agent lists its images
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'manager.db'}"
    c = start_cluster(url, apps=True)
    try:
        yield c
    finally:
        c.shutdown()


def _session(c: httpx.Client, image: str = "python:3.11") -> str:
    name = _name()
    r = c.post("/session", json=_body(name, image=image))
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


def test_official_client_app_command_bridges_ssh_and_jupyter(apps_cluster: Cluster) -> None:
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
            deadline = time.monotonic() + 60  # the client starts slowly when busy
            while True:  # the client needs a moment to listen
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                if done.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
                if proxy.poll() is not None:  # the client gave up: say why
                    break
            if done.returncode != 0 and proxy.poll() is not None:
                raise AssertionError(proxy.communicate()[0].decode(errors="replace"))
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "via-42"
        finally:
            proxy.send_signal(signal.SIGINT)
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        # An HTTP app is tunnelled as bytes too: `backend.ai app NAME jupyter` serves Jupyter
        # on a local port with no token to add (the websocket carried the keypair's signature).
        port = free_port()
        proxy = subprocess.Popen(
            [str(OFFICIAL_CLIENT), "app", name, "jupyter", "-b", f"127.0.0.1:{port}"],
            env=apps_cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    page = httpx.get(f"http://127.0.0.1:{port}/api", timeout=30)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proxy.poll() is not None:
                        raise AssertionError(
                            proxy.communicate()[0].decode(errors="replace")) from None
                    time.sleep(0.3)
            assert page.status_code == 200 and "version" in page.json()
        finally:
            proxy.send_signal(signal.SIGINT)
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        assert c.delete(f"/session/{name}").status_code in (200, 204)


def _official_start_service(cluster: Cluster, session: str, app: str) -> dict[str, Any]:
    """``ComputeSession(session).start_service(app)`` of the official SDK (its own Python), with
    the fields its ``StartServiceResponse`` model requires checked there."""
    script = (
        "import json, sys\n"
        "from ai.backend.client.session import Session\n"
        "with Session() as api:\n"
        "    reply = api.ComputeSession(sys.argv[1]).start_service(\n"
        "        sys.argv[2], envs={}, arguments={})\n"
        "assert isinstance(reply['token'], str) and isinstance(reply['wsproxy_addr'], str)\n"
        "print(json.dumps(reply))\n"
    )
    python = OFFICIAL_CLIENT.parent / "python"
    workdir = cluster.workdir / "sdk"  # an empty directory: the client reads .env upwards
    workdir.mkdir(exist_ok=True)
    done = subprocess.run([str(python), "-c", script, session, app], capture_output=True,
                          text=True, env=cluster.client_env(), cwd=workdir, timeout=120)
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def test_custom_app_declared_in_the_image_label(apps_cluster: Cluster) -> None:
    with apps_cluster.client() as c:
        name = _session(c, APPDEMO_ALIAS)
        app = _start(c, name, "hello")
        assert app["protocol"] == "http" and app["token"]
        # Published only once the app answered: the first request through Envoy succeeds.
        page = _wait_http(app["url"])
        assert page.status_code == 200, page.text
        assert page.text.strip() == APPDEMO_GREETING
        base = app["url"].split("/?", 1)[0]
        assert httpx.get(f"{base}/index.html").status_code == 401
        assert _start(c, name, "hello")["circuitId"] == app["circuitId"]
        assert _bai(apps_cluster, "app", name, "hello").strip() == app["url"]
        listed = c.get(f"/stream/session/{name}/apps")
        assert listed.status_code == 200
        assert {"name": "hello", "protocol": "http", "ports": [8000]} in listed.json()
        if OFFICIAL_CLIENT.exists():  # the official SDK's start_service gets what it needs
            sdk = _official_start_service(apps_cluster, name, "hello")
            assert sdk["token"] == app["token"]
            assert sdk["wsproxy_addr"] == base

        # Apps the image does not declare are refused precisely; the session stays offline.
        r = c.post(f"/v1/sessions/{name}:startService", json={"service": "nope"})
        assert r.status_code == 404 and "hello" in r.text, r.text
        session_id = c.get(f"/session/{name}").json()["sessionId"]
        container = next(
            cid for cid in apps_cluster.containers()
            if session_id in subprocess.run(
                ["docker", "inspect", "-f", "{{json .Config.Labels}}", cid],
                capture_output=True, text=True, check=True).stdout)
        mode = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.NetworkMode}}",
                               container], capture_output=True, text=True, check=True)
        assert mode.stdout.strip() == "none"

        # The app dies: Envoy answers 503 at once (no hang), and a new start brings it back.
        done = subprocess.run(["docker", "exec", container, "pkill", "-f", "http.server"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=5) as browser:
            browser.get(app["url"])  # the permit cookie
            while (dead := browser.get(f"{base}/")).status_code != 503:
                assert time.monotonic() < deadline, dead.status_code
                time.sleep(0.1)
            assert _start(c, name, "hello")["circuitId"] == app["circuitId"]
            deadline = time.monotonic() + 15
            while (back := browser.get(f"{base}/")).status_code != 200:
                assert time.monotonic() < deadline, back.status_code
                time.sleep(0.1)
            assert back.text.strip() == APPDEMO_GREETING
        assert c.delete(f"/session/{name}").status_code in (200, 204)


def test_circuits_of_sessions_ended_during_a_coordinator_outage_are_swept(
    apps_cluster: Cluster,
) -> None:
    """The manager's event-driven close fails while the coordinator is down; its sweep closes
    the orphan once the coordinator (which kept the circuit in its state file) is back."""
    with apps_cluster.client() as c:
        name = _session(c)
        app = _start(c, name, "ttyd")
        session_id = c.get(f"/session/{name}").json()["sessionId"]
        assert _circuits(apps_cluster, session_id) == ["ttyd"]
        coordinator = apps_cluster.procs["appproxy"]
        argv = [str(a) for a in coordinator.args]  # type: ignore[union-attr]
        apps_cluster.stop("appproxy")
        assert c.delete(f"/session/{name}").status_code in (200, 204)
        deadline = time.monotonic() + 30
        while "closing its circuits failed" not in apps_cluster.logs("manager"):
            assert time.monotonic() < deadline, apps_cluster.logs("manager")[-2000:]
            time.sleep(0.1)

        log = open(apps_cluster.workdir / "appproxy.log", "ab")
        apps_cluster.procs["appproxy"] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=apps_cluster.workdir)
        deadline = time.monotonic() + 30
        while True:
            try:
                left = _circuits(apps_cluster, session_id)
            except grpc.RpcError:
                left = ["(coordinator starting)"]
            if not left:
                break
            assert time.monotonic() < deadline, left
            time.sleep(0.2)
        assert f"swept its circuits {app['circuitId']}" in apps_cluster.logs("manager")


def test_subdomain_frontend_end_to_end(
    tmp_path_factory: pytest.TempPathFactory, docker_ready: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A manager with ``--appproxy-frontend subdomain`` (here its env var): HTTP apps are
    reached as ``<circuit>.<apps domain>`` on the one subdomain port, SSH keeps a port."""
    monkeypatch.setenv("BAI_MANAGER_APPPROXY_FRONTEND", "subdomain")
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db-sub') / 'manager.db'}"
    cluster = start_cluster(url, apps=True)
    try:
        with cluster.client() as c:
            name = _session(c)
            app = _start(c, name, "ttyd")
            host = f"{app['circuitId']}.apps.localhost"
            subdomain_port = cluster.app_ports[0]
            assert app["host"] == host and app["port"] == subdomain_port
            assert app["url"] == f"http://{host}:{subdomain_port}/?token={app['token']}"
            # *.localhost need not resolve here: connect to 127.0.0.1, name the app in Host.
            base = f"http://127.0.0.1:{subdomain_port}"
            deadline = time.monotonic() + 10
            while (page := httpx.get(f"{base}/", params={"token": app["token"]},
                                     headers={"host": host})).status_code == 404:
                assert time.monotonic() < deadline  # Envoy applies the route within ~100 ms
                time.sleep(0.05)
            assert page.status_code == 200 and "ttyd" in page.text.lower()
            assert httpx.get(f"{base}/", headers={"host": host}).status_code == 401
            ssh = _start(c, name, "sshd")
            assert ssh["protocol"] == "tcp" and ssh["port"] != subdomain_port
            assert c.delete(f"/session/{name}").status_code in (200, 204)
    finally:
        cluster.shutdown()
