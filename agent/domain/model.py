"""The agent's domain types: kernels, their specs and reports, runs' events, node facts."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from bai.common.errors import InvalidArgument

__all__ = [
    "ContainerExit",
    "ContainerInfo",
    "ContainerSpec",
    "ExecMode",
    "ExecRequest",
    "ImageInfo",
    "KernelEvent",
    "KernelEventKind",
    "KernelReport",
    "KernelRequest",
    "KernelState",
    "LogChunk",
    "RunEvent",
    "SessionType",
    "kernel_dir",
]


class KernelState(enum.StrEnum):
    """Agent-side kernel state; the values are the wire strings of KernelReport.state."""

    CREATING = "creating"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class SessionType(enum.StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"
    INFERENCE = "inference"


class ExecMode(enum.StrEnum):
    """How an execute call treats its code."""

    QUERY = "query"
    BATCH = "batch"
    CONTINUE = "continue"
    INPUT = "input"


class KernelEventKind(enum.StrEnum):
    TERMINATED = "terminated"
    STARTED = "started"


def kernel_dir(root: Path, kernel_id: str) -> Path:
    """The kernel's scratch dir: ``<root>/<first 12 hex digits of its id>``."""
    return root / uuid.UUID(kernel_id).hex[:12]


_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RESERVED_MOUNTS = ("/", "/run/bai", "/opt/bai-runner", "/home/work")


@dataclass(frozen=True)
class Mount:
    """A host directory (a vfolder) bind-mounted into a kernel container."""

    host_path: str
    container_path: str
    read_only: bool = False

    def __post_init__(self) -> None:
        if not self.host_path.startswith("/") or not self.container_path.startswith("/"):
            raise InvalidArgument(f"mount {self.host_path!r} -> {self.container_path!r}: both "
                                  "paths must be absolute", reason="INVALID_MOUNT")
        if ".." in self.container_path.split("/") or ":" in self.container_path + self.host_path:
            raise InvalidArgument(f"mount path {self.container_path!r} is not allowed",
                                  reason="INVALID_MOUNT")
        if (self.container_path.rstrip("/") or "/") in _RESERVED_MOUNTS or any(
                self.container_path.startswith(r + "/") for r in _RESERVED_MOUNTS[1:3]):
            raise InvalidArgument(f"mount path {self.container_path!r} is reserved",
                                  reason="INVALID_MOUNT")


@dataclass(frozen=True)
class KernelRequest:
    """A kernel the manager asks for (CreateKernelRequest, validated)."""

    kernel_id: str
    """UUID string, assigned by the manager."""
    session_id: str
    image: str
    """Local image reference."""
    slots: dict[str, str]
    """Requested slots as decimal strings ("cpu" cores, "mem" bytes)."""
    environ: dict[str, str] = field(default_factory=dict)
    session_type: SessionType = SessionType.INTERACTIVE
    startup_command: str = ""
    """Batch sessions: shell command run once the kernel is up."""
    batch_timeout_s: float | None = None
    """Batch sessions: kill the startup command after this long; None = no limit."""
    cluster_role: str = "main"
    cluster_idx: int = 0
    mounts: tuple[Mount, ...] = ()
    """vfolders to bind-mount (resolved by the manager)."""
    network_kernel_id: str = ""
    """Cluster sessions: the kernel (on this agent) whose network namespace this one joins."""
    cluster_hostnames: tuple[str, ...] = ()
    """Cluster sessions: hostnames that resolve to 127.0.0.1 in the kernel's /etc/hosts."""

    def __post_init__(self) -> None:
        for host in self.cluster_hostnames:
            if not _HOSTNAME_RE.match(host):
                raise InvalidArgument(f"cluster hostname {host!r} is not a valid hostname",
                                      reason="INVALID_CLUSTER_HOSTNAME")
        if self.network_kernel_id == self.kernel_id:
            raise InvalidArgument("a kernel cannot join its own network namespace",
                                  reason="INVALID_NETWORK_KERNEL")
        for name in ("kernel_id", "session_id"):
            value = getattr(self, name)
            try:
                uuid.UUID(value)
            except (ValueError, TypeError) as exc:
                raise InvalidArgument(f"{name} must be a UUID, got {value!r}") from exc
        if not self.image:
            raise InvalidArgument("image is required")


