"""A JSON state file holding the circuit table (the coordinator's only durable state).

Written whole on every change: to a temporary file in the same directory, fsynced, then renamed
over the old one, so a crash leaves either the old or the new table, never a torn one.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bai.appproxy.domain.model import Circuit, CircuitSpec, FrontendMode, Protocol
from bai.common.errors import InternalError

__all__ = ["StateFile"]

FORMAT_VERSION = 1


def _to_json(circuit: Circuit) -> dict[str, Any]:
    spec = circuit.spec
    return {
        "id": circuit.id,
        "session_id": spec.session_id,
        "kernel_id": spec.kernel_id,
        "app": spec.app,
        "protocol": spec.protocol.value,
        "upstream_socket_path": spec.upstream_socket_path,
        "frontend_mode": spec.frontend_mode.value,
        "owner_access_key": spec.owner_access_key,
        "owner_user_id": spec.owner_user_id,
        "token": circuit.token,
        "permit": circuit.permit,
        "frontend_port": circuit.frontend_port,
        "create_time": circuit.create_time.isoformat(),
    }


def _from_json(row: dict[str, Any]) -> Circuit:
    spec = CircuitSpec(
        session_id=row["session_id"],
        kernel_id=row["kernel_id"],
        app=row["app"],
        protocol=Protocol(row["protocol"]),
        upstream_socket_path=row["upstream_socket_path"],
        frontend_mode=FrontendMode(row["frontend_mode"]),
        owner_access_key=row["owner_access_key"],
        owner_user_id=row.get("owner_user_id", ""),
    )
    return Circuit(
        id=row["id"],
        spec=spec,
        token=row["token"],
        permit=row["permit"],
        frontend_port=row["frontend_port"],
        create_time=datetime.fromisoformat(row["create_time"]),
    )


class StateFile:
    """CircuitStore on a JSON file (mode 0600: it holds the circuits' secrets)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> list[Circuit]:
        return await asyncio.to_thread(self._load)

    async def save(self, circuits: Sequence[Circuit]) -> None:
        doc = {"version": FORMAT_VERSION, "circuits": [_to_json(c) for c in circuits]}
        await asyncio.to_thread(self._write, json.dumps(doc, indent=1).encode())

    def _load(self) -> list[Circuit]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise InternalError(f"cannot read the state file {self.path}: {exc}") from exc
        if doc.get("version") != FORMAT_VERSION:
            raise InternalError(f"state file {self.path} has unknown version {doc.get('version')}")
        try:
            return [_from_json(row) for row in doc["circuits"]]
        except (KeyError, ValueError, TypeError) as exc:
            raise InternalError(f"state file {self.path} is malformed: {exc!r}") from exc

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
