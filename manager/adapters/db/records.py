"""Row → domain record conversion, and the dialect-aware upsert helper."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bai.manager.adapters.db.tables import AgentRow, KernelRow, SessionRow, StatusHistoryRow
from bai.manager.domain import slots
from bai.manager.domain.model import (
    AgentRecord,
    AgentStatus,
    KernelRecord,
    Mount,
    SessionRecord,
    SessionSpec,
    SessionState,
    SessionType,
    StatusEntry,
)
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["agent_record", "insert_for", "kernel_record", "session_record", "spec_to_json"]


def spec_to_json(spec: SessionSpec) -> dict[str, Any]:
    return {
        "image": spec.image,
        "session_type": spec.session_type.value,
        "resources": slots.to_strings(spec.resources),
        "environ": dict(spec.environ),
        "startup_command": spec.startup_command,
        "batch_timeout_seconds": spec.batch_timeout_seconds,
        "cluster_size": spec.cluster_size,
        "resource_group": spec.resource_group,
        "tag": spec.tag,
        "mounts": [{"host_path": m.host_path, "container_path": m.container_path,
                    "read_only": m.read_only} for m in spec.mounts],
        "cluster_mode": spec.cluster_mode,
        "idle_timeout_seconds": spec.idle_timeout_seconds,
        "max_lifetime_seconds": spec.max_lifetime_seconds,
        "priority": spec.priority,
        "starts_at": spec.starts_at.isoformat() if spec.starts_at else None,
        "dependencies": [str(d) for d in spec.dependencies],
    }


def spec_from_json(raw: dict[str, Any]) -> SessionSpec:
    return SessionSpec(
        image=str(raw.get("image", "")),
        session_type=SessionType(raw.get("session_type", "interactive")),
        resources=slots.from_strings(raw.get("resources", {})),
        environ={str(k): str(v) for k, v in raw.get("environ", {}).items()},
        startup_command=str(raw.get("startup_command", "")),
        batch_timeout_seconds=float(raw.get("batch_timeout_seconds", 0.0)),
        cluster_size=int(raw.get("cluster_size", 1)),
        resource_group=str(raw.get("resource_group", "default")),
        tag=str(raw.get("tag", "")),
        mounts=tuple(Mount(host_path=str(m["host_path"]),
                           container_path=str(m["container_path"]),
                           read_only=bool(m["read_only"])) for m in raw.get("mounts", [])),
        cluster_mode=str(raw.get("cluster_mode", "single-node")),
        idle_timeout_seconds=float(raw.get("idle_timeout_seconds", 0.0)),
        max_lifetime_seconds=float(raw.get("max_lifetime_seconds", 0.0)),
        priority=int(raw.get("priority", 10)),
        starts_at=datetime.fromisoformat(raw["starts_at"]) if raw.get("starts_at") else None,
        dependencies=tuple(uuid.UUID(d) for d in raw.get("dependencies", ())),
    )


def kernel_record(row: KernelRow) -> KernelRecord:
    return KernelRecord(
        id=row.id,
        session_id=row.session_id,
        agent_id=row.agent_id,
        container_id=row.container_id,
        state=SessionState(row.state),
        cluster_role=row.cluster_role,
        cluster_idx=row.cluster_idx,
        occupied_slots=slots.from_strings(row.occupied_slots),
    )


def session_record(
    row: SessionRow, kernels: Sequence[KernelRow], history: Sequence[StatusHistoryRow]
) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        name=row.name,
        access_key=row.access_key,
        domain=row.domain_name,
        project=row.project_name,
        spec=spec_from_json(row.spec),
        state=SessionState(row.state),
        reason=row.reason,
        message=row.message,
        state_changed_at=row.state_changed_at,
        created_at=row.created_at,
        terminated_at=row.terminated_at,
        exit_code=row.exit_code,
        request_id=row.request_id,
        kernels=tuple(kernel_record(k) for k in sorted(kernels, key=_kernel_order)),
        history=tuple(
            StatusEntry(state=SessionState(h.state), reason=h.reason, message=h.message, at=h.at)
            for h in history
        ),
    )


def _kernel_order(row: KernelRow) -> tuple[bool, int]:
    return (row.cluster_role != "main", row.cluster_idx)


def agent_record(row: AgentRow) -> AgentRecord:
    return AgentRecord(
        id=row.id,
        address=row.address,
        status=AgentStatus(row.status),
        capacity=slots.from_strings(row.capacity),
        occupied=slots.from_strings(row.occupied),
        architecture=row.architecture,
        resource_group=row.resource_group,
        version=row.version,
        first_contact=row.first_contact,
        last_heartbeat=row.last_heartbeat,
    )


def insert_for(is_sqlite: bool, table: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_update`` support for the current dialect."""
    return sqlite.insert(table) if is_sqlite else postgresql.insert(table)
