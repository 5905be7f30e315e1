"""The agent's domain: kernels, their lifecycle, run buffering and events (no transports)."""

from bai.agent.domain.errors import KernelBusy, RunnerUnavailable
from bai.agent.domain.model import (
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ExecMode,
    ExecRequest,
    ImageInfo,
    KernelEvent,
    KernelEventKind,
    KernelReport,
    KernelRequest,
    KernelState,
    LogChunk,
    RunEvent,
    SessionType,
    kernel_dir,
)
from bai.agent.domain.ports import ContainerRuntime, KernelRunner, RunnerConnector
from bai.agent.domain.service import AgentService
from bai.agent.domain.slots import Capacity

__all__ = [
    "AgentService",
    "Capacity",
    "ContainerExit",
    "ContainerInfo",
    "ContainerRuntime",
    "ContainerSpec",
    "ExecMode",
    "ExecRequest",
    "ImageInfo",
    "KernelBusy",
    "KernelEvent",
    "KernelEventKind",
    "KernelReport",
    "KernelRequest",
    "KernelRunner",
    "KernelState",
    "LogChunk",
    "RunEvent",
    "RunnerConnector",
    "RunnerUnavailable",
    "SessionType",
    "kernel_dir",
]
