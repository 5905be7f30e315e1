"""The kernel runner port on the runner's own asyncio client (a Unix socket per kernel).

Maps the client's errors to domain errors: busy → KernelBusy, anything else → RunnerUnavailable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bai.agent.domain.errors import KernelBusy, RunnerUnavailable
from bai.agent.runner.client import RunnerBusyError, RunnerClient, RunnerError
from bai.common.errors import FailedPrecondition

__all__ = ["SOCKET_NAME", "UnixSocketRunner", "connect_runner"]

SOCKET_NAME = "runner.sock"


class UnixSocketRunner:
    """:class:`bai.agent.domain.ports.KernelRunner` over ``<scratch dir>/runner.sock``."""

    def __init__(self, socket_path: Path) -> None:
        self._client = RunnerClient(socket_path)

    async def wait_ready(self, within_s: float) -> None:
        try:
            await self._client.wait_ready(within_s)
        except TimeoutError as exc:
            raise RunnerUnavailable(str(exc)) from exc

    async def execute(
        self, mode: str, code: str, limit_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in self._client.execute(mode, code, limit_s):
                yield event
        except RunnerBusyError as exc:
            raise KernelBusy("another execution is running in the kernel") from exc
        except (RunnerError, OSError, ValueError) as exc:
            raise RunnerUnavailable(f"kernel runner: {exc!r}") from exc

    async def send_input(self, data: str) -> bool:
        try:
            return await self._client.send_input(data)
        except (RunnerError, OSError, ValueError) as exc:
            raise RunnerUnavailable(f"kernel runner: {exc!r}") from exc

    async def interrupt(self) -> bool:
        try:
            return await self._client.interrupt()
        except (RunnerError, OSError, ValueError) as exc:
            raise RunnerUnavailable(f"kernel runner: {exc!r}") from exc


    async def start_service(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        service_def: str = "",
        bridge_port: int | None = None,
    ) -> bool:
        try:
            reply = await self._client.start_service(
                name, argv, env, service_def=service_def, bridge_port=bridge_port
            )
        except RunnerError as exc:
            if str(exc).startswith("service:"):  # the app's own fault, e.g. no service-def
                raise FailedPrecondition(str(exc), reason="SERVICE_START_FAILED") from exc
            raise RunnerUnavailable(f"kernel runner: {exc!r}") from exc
        except (OSError, ValueError) as exc:
            raise RunnerUnavailable(f"kernel runner: {exc!r}") from exc
        return bool(reply.get("started"))


def connect_runner(scratch_dir: Path) -> UnixSocketRunner:
    """The :data:`~bai.agent.domain.ports.RunnerConnector` for kernels on this host."""
    return UnixSocketRunner(scratch_dir / SOCKET_NAME)
