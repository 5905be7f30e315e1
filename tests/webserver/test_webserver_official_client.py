"""The official client (backend.ai-client 26.9.6) in session mode against ``bai-webserver``.

A real cluster (manager, agent with Docker, gateway as processes, SQLite) and the webserver
started as a process with ``python -m bai.webserver serve``. The client logs in with the
superadmin's bootstrap password (it reads the user id with ``input()`` and the password with
``getpass``, which falls back to stdin without a controlling terminal: hence
``start_new_session``), then lists and runs sessions over ``/func`` (its code execution is the
WebSocket under ``/func/stream``), and logs out. The client exits 0 on several failures, so
every check reads what it printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, start_cluster
from e2e_util import OFFICIAL_CLIENT
from postgres import free_port

pytestmark = [pytest.mark.docker, pytest.mark.official_client]


@dataclass
class Web:
    cluster: Cluster
    url: str
    password: str
    state: Path
    """XDG_STATE_HOME of the client: where it keeps its cookie between commands."""

    def client(self, *args: str, stdin: str = "") -> str:
        if not OFFICIAL_CLIENT.exists():
            pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test`")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BACKEND_ENDPOINT=self.url, BACKEND_ENDPOINT_TYPE="session",
                   XDG_STATE_HOME=str(self.state), PYTHONWARNINGS="ignore::UserWarning")
        # An empty cwd: the client reads .env files upward, which would override env.
        with tempfile.TemporaryDirectory(prefix="bai-client-") as cwd:
            out = subprocess.run([str(OFFICIAL_CLIENT), *args], cwd=cwd, env=env, input=stdin,
                                 capture_output=True, text=True, timeout=180,
                                 start_new_session=True)
        text = out.stdout + out.stderr
        assert "Traceback" not in text, text
        return text


@pytest.fixture(scope="module")
def web(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    db = tmp_path_factory.mktemp("webdb") / "manager.db"
    cluster = start_cluster(f"sqlite+aiosqlite:///{db}")
    port = free_port()
    log = open(cluster.workdir / "webserver.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bai.webserver", "serve", "--listen", f"127.0.0.1:{port}",
         "--gateway", cluster.gateway_url],
        stdout=log, stderr=subprocess.STDOUT, cwd=cluster.workdir)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/func/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                cluster.logs("webserver")
            time.sleep(0.1)
        password = (cluster.workdir / ".bai" / "admin-password").read_text().strip()
        yield Web(cluster, url, password, tmp_path_factory.mktemp("client-state"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        cluster.shutdown()


def test_wrong_password_is_refused_with_the_reason(web: Web) -> None:
    out = web.client("login", stdin="admin@localhost\nnot-the-password\n")
    assert "Login failed." in out and "invalid username or password" in out, out


CREATE_USER = """mutation($email: String!, $input: UserInput!) {
    create_user(email: $email, props: $input) { ok msg }
}"""


def test_lockout_reaches_the_client_as_a_precise_message(web: Web) -> None:
    email = f"lock-{uuid.uuid4().hex[:6]}@example.com"
    with web.cluster.client() as admin:
        made = admin.post("/admin/gql", json={"query": CREATE_USER, "variables": {
            "email": email, "input": {"password": "lock-password", "domain_name": "default"}}})
        assert made.json()["data"]["create_user"]["ok"] is True, made.text
    with httpx.Client(base_url=web.url, timeout=60) as c:
        for _ in range(5):
            r = c.post("/server/login", json={"username": email, "password": "wrong"})
            assert r.json()["authenticated"] is False, r.text
    # The right password, now too late: the client prints the manager's reason.
    out = web.client("login", stdin=f"{email}\nlock-password\n")
    assert "Login failed." in out and "too many failed logins; try again in" in out, out


def test_login_list_run_and_logout(web: Web) -> None:
    out = web.client("login", stdin=f"admin@localhost\n{web.password}\n")
    assert "Login succeeded." in out, out

    name = "ws-" + uuid.uuid4().hex[:8]
    out = web.client("session", "create", "-t", name, "-r", "cpu=1", "-r", "mem=256m", "python")
    assert "is created and ready" in out, out
    out = web.client("session", "list")
    assert name in out and "RUNNING" in out, out
    out = web.client("run", "-t", name, "-c", "print(6 * 7)", "python")
    assert "42" in out and "exit code = 0" in out, out
    out = web.client("session", "destroy", name)
    assert "rror" not in out, out

    out = web.client("logout")
    assert "Logout done." in out, out
    # The cookie is gone: the next request is refused with Backend.AI's 401 problem, which
    # the client prints (`session list` would crash on it: the client does not catch it there).
    out = web.client("session", "destroy", name)
    assert "401" in out and "Credential/permission check failed." in out, out
