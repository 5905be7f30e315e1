"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_CLIENT = ROOT / ".venv-client" / "bin" / "backend.ai"


def docker_inspect(container_id: str, fmt: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", fmt, container_id], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()
