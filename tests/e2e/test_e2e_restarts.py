"""Agent restart re-adopts running kernels; manager restart loses no session."""

from __future__ import annotations

import signal
import uuid

from cluster import Cluster
from e2e_util import body as _body
from e2e_util import exec_code as _exec
from e2e_util import stdout_of as _stdout


def test_agent_restart_readopts_running_kernel(cluster: Cluster) -> None:
    name = "ra-" + uuid.uuid4().hex[:8]
    with cluster.client() as c:
        assert c.post("/session", json=_body(name)).json()["status"] == "RUNNING"
        _exec(c, name, "kept = 'still here'")
        container = c.get(f"/session/{name}").json()["containerId"]

        cluster.stop("agent", signal.SIGTERM)
        assert any(container.startswith(c) for c in cluster.containers())  # kernels outlive it
        cluster.start_agent()
        cluster.wait_ready()

        result = _exec(c, name, "print(kept)")
        assert _stdout(result) == "still here\n"
        info = c.get(f"/session/{name}").json()
        assert info["status"] == "RUNNING" and info["containerId"] == container
        c.delete(f"/session/{name}")


def test_manager_restart_loses_no_session(cluster: Cluster) -> None:
    name = "rm-" + uuid.uuid4().hex[:8]
    with cluster.client() as c:
        created = c.post("/session", json=_body(name)).json()
        _exec(c, name, "y = 7")

        cluster.stop("manager", signal.SIGTERM)
        cluster.start_manager()
        cluster.wait_ready()

        info = c.get(f"/session/{name}").json()
        assert info["sessionId"] == created["sessionId"] and info["status"] == "RUNNING"
        assert _stdout(_exec(c, name, "print(y * 6)")) == "42\n"
        c.delete(f"/session/{name}")
