"""Domain records and enums of the manager: sessions, kernels, agents, images, principals.

Records are frozen dataclasses read from the repositories; they never leak ORM rows upward.
Slots are ``dict[str, Decimal]`` (see :mod:`bai.manager.domain.slots`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

__all__ = [
    "LIVE_STATES",
    "TERMINAL_STATES",
    "AgentImage",
    "AgentKernel",
    "AgentRecord",
    "AgentRegistration",
    "AgentStatus",
    "CreatedKernel",
    "ExecInput",
    "ExecMode",
    "ExecOutput",
    "ImageRecord",
    "KernelCreation",
    "KernelEvent",
    "KernelEventKind",
    "KernelRecord",
    "KernelReport",
    "KeypairInfo",
    "LogChunk",
    "NewSession",
    "Principal",
    "ProjectGrant",
    "Role",
    "SessionRecord",
    "SessionSpec",
    "SessionState",
    "SessionType",
    "Slots",
    "StatusEntry",
    "check_edges",
    "utcnow",
]

Slots = dict[str, Decimal]
"""Slot name → amount (cpu in cores, mem in bytes, accelerator units)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class SessionState(enum.StrEnum):
    """Backend.AI's session states (values are the stored strings)."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    PULLING = "PULLING"
    PREPARED = "PREPARED"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"


S = SessionState
TERMINAL_STATES = frozenset({S.TERMINATED, S.ERROR, S.CANCELLED})
LIVE_STATES = frozenset(set(S) - TERMINAL_STATES)

_EDGES: dict[SessionState, frozenset[SessionState]] = {
    S.PENDING: frozenset({S.SCHEDULED, S.CANCELLED, S.ERROR}),
    S.SCHEDULED: frozenset({S.PREPARING, S.CANCELLED, S.ERROR}),
    S.PREPARING: frozenset({S.PULLING, S.PREPARED, S.CREATING, S.TERMINATING, S.ERROR}),
    S.PULLING: frozenset({S.PREPARED, S.TERMINATING, S.ERROR}),
    S.PREPARED: frozenset({S.CREATING, S.TERMINATING, S.ERROR}),
    S.CREATING: frozenset({S.RUNNING, S.TERMINATING, S.TERMINATED, S.ERROR}),
    S.RUNNING: frozenset({S.RESTARTING, S.TERMINATING, S.TERMINATED, S.ERROR}),
    S.RESTARTING: frozenset({S.RUNNING, S.TERMINATING, S.TERMINATED, S.ERROR}),
    S.TERMINATING: frozenset({S.TERMINATED, S.ERROR}),
    S.TERMINATED: frozenset(),
    S.ERROR: frozenset(),
    S.CANCELLED: frozenset(),
}
"""The status machine: which state may follow which (terminal states are final)."""


def check_edges(sources: frozenset[SessionState], target: SessionState) -> None:
    """Raises ValueError when some source cannot move to ``target`` (a programming error)."""
    bad = sorted(s for s in sources if target not in _EDGES[s])
    if bad or not sources:
        raise ValueError(f"no transition from {bad or 'nothing'} to {target}")


class SessionType(enum.StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"
    INFERENCE = "inference"


class AgentStatus(enum.StrEnum):
    ALIVE = "ALIVE"
    LOST = "LOST"
    TERMINATED = "TERMINATED"


class Role(enum.StrEnum):
    SUPERADMIN = "superadmin"
    ADMIN = "admin"
    USER = "user"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class ProjectGrant:
    """A project the caller belongs to, with its role there (``member`` or ``admin``)."""

    id: uuid.UUID
    name: str
    role: str = "member"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a user-facing call."""

    access_key: str
    user_id: uuid.UUID
    email: str
    role: Role
    domain: str
    projects: tuple[ProjectGrant, ...] = ()
    """Projects of the caller's domain it belongs to (RBAC: project admins)."""

    @property
    def is_superadmin(self) -> bool:
        return self.role is Role.SUPERADMIN


@dataclass(frozen=True, slots=True)
class KeypairInfo:
    """A keypair with its owner, as the authenticator needs it."""

    access_key: str
    secret_key: str
    is_active: bool
    is_admin: bool
    user_id: uuid.UUID
    email: str
    role: Role
    domain: str
    projects: tuple[ProjectGrant, ...] = ()
    """The owner's project memberships."""
    rate_limit: int = 0
    """Requests per 15-minute window (0 = not limited)."""
    resource_policy: str = "default"


