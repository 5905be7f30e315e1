"""The official Backend.AI client (backend.ai-client 26.9.6, Python 3.13) against our gateway.

The client exits 0 on several failures, so every check reads its printed output.
"""

from __future__ import annotations

import subprocess
import tempfile
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
            [str(OFFICIAL_CLIENT), *args],
            cwd=cwd,
            env=cluster.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def test_config_reports_our_server(cluster: Cluster) -> None:
    out = backend_ai(cluster, "config")
    assert out.returncode == 0, out.stderr
    assert "v9.20250722" in out.stdout and cluster.gateway_url in out.stdout


def test_run_code(cluster: Cluster) -> None:
    name = "oc-" + uuid.uuid4().hex[:8]
    out = backend_ai(cluster, "run", "--rm", "-t", name, "-c", "print(6 * 7)", "python:3.11")
    text = out.stdout + out.stderr  # the client prints its status lines on stderr
    assert "42" in out.stdout, text
    assert "exit code = 0" in text


def test_session_lifecycle(cluster: Cluster) -> None:
    name = "oc-" + uuid.uuid4().hex[:8]
    out = backend_ai(
        cluster, "session", "create", "-t", name, "-r", "cpu=1", "-r", "mem=256", "python"
    )
    assert "is created and ready" in out.stdout + out.stderr, out.stdout + out.stderr

    out = backend_ai(
        cluster, "run", "-t", name, "-c", "import os; print('hostname', os.uname()[1])", "python"
    )
    text = out.stdout + out.stderr
    assert "Reusing session" in text or "is ready" in text, text
    assert "hostname" in out.stdout, text

    out = backend_ai(cluster, "session", "logs", name)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout + out.stderr

    out = backend_ai(cluster, "session", "destroy", name)
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "rror" not in text, text
    with cluster.client() as c:
        assert c.get(f"/session/{name}").json()["status"] == "TERMINATED"


def test_destroy_unknown_session_prints_error(cluster: Cluster) -> None:
    out = backend_ai(cluster, "session", "destroy", "no-such-session-x")
    text = out.stdout + out.stderr
    assert "Traceback" not in text and ("404" in text or "not found" in text.lower())