@dataclass(frozen=True)
class ContainerSpec:
    """What the container runtime must start for one kernel (limits already resolved)."""

    kernel_id: str
    session_id: str
    agent_id: str
    image: str
    cpu: str
    """CPU cores (decimal string)."""
    mem: int
    """Memory limit in bytes (swap is not allowed on top)."""
    slots: dict[str, str]
    environ: dict[str, str]
    session_type: SessionType
    cluster_role: str
    cluster_idx: int
    scratch_dir: Path
    """Host dir mounted at /run/bai (holds the runner socket)."""
    mounts: tuple[Mount, ...] = ()
    """Extra bind mounts (vfolders); read-only ones get Docker's ``:ro``."""
    network_container_id: str = ""
    """Join this container's network namespace; empty: an own, empty one (no network)."""
    cluster_hostnames: tuple[str, ...] = ()
    """/etc/hosts entries pointing at 127.0.0.1 (only with an own namespace)."""
    devices: Mapping[str, Decimal] = field(default_factory=dict)
    """Accelerator devices to attach: device UUID → share (see bai.agent.domain.devices)."""


@dataclass(frozen=True)
class ContainerInfo:
    """A kernel container as the runtime sees it (from creation or from its labels)."""

    container_id: str
    kernel_id: str
    session_id: str
    image: str
    slots: dict[str, str]
    session_type: SessionType
    running: bool
    started_at: datetime | None
    exit_code: int | None = None
    devices: Mapping[str, Decimal] = field(default_factory=dict)
    """The accelerator devices it was given (from its label)."""
    network_container_id: str = ""
    """The container whose network namespace it joined ("" for its own)."""


@dataclass(frozen=True)
class ContainerExit:
    """How a container ended."""

    exit_code: int
    oom_killed: bool = False


@dataclass(frozen=True)
class ImageInfo:
    """A local image (one entry per tag)."""

    ref: str
    digest: str
    labels: dict[str, str]
    size_bytes: int
    architecture: str


@dataclass(frozen=True)
class LogChunk:
    stream: str
    """"stdout" or "stderr"."""
    data: str


@dataclass(frozen=True)
class ExecRequest:
    """One execute call: start a run (QUERY, BATCH) or resume one (CONTINUE, INPUT)."""

    kernel_id: str
    mode: ExecMode
    code: str = ""
    """Python source (QUERY), shell command (BATCH) or the input line (INPUT)."""
    run_id: str = ""
    """Required for CONTINUE and INPUT."""
    max_wait_s: float | None = None
    """Answer ``continued`` after this long; None = until the run ends or waits for input."""
    timeout_s: float | None = None
    """Kill the run after this long; None = no limit."""

    def __post_init__(self) -> None:
        if self.mode in (ExecMode.CONTINUE, ExecMode.INPUT) and not self.run_id:
            raise InvalidArgument(f"mode {self.mode.value} needs a run_id")


@dataclass(frozen=True)
class RunEvent:
    """One piece of a run's output, shaped like ExecuteResponse."""

    run_id: str
    stream: str = ""
    data: str = ""
    finished: bool = False
    continued: bool = False
    waiting_input: bool = False
    exit_code: int = 0
    timed_out: bool = False


@dataclass(frozen=True)
class KernelReport:
    """A kernel's state for ListKernels, registration and heartbeats."""

    kernel_id: str
    session_id: str
    state: KernelState
    image: str
    container_id: str
    slots: dict[str, str]
    start_time: datetime | None
    exit_code: int


@dataclass(frozen=True)
class KernelEvent:
    """A kernel change the agent observed on its own (reported to the manager)."""

    kernel_id: str
    session_id: str
    kind: KernelEventKind
    exit_code: int
    reason: str
    """CamelCase, e.g. "ContainerExited", "OOMKilled", "TaskFinished"."""
    time: datetime