@dataclass(frozen=True, slots=True)
class Mount:
    """A host directory (a vfolder on an fs volume) bind-mounted into a session's kernels."""

    host_path: str
    container_path: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What the user asked for; immutable after creation."""

    image: str
    """Canonical image reference (or the unresolved request when the image was not found)."""
    session_type: SessionType
    resources: Slots
    """Requested slots per kernel."""
    environ: Mapping[str, str] = field(default_factory=dict)
    startup_command: str = ""
    batch_timeout_seconds: float = 0.0
    """0 means no timeout."""
    cluster_size: int = 1
    resource_group: str = "default"
    tag: str = ""
    mounts: tuple[Mount, ...] = ()
    """vfolders resolved to host paths at creation."""
    cluster_mode: str = "single-node"
    """Every kernel of the session on one agent, in one network namespace."""
    idle_timeout_seconds: float = 0.0
    """Terminate after this long without an execution or app start; 0 means never."""
    max_lifetime_seconds: float = 0.0
    """Terminate this long after it started running; 0: only the resource policy's limit."""
    priority: int = 10
    """Scheduling priority 0-100: higher tiers are scheduled first (Backend.AI's default 10)."""
    starts_at: datetime | None = None
    """Not scheduled before this time (None: as soon as possible)."""
    dependencies: tuple[uuid.UUID, ...] = ()
    """Sessions that must finish successfully before this one is scheduled."""

    @property
    def total_resources(self) -> Slots:
        """Slots of all the session's kernels together (what its one agent must have free)."""
        return {k: v * self.cluster_size for k, v in self.resources.items()}


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One row of a session's status history."""

    state: SessionState
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class KernelRecord:
    id: uuid.UUID
    session_id: uuid.UUID
    agent_id: str | None
    container_id: str | None
    state: SessionState
    cluster_role: str
    cluster_idx: int
    occupied_slots: Slots


@dataclass(frozen=True, slots=True)
class ExecTarget:
    """Where a session's main kernel runs: what the exec hot path needs, read in one query."""

    session_id: uuid.UUID
    name: str
    access_key: str
    domain: str
    state: SessionState
    kernel_id: uuid.UUID | None
    agent_id: str | None
    agent_address: str | None
    agent_status: AgentStatus | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    name: str
    access_key: str
    domain: str
    project: str
    spec: SessionSpec
    state: SessionState
    reason: str
    message: str
    state_changed_at: datetime
    created_at: datetime
    terminated_at: datetime | None
    exit_code: int | None
    request_id: str | None
    kernels: tuple[KernelRecord, ...] = ()
    history: tuple[StatusEntry, ...] = ()
    queue_position: int | None = None
    """PENDING: 1-based place in its resource group's queue (filled by GetSession only)."""

    @property
    def main_kernel(self) -> KernelRecord | None:
        return next((k for k in self.kernels if k.cluster_role == "main"), None)

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session to insert (PENDING, or ERROR when it cannot even be queued)."""

    id: uuid.UUID
    name: str
    access_key: str
    domain: str
    project: str
    spec: SessionSpec
    request_id: str | None
    created_at: datetime
    kernel_ids: tuple[uuid.UUID, ...]
    failure: tuple[str, str] | None = None
    """(reason, message) when the session goes straight from PENDING into ERROR."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    address: str
    status: AgentStatus
    capacity: Slots
    occupied: Slots
    architecture: str
    resource_group: str
    version: str
    first_contact: datetime
    last_heartbeat: datetime


@dataclass(frozen=True, slots=True)
class AgentImage:
    """An image an agent reports."""

    ref: str
    digest: str
    labels: Mapping[str, str]
    size_bytes: int
    architecture: str


@dataclass(frozen=True, slots=True)
class ImageRecord:
    ref: str
    digest: str
    labels: Mapping[str, str]
    size_bytes: int
    architecture: str
    aliases: tuple[str, ...]
    agent_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KernelReport:
    """A kernel as an agent reports it; ``state`` is the agent's lower-case string."""

    kernel_id: str
    session_id: str
    state: str
    container_id: str
    exit_code: int


@dataclass(frozen=True, slots=True)
class AgentRegistration:
    agent_id: str
    address: str
    capacity: Slots
    architecture: str
    resource_group: str
    version: str
    kernels: tuple[KernelReport, ...]
    images: tuple[AgentImage, ...]


class KernelEventKind(enum.StrEnum):
    TERMINATED = "TERMINATED"
    STARTED = "STARTED"


@dataclass(frozen=True, slots=True)
class KernelEvent:
    kernel_id: str
    session_id: str
    kind: KernelEventKind
    exit_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class KernelCreation:
    """What the manager asks an agent to create."""

    kernel_id: uuid.UUID
    session_id: uuid.UUID
    image: str
    slots: Slots
    environ: Mapping[str, str]
    session_type: SessionType
    startup_command: str
    batch_timeout_seconds: float
    cluster_role: str
    cluster_idx: int
    mounts: tuple[Mount, ...] = ()
    network_kernel_id: uuid.UUID | None = None
    """Cluster sessions: the main kernel whose network namespace this kernel joins."""
    cluster_hostnames: tuple[str, ...] = ()
    """Cluster sessions: every kernel's hostname (127.0.0.1 in /etc/hosts)."""


@dataclass(frozen=True, slots=True)
class CreatedKernel:
    container_id: str


@dataclass(frozen=True, slots=True)
class AgentKernel:
    """A kernel from an agent's ListKernels; ``state`` as in :class:`KernelReport`."""

    kernel_id: str
    session_id: str
    state: str
    container_id: str
    exit_code: int


class ExecMode(enum.IntEnum):
    """Execution modes (numbers shared by both protos)."""

    QUERY = 1
    BATCH = 2
    CONTINUE = 3
    INPUT = 4


@dataclass(frozen=True, slots=True)
class ExecInput:
    mode: ExecMode
    code: str
    run_id: str
    max_wait_seconds: float | None
    timeout_seconds: float | None


@dataclass(frozen=True, slots=True)
class ExecOutput:
    run_id: str
    stream: str
    data: str
    finished: bool
    continued: bool
    waiting_input: bool
    exit_code: int
    timed_out: bool


@dataclass(frozen=True, slots=True)
class LogChunk:
    data: str
    stream: str

