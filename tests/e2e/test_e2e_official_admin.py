"""The official client's admin and listing commands against our gateway (GraphQL + SSE).

`ps`, `session list`, `session info`, `admin user/keypair/agent list` go through
``POST /admin/gql``; `session events` reads ``GET /events/session`` until ``server_close``.
The client exits 0 on several failures and prints status lines on stderr: every check reads
its output.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from cluster import Cluster
from e2e_util import OFFICIAL_CLIENT

pytestmark = pytest.mark.official_client


def backend_ai(
    cluster: Cluster, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    if not OFFICIAL_CLIENT.exists():
        pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test` (installs it)")
    # An empty cwd: the client loads .env files upward and they would override our environment.
    with tempfile.TemporaryDirectory(prefix="bai-client-") as cwd:
        return subprocess.run(
            [str(OFFICIAL_CLIENT), *args], cwd=cwd, env=cluster.client_env(),
            capture_output=True, text=True, timeout=timeout,
        )


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "rror" not in text, text
    return text


@pytest.fixture(scope="module")
def live_session(cluster: Cluster) -> tuple[str, str]:
    """A running session (name, id) shared by the listing tests."""
    name = "oa-" + uuid.uuid4().hex[:8]
    with cluster.client() as c:
        r = c.post("/session", json={"name": name, "image": "python", "enqueueOnly": False,
                                     "config": {"resources": {"cpu": "1", "mem": "256m"}}})
        assert r.status_code in (200, 201), r.text
        session_id = r.json()["sessionId"]
    return name, session_id


def test_ps_and_session_list(cluster: Cluster, live_session: tuple[str, str]) -> None:
    name, _ = live_session
    for command in (("ps",), ("session", "list")):
        out = backend_ai(cluster, *command)
        text = _ok(out)
        assert name in out.stdout and "RUNNING" in out.stdout, text
    out = backend_ai(cluster, "session", "list", "--dead")
    _ok(out)
    assert name not in out.stdout


def test_session_info(cluster: Cluster, live_session: tuple[str, str]) -> None:
    name, session_id = live_session
    out = backend_ai(cluster, "session", "info", session_id)
    text = _ok(out)
    assert out.returncode == 0 and name in out.stdout and "RUNNING" in out.stdout, text
    out = backend_ai(cluster, "session", "info", str(uuid.uuid4()))
    assert "There is no such compute session" in out.stdout + out.stderr
    assert out.returncode == 1


def test_admin_lists(cluster: Cluster) -> None:
    out = backend_ai(cluster, "admin", "user", "list")
    text = _ok(out)
    assert "admin@localhost" in out.stdout and "superadmin" in out.stdout, text
    out = backend_ai(cluster, "admin", "keypair", "list")
    text = _ok(out)
    assert cluster.access_key in out.stdout, text
    out = backend_ai(cluster, "admin", "agent", "list")
    text = _ok(out)
    assert cluster.agent_id in out.stdout and "ALIVE" in out.stdout, text


def test_session_events_until_server_close(cluster: Cluster) -> None:
    name = "oe-" + uuid.uuid4().hex[:8]
    with cluster.client() as c:
        r = c.post("/session", json={"name": name, "image": "python",
                                     "config": {"resources": {"cpu": "1", "mem": "256m"}}})
        assert r.status_code in (200, 201), r.text

    def destroy_later() -> None:
        # Once subscribed, the gateway has answered 200 (uvicorn logs that line then).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if f"/events/session?sessionName={name}" in cluster.logs("gateway"):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        with cluster.client() as c:
            c.delete(f"/session/{name}")

    killer = threading.Thread(target=destroy_later)
    killer.start()
    try:
        started = time.monotonic()
        out = backend_ai(cluster, "session", "events", name, timeout=90)
    finally:
        killer.join()
    text = out.stdout + out.stderr
    assert time.monotonic() - started < 60, text
    assert "kernel_terminating" in out.stdout, text
    assert "kernel_terminated" in out.stdout, text
    assert "session_terminated" in out.stdout, text
    assert "Traceback" not in text

    # Already terminated: the events of its end at once, then server_close.
    out = backend_ai(cluster, "session", "events", name, timeout=30)
    assert "session_terminated" in out.stdout, out.stdout + out.stderr
