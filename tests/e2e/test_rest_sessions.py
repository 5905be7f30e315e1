"""End to end through the REST gateway: gateway → manager → agent → Docker → runner."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from cluster import Cluster, SignedAuth
from e2e_util import body as _body
from e2e_util import docker_inspect
from e2e_util import exec_code as _exec
from e2e_util import stdout_of as _stdout
from e2e_util import unique_name as _name
from e2e_util import wait_status as _wait_status

PROB = "https://api.backend.ai/probs/"


def test_interactive_session_runs_code_in_an_isolated_container(cluster: Cluster) -> None:
    name = _name()
    with cluster.client() as c:
        r = c.post("/session", json=_body(name))
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["status"] == "RUNNING" and created["created"] is True
        session_id = created["sessionId"]
        assert str(uuid.UUID(session_id)) == session_id

        # query mode keeps interpreter state; stdout and stderr are kept apart
        assert _exec(c, name, "x = 20")["status"] == "finished"
        result = _exec(c, session_id, "import sys\nprint(x + 22)\nprint('oops', file=sys.stderr)")
        assert _stdout(result) == "42\n"
        assert _stdout(result, "stderr") == "oops\n"
        assert result["exitCode"] == 0

        failed = _exec(c, name, "1/0")
        assert failed["exitCode"] == 1
        assert "ZeroDivisionError" in _stdout(failed, "stderr")
        batch = _exec(c, name, "echo from-batch; exit 3", mode="batch")
        assert _stdout(batch) == "from-batch\n" and batch["exitCode"] == 3

        info = c.get(f"/session/{name}").json()
        container = info["containerId"]
        assert docker_inspect(container, "{{.HostConfig.NetworkMode}}") == "none"
        assert docker_inspect(container, "{{.HostConfig.Memory}}") == str(256 << 20)
        assert docker_inspect(container, "{{.HostConfig.NanoCpus}}") == str(10**9)
        assert "no-new-privileges" in docker_inspect(container, "{{.HostConfig.SecurityOpt}}")
        assert docker_inspect(container, "{{.Config.User}}") not in ("", "root", "0")
        no_net = _exec(c, name, "import socket\nsocket.create_connection(('127.0.0.1', 9), 1)")
        assert no_net["exitCode"] == 1

        logs = c.get(f"/session/{name}/logs")
        assert logs.status_code == 200 and isinstance(logs.json()["result"]["logs"], str)
        history = c.get(f"/session/{name}/status-history").json()["result"]
        assert {"PENDING", "SCHEDULED", "RUNNING"} <= set(history)

        assert c.delete(f"/session/{name}").status_code in (200, 204)
        assert c.get(f"/session/{session_id}").json()["status"] == "TERMINATED"
    assert not any(container.startswith(c) for c in cluster.containers())


def test_reuse_by_name_returns_the_existing_session(cluster: Cluster) -> None:
    name = _name()
    with cluster.client() as c:
        first = c.post("/session", json=_body(name)).json()
        again = c.post("/session", json=_body(name))
        assert again.status_code in (200, 201)
        assert again.json()["sessionId"] == first["sessionId"]
        assert again.json()["created"] is False
        taken = c.post("/session", json=_body(name, reuseIfExists=False))
        assert taken.status_code == 409 and taken.json()["type"].startswith(PROB)
        c.delete(f"/session/{name}")


def test_unknown_image_errors_with_reason_and_leaves_no_container(cluster: Cluster) -> None:
    before = set(cluster.containers())
    with cluster.client() as c:
        r = c.post("/session", json=_body(_name(), image="no-such-image:0.0"))
        assert r.status_code in (200, 201), r.text
        assert r.json()["status"] == "ERROR"
        info = c.get(f"/session/{r.json()['sessionId']}").json()
        assert info["status"] == "ERROR" and "ImageNotFound" in str(info["statusInfo"])
    assert set(cluster.containers()) == before


def test_insufficient_resources_stays_pending_with_reason(cluster: Cluster) -> None:
    name = _name()
    with cluster.client() as c:
        body = _body(name, enqueueOnly=True)
        body["config"]["resources"] = {"cpu": "64", "mem": "256m"}
        r = c.post("/session", json=body)
        assert r.status_code in (200, 201), r.text
        time.sleep(2.5)  # a few scheduler passes
        info = c.get(f"/session/{name}").json()
        assert info["status"] == "PENDING"
        assert "InsufficientResources" in str(info["statusInfo"])
        # the pending session does not block a schedulable one behind it
        small = c.post("/session", json=_body(_name()))
        assert small.json()["status"] == "RUNNING"
        c.delete(f"/session/{small.json()['sessionId']}")
        assert c.delete(f"/session/{name}").status_code in (200, 204)
        assert c.get(f"/session/{name}").json()["status"] == "CANCELLED"


def test_batch_session_finishes_with_exit_code(cluster: Cluster) -> None:
    name = _name()
    with cluster.client() as c:
        r = c.post(
            "/session", json=_body(name, type="batch", startupCommand="echo batch-out; exit 3")
        )
        assert r.status_code in (200, 201), r.text
        info = _wait_status(c, r.json()["sessionId"], {"TERMINATED", "ERROR"})
        assert info["status"] == "TERMINATED" and info["exitCode"] == 3


def test_bad_requests_get_backendai_errors(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.gateway_url, timeout=30) as anon:
        probe = anon.get("/")
        assert probe.status_code == 200 and probe.json()["version"] == "v9.20250722"
        r = anon.get("/session/whatever")
        assert r.status_code == 401 and r.json()["type"].startswith(PROB) and r.json()["title"]
    wrong = SignedAuth(cluster.access_key, "not-the-secret")
    with httpx.Client(base_url=cluster.gateway_url, auth=wrong, timeout=30) as c:
        assert c.get("/session/whatever").status_code == 401
    stale = (datetime.now(UTC) - timedelta(minutes=6)).isoformat()
    skewed = SignedAuth(cluster.access_key, cluster.secret_key, date=stale)
    with httpx.Client(base_url=cluster.gateway_url, auth=skewed, timeout=30) as c:
        r = c.get("/session/whatever")
        assert r.status_code == 401 and "title" in r.json()
    with cluster.client() as c:
        r = c.get("/session/no-such-session")
        assert r.status_code == 404 and r.json()["type"].startswith(PROB)
        r = c.post("/session", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["type"].startswith(PROB)
        r = c.post("/session", json={"image": 42})
        assert r.status_code == 400 and "title" in r.json()
