"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_CLIENT = ROOT / ".venv-client" / "bin" / "backend.ai"


def docker_inspect(container_id: str, fmt: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", fmt, container_id], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def body(name: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tag": None,
        "name": name,
        "image": "python:3.11",
        "architecture": "x86_64",
        "type": "interactive",
        "domain": "default",
        "group": "default",
        "owner_access_key": None,
        "enqueueOnly": False,
        "maxWaitSeconds": 0,
        "reuseIfExists": True,
        "startupCommand": None,
        "clusterSize": 1,
        "clusterMode": "single-node",
        "starts_at": None,
        "bootstrap_script": None,
        "dependencies": [],
        "callback_url": None,
        "config": {
            "mounts": [],
            "environ": {},
            "resources": {"cpu": "1", "mem": "256m"},
            "resource_opts": {},
            "scalingGroup": None,
        },
    }
    body.update(kw)
    return body


def unique_name() -> str:
    return "e2e-" + uuid.uuid4().hex[:8]


def exec_code(c: httpx.Client, ref: str, code: str, mode: str = "query") -> dict[str, Any]:
    r = c.post(f"/session/{ref}", json={"mode": mode, "code": code, "runId": None})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    while result["status"] == "continued":
        r = c.post(
            f"/session/{ref}", json={"mode": "continue", "code": "", "runId": result["runId"]}
        )
        result = {
            **r.json()["result"],
            "console": result["console"] + r.json()["result"]["console"],
        }
    return result


def stdout_of(result: dict[str, Any], kind: str = "stdout") -> str:
    return "".join(data for k, data in result["console"] if k == kind)


def wait_status(c: httpx.Client, ref: str, want: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = c.get(f"/session/{ref}").json()
        if info["status"] in want:
            return info
        time.sleep(0.3)
    raise AssertionError(f"session {ref} stuck in {info.get('status')}: {info}")
