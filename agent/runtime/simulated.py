"""A container runtime with no containers: kernels "start" at once, executions echo.

:class:`SimulatedKernelRuntime` implements both :class:`~bai.agent.domain.ports.ContainerRuntime`
and (through :meth:`SimulatedKernelRuntime.connect_runner`) the
:class:`~bai.agent.domain.ports.KernelRunner` of its kernels, so an :class:`AgentService` on it
speaks the same gRPC contracts as a Docker agent. Used by ``serve --runtime simulated`` and by
``simulate`` (thousands of agents in one process) for scale tests and benchmarks.

Behaviour, deterministic: ``create`` returns a running kernel with container id
``sim-<kernel id hex>``; it holds the images of :attr:`SimulatedRuntimeConfig.images`; a query
execution writes its code back on stdout and finishes with exit code 0 (``echo`` false: writes
nothing); a batch command finishes at once with exit code 0; logs are empty; nothing survives
the process (``list_managed`` is empty). A kernel that joins another's network namespace needs
that kernel's container to exist, as with Docker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bai.agent.domain.errors import KernelBusy
from bai.agent.domain.model import ContainerExit, ContainerInfo, ContainerSpec, ImageInfo, LogChunk
from bai.common.errors import FailedPrecondition, InternalError, NotFound

__all__ = ["DEFAULT_SIM_IMAGE", "SimulatedKernelRuntime", "SimulatedRunner",
           "SimulatedRuntimeConfig"]

DEFAULT_SIM_IMAGE = "bai/python:3.11-debian12"
_KERNELSPEC_LABELS = {
    "ai.backend.kernelspec": "1",
    "ai.backend.features": "query batch",
    "ai.bai.aliases": "python,python:3.11,python:latest",
}


@dataclass(frozen=True)
class SimulatedRuntimeConfig:
    images: tuple[str, ...] = (DEFAULT_SIM_IMAGE,)
    """Image refs this simulated node "holds" (each with the kernelspec labels)."""
    echo: bool = True
    """Query executions write their code back on stdout; False: they output nothing."""
    architecture: str = "x86_64"


@dataclass
class _Container:
    info: ContainerInfo
    stopped: asyncio.Event


class SimulatedKernelRuntime:
    """ContainerRuntime of simulated kernels (in memory, no I/O)."""

    def __init__(self, config: SimulatedRuntimeConfig = SimulatedRuntimeConfig()) -> None:
        self._config = config
        self._containers: dict[str, _Container] = {}
        self.specs: dict[str, ContainerSpec] = {}
        """What each live kernel was created with, by kernel id (environment, network; tests)."""
        self.fail_roles: set[str] = set()
        """Fault shim: creating a kernel of these cluster roles ("main", "sub") fails."""
        self._images = [
            ImageInfo(ref=ref, digest=f"sha256:sim-{i:04d}", labels=dict(_KERNELSPEC_LABELS),
                      size_bytes=0, architecture=config.architecture)
            for i, ref in enumerate(config.images)
        ]

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.image not in self._config.images:
            raise NotFound(f"image {spec.image} not found", reason="IMAGE_NOT_FOUND")
        if spec.cluster_role in self.fail_roles:
            raise InternalError(f"simulated failure starting a {spec.cluster_role} kernel",
                                reason="KERNEL_START_FAILED")
        if spec.network_container_id and spec.network_container_id not in self._containers:
            # Docker refuses to join the namespace of a container that is not there either.
            raise FailedPrecondition(f"container {spec.network_container_id} to share the "
                                     "network with does not exist",
                                     reason="NETWORK_KERNEL_NOT_RUNNING")
        info = ContainerInfo(
            container_id=f"sim-{spec.kernel_id.replace('-', '')}",
            kernel_id=spec.kernel_id,
            session_id=spec.session_id,
            image=spec.image,
            slots=dict(spec.slots),
            session_type=spec.session_type,
            running=True,
            started_at=datetime.now(UTC),
        )
        self._containers[info.container_id] = _Container(info, asyncio.Event())
        self.specs[spec.kernel_id] = spec
        return info

    async def destroy(self, container_id: str, scratch_dir: Path) -> int | None:
        container = self._containers.pop(container_id, None)
        if container is None:
            return None
        container.stopped.set()
        self.specs.pop(container.info.kernel_id, None)
        return 0

    async def restart(self, container_id: str) -> ContainerInfo:
        container = self._get(container_id)
        return container.info

    async def logs(self, container_id: str, *, follow: bool, tail: int) -> AsyncIterator[LogChunk]:
        container = self._get(container_id)
        if follow:
            await container.stopped.wait()
        empty: tuple[LogChunk, ...] = ()  # simulated kernels print nothing
        for chunk in empty:
            yield chunk

    async def wait_exit(self, container_id: str) -> ContainerExit:
        container = self._containers.get(container_id)
        if container is not None:
            await container.stopped.wait()
        return ContainerExit(exit_code=0)

    async def list_managed(self, agent_id: str) -> list[ContainerInfo]:
        return []

    async def list_images(self) -> list[ImageInfo]:
        return list(self._images)

    def connect_runner(self, scratch_dir: Path) -> SimulatedRunner:
        """The :data:`~bai.agent.domain.ports.RunnerConnector` of simulated kernels."""
        return SimulatedRunner(echo=self._config.echo)

    def _get(self, container_id: str) -> _Container:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFound(f"container {container_id} not found", reason="CONTAINER_NOT_FOUND")
        return container


class SimulatedRunner:
    """KernelRunner of a simulated kernel: always ready; runs finish at once."""

    def __init__(self, *, echo: bool) -> None:
        self._echo = echo
        self._busy = False

    async def wait_ready(self, within_s: float) -> None:
        return None

    async def execute(
        self, mode: str, code: str, limit_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        if self._busy:
            raise KernelBusy("another execution is running in the kernel")
        self._busy = True
        try:
            if self._echo and mode == "query" and code:
                yield {"stream": "stdout", "data": code}
            yield {"finished": True, "exit_code": 0}
        finally:
            self._busy = False

    async def send_input(self, data: str) -> bool:
        return False

    async def interrupt(self) -> bool:
        return False

    async def start_service(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        service_def: str = "",
        bridge_port: int | None = None,
    ) -> bool:
        raise FailedPrecondition("simulated kernels run no apps", reason="NO_APPS")
