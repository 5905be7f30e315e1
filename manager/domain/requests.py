"""Validation of a session creation request into a :class:`SessionSpec`."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bai.manager.domain import slots
from bai.manager.domain.errors import InvalidSessionRequest, InvalidSlots
from bai.manager.domain.images import min_resources
from bai.manager.domain.model import ImageRecord, Mount, SessionSpec, SessionType, Slots
from bai.manager.domain.vfolders import MountRequest

__all__ = [
    "DEFAULT_SLOTS",
    "CreateRequest",
    "ValidRequest",
    "apply_image_minimums",
    "build_spec",
    "validate",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{4,64}$")
_REQUEST_ID_MAX = 128
MAX_CLUSTER_SIZE = 16
MIN_PRIORITY, DEFAULT_PRIORITY, MAX_PRIORITY = 0, 10, 100
"""Backend.AI's session priority range and default."""
MAX_DEPENDENCIES = 16
DEFAULT_SLOTS: Slots = {"cpu": Decimal(1), "mem": Decimal(1 << 30)}
"""Used when neither the request nor the image minimum says more."""


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """CreateSession's fields, transport-free."""

    image: str
    name: str = ""
    session_type: str = ""
    resources: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    startup_command: str = ""
    batch_timeout_seconds: float = 0.0
    reuse_if_exists: bool = False
    enqueue_only: bool = False
    max_wait_seconds: float = 0.0
    """0 means "until it runs or fails" (capped by the server)."""
    request_id: str = ""
    cluster_size: int = 0
    resource_group: str = ""
    domain: str = ""
    project: str = ""
    tag: str = ""
    mounts: tuple[MountRequest, ...] = ()
    """vfolders to mount; resolved to host paths by the vfolder service."""
    cluster_mode: str = ""
    """"single-node" (the default when empty); "multi-node" is not supported."""
    idle_timeout_seconds: float = 0.0
    max_lifetime_seconds: float = 0.0
    priority: int | None = None
    """0-100; None means DEFAULT_PRIORITY."""
    starts_at: datetime | None = None
    """Not scheduled before this time."""
    dependencies: tuple[str, ...] = ()
    """Session ids or names that must finish successfully first (resolved by the service)."""


@dataclass(frozen=True, slots=True)
class ValidRequest:
    name: str
    session_type: SessionType
    requested: Slots
    """Slots the user named (before image defaults)."""


def validate(req: CreateRequest) -> ValidRequest:
    """Checks everything that does not need the database; raises InvalidArgument errors."""
    name = req.name.strip() or f"bai-{secrets.token_hex(4)}"
    if not _NAME_RE.match(name):
        raise InvalidSessionRequest(
            f"session name {req.name!r} must be 4-64 characters of letters, digits, '.', '_' "
            "and '-'", reason="INVALID_SESSION_NAME")
    try:
        session_type = SessionType(req.session_type.strip().lower() or "interactive")
    except ValueError as exc:
        raise InvalidSessionRequest(
            f"session type {req.session_type!r} is not interactive, batch or inference",
            reason="INVALID_SESSION_TYPE") from exc
    if session_type is SessionType.BATCH and not req.startup_command.strip():
        raise InvalidSessionRequest("a batch session needs a startup command",
                                    reason="MISSING_STARTUP_COMMAND")
    if not 0 <= req.cluster_size <= MAX_CLUSTER_SIZE:
        raise InvalidSessionRequest(
            f"cluster_size {req.cluster_size} must be between 1 and {MAX_CLUSTER_SIZE}",
            reason="UNSUPPORTED_CLUSTER_SIZE")
    if req.cluster_mode.strip().lower() not in ("", "single-node", "single_node"):
        raise InvalidSessionRequest(
            f"cluster_mode {req.cluster_mode!r} is not supported (only single-node: every "
            "kernel on one agent)", reason="UNSUPPORTED_CLUSTER_MODE")
    for what, value in (("idle_timeout", req.idle_timeout_seconds),
                        ("max_lifetime", req.max_lifetime_seconds)):
        if value < 0 or not math.isfinite(value):
            raise InvalidSessionRequest(f"{what} must not be negative")
    if req.priority is not None and not MIN_PRIORITY <= req.priority <= MAX_PRIORITY:
        raise InvalidSessionRequest(
            f"priority {req.priority} must be between {MIN_PRIORITY} and {MAX_PRIORITY}",
            reason="INVALID_PRIORITY")
    if len(req.dependencies) > MAX_DEPENDENCIES:
        raise InvalidSessionRequest(
            f"a session may depend on at most {MAX_DEPENDENCIES} sessions",
            reason="TOO_MANY_DEPENDENCIES")
    if req.batch_timeout_seconds < 0 or not math.isfinite(req.batch_timeout_seconds):
        raise InvalidSessionRequest("batch_timeout must not be negative")
    if req.max_wait_seconds < 0:
        raise InvalidSessionRequest("max_wait must not be negative")
    if len(req.request_id) > _REQUEST_ID_MAX:
        raise InvalidSessionRequest(f"request_id is longer than {_REQUEST_ID_MAX} characters")
    if not req.image.strip():
        raise InvalidSessionRequest("an image is required", reason="MISSING_IMAGE")
    return ValidRequest(name=name, session_type=session_type,
                        requested=slots.parse_request(req.resources))


def apply_image_minimums(requested: Slots, image: ImageRecord) -> Slots:
    """Fills cpu/mem from max(image minimum, default); rejects explicit requests below minimum."""
    minimum = min_resources(image.labels)
    result = dict(requested)
    for slot, amount in minimum.items():
        if slot in requested and requested[slot] < amount:
            raise InvalidSlots(
                f"{slot}={slots.describe({slot: requested[slot]}).split('=')[1]} is below the "
                f"minimum of image {image.ref} ({slots.describe({slot: amount})})",
                reason="BELOW_IMAGE_MINIMUM")
    for slot, default in DEFAULT_SLOTS.items():
        if slot not in result:
            result[slot] = max(default, minimum.get(slot, Decimal(0)))
    return result


def build_spec(
    req: CreateRequest, valid: ValidRequest, image: str, resources: Slots,
    mounts: tuple[Mount, ...] = (),
) -> SessionSpec:
    return SessionSpec(
        image=image,
        session_type=valid.session_type,
        resources=resources,
        environ=dict(req.environ),
        startup_command=req.startup_command,
        batch_timeout_seconds=req.batch_timeout_seconds,
        cluster_size=max(1, req.cluster_size),
        resource_group=req.resource_group.strip() or "default",
        tag=req.tag,
        mounts=mounts,
        idle_timeout_seconds=req.idle_timeout_seconds,
        max_lifetime_seconds=req.max_lifetime_seconds,
        priority=DEFAULT_PRIORITY if req.priority is None else req.priority,
        starts_at=req.starts_at,
    )
