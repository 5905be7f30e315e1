"""What the domain needs from the outside world: a container runtime and kernel runners.

Real implementations live in :mod:`bai.agent.runtime` (aiodocker, the runner's Unix socket).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from bai.agent.domain.model import ContainerExit, ContainerInfo, ContainerSpec, ImageInfo, LogChunk

__all__ = ["ContainerRuntime", "KernelRunner", "RunnerConnector"]


class ContainerRuntime(Protocol):
    """Kernel containers on this node.

    Errors are domain errors: ``NotFound(reason="IMAGE_NOT_FOUND")`` for a missing image,
    ``NotFound(reason="CONTAINER_NOT_FOUND")``, ``InternalError`` for engine failures.
    """

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Creates and starts the container; leaves nothing behind when it fails."""
        ...

    async def destroy(self, container_id: str, scratch_dir: Path) -> int | None:
        """Stops and removes the container and its scratch dir (idempotent); the exit code."""
        ...

    async def restart(self, container_id: str) -> ContainerInfo:
        """Restarts the container in place."""
        ...

    def logs(self, container_id: str, *, follow: bool, tail: int) -> AsyncIterator[LogChunk]:
        """The container's output; ``tail`` 0 = all; with ``follow`` until it stops."""
        ...

    async def wait_exit(self, container_id: str) -> ContainerExit:
        """Returns once the container is not running any more."""
        ...

    async def list_managed(self, agent_id: str) -> list[ContainerInfo]:
        """Kernel containers this agent id created, running or not."""
        ...

    async def list_images(self) -> list[ImageInfo]:
        """Local images, one entry per tag."""
        ...


class KernelRunner(Protocol):
    """The runner inside one kernel (see agent/runner/protocol.md).

    Errors: ``FailedPrecondition(reason="KERNEL_BUSY")`` when another execution runs,
    ``Unavailable(reason="RUNNER_UNAVAILABLE")`` when the runner cannot be reached or fails.
    """

    async def wait_ready(self, within_s: float) -> None:
        """Retries pings until one answers; ``Unavailable`` after ``within_s`` seconds."""
        ...

    def execute(
        self, mode: str, code: str, limit_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of one execution, ending with ``{"finished": true, ...}``; the runner
        kills it after ``limit_s`` seconds."""
        ...

    async def send_input(self, data: str) -> bool:
        """Answers a pending input(); False when nothing waits for input."""
        ...

    async def interrupt(self) -> bool:
        """SIGINT to the running execution; False when nothing runs."""
        ...

    async def start_service(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        service_def: str = "",
        bridge_port: int | None = None,
    ) -> bool:
        """Starts the app ``name`` as ``argv`` unless it runs; True when it was started.

        ``service_def``: take the command from that file in the kernel (``argv`` appended);
        ``bridge_port``: relay the app's socket to that TCP port inside the kernel.
        """
        ...


RunnerConnector = Callable[[Path], KernelRunner]
"""Builds the runner handle of a kernel from its scratch dir."""
