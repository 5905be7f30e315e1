"""``bai app SESSION SERVICE``: start an app in a session and print where to reach it.

For ``ssh`` (the app ``sshd``) the issued private key is saved (mode 0600) under
``$XDG_STATE_HOME/bai/ssh/`` (default ``~/.local/state``) and an ``ssh`` command line is printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from bai.client.client import ManagerClient
from bai.client.output import Printer
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb

__all__ = ["app_command", "ssh_command"]

_ALIASES = {"ssh": "sshd"}


def _key_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "bai" / "ssh"


def _save_key(session: str, circuit_id: str, pem: str) -> Path:
    directory = _key_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{session}-{circuit_id[:8]}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(pem)
    return path


def ssh_command(app: sessions_pb.StartServiceResponse, key: Path) -> list[str]:
    """The ssh command line that logs into the app (host key checks off: it is per session)."""
    return ["ssh", "-i", str(key), "-p", str(app.port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", f"{app.ssh_user}@{app.host}"]


async def app_command(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    service = _ALIASES.get(args.service, args.service)
    app = await client.start_service(args.ref, service)
    key = _save_key(args.ref, app.circuit_id, app.ssh_private_key) if app.ssh_private_key else None
    command = shlex.join(ssh_command(app, key)) if key is not None else ""
    if out.as_json:
        out.json({"url": app.url, "host": app.host, "port": app.port, "token": app.token,
                  "protocol": app.protocol, "circuitId": app.circuit_id,
                  "sshUser": app.ssh_user, "sshKeyFile": str(key or ""), "sshCommand": command})
    else:
        out.stream.write((command or app.url) + "\n")
    return 0
