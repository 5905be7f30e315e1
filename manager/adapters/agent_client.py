"""Agent gRPC client pool: one channel per agent address; every call carries the service
token and a deadline; failures come back as bai.common.errors (see error_from_rpc)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from bai.common.errors import BaiError
from bai.common.rpc import SERVICE_TOKEN_KEY, error_from_rpc
from bai.manager.domain import slots
from bai.manager.domain.apps import AgentApp
from bai.manager.domain.model import (
    AgentKernel,
    CreatedKernel,
    ExecInput,
    ExecOutput,
    KernelCreation,
    LogChunk,
)
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import agent_service_pb2_grpc as pb_grpc
from bai.pb.agent.v1 import kernel_pb2
from google.protobuf.duration_pb2 import Duration

__all__ = ["AgentClientConfig", "GrpcAgentClientPool", "kernel_state_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentClientConfig:
    call_timeout: float = 10.0
    """Seconds for short calls (destroy, interrupt, list)."""
    create_timeout: float = 300.0
    """Seconds for CreateKernel and RestartKernel (container start and runner handshake)."""
    stream_timeout: float = 24 * 3600.0
    """Seconds for streams with no natural end (followed logs, executions without max_wait)."""


def kernel_state_name(state: int) -> str:
    """Agent Kernel.State → the lower-case names the registration protocol uses."""
    name: str = kernel_pb2.Kernel.State.Name(state)
    return name.removeprefix("STATE_").lower()


def _duration(seconds: float | None) -> Duration | None:
    if not seconds:
        return None
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


class GrpcAgentClientPool:
    """Implements :class:`bai.manager.domain.ports.AgentClient`."""

    def __init__(self, service_token: str, config: AgentClientConfig = AgentClientConfig()) -> None:
        self._metadata = ((SERVICE_TOKEN_KEY, service_token),)
        self._config = config
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}
        self._unbatched: set[str] = set()
        """Agents without DestroyKernels (older versions): destroyed one call per kernel."""

    def _stub(self, address: str) -> Any:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
            stub = pb_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
            self._stubs[address] = stub
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    async def _unary(self, address: str, method: str, request: Any, deadline: float) -> Any:
        call = getattr(self._stub(address), method)
        try:
            return await call(request, metadata=self._metadata, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def create_kernel(self, address: str, spec: KernelCreation) -> CreatedKernel:
        request = pb.CreateKernelRequest(
            kernel_id=str(spec.kernel_id),
            session_id=str(spec.session_id),
            image=spec.image,
            slots=slots.to_strings(spec.slots),
            environ=dict(spec.environ),
            session_type=spec.session_type.value,
            startup_command=spec.startup_command,
            batch_timeout=_duration(spec.batch_timeout_seconds),
            mounts=[pb.Mount(host_path=m.host_path, container_path=m.container_path,
                             read_only=m.read_only) for m in spec.mounts],
            cluster_role=spec.cluster_role,
            cluster_idx=spec.cluster_idx,
            network_kernel_id=str(spec.network_kernel_id) if spec.network_kernel_id else "",
            cluster_hostnames=list(spec.cluster_hostnames),
        )
        reply = await self._unary(address, "CreateKernel", request, self._config.create_timeout)
        return CreatedKernel(container_id=reply.kernel.container_id)

    async def destroy_kernel(self, address: str, kernel_id: str, reason: str) -> int:
        request = pb.DestroyKernelRequest(kernel_id=kernel_id, reason=reason)
        reply = await self._unary(address, "DestroyKernel", request, self._config.call_timeout)
        return int(reply.exit_code)

    async def destroy_kernels(
        self, address: str, kernels: Sequence[tuple[str, str]]
    ) -> list[tuple[str, int, str]]:
        if address in self._unbatched:
            return list(await asyncio.gather(*(self._destroy_one(address, kid, reason)
                                               for kid, reason in kernels)))
        request = pb.DestroyKernelsRequest(kernels=[
            pb.DestroyKernelRequest(kernel_id=kid, reason=reason) for kid, reason in kernels])
        call = self._stub(address).DestroyKernels
        try:
            # Many kernels are stopped concurrently on the agent; Docker stops take seconds.
            reply = await call(request, metadata=self._metadata,
                               timeout=self._config.call_timeout * 3)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise error_from_rpc(exc) from exc
            log.info("agent %s has no DestroyKernels (an older agent): one call per kernel",
                     address)
            self._unbatched.add(address)
            return await self.destroy_kernels(address, kernels)
        return [(r.kernel_id, int(r.exit_code), r.error) for r in reply.results]

    async def _destroy_one(self, address: str, kernel_id: str, reason: str) -> tuple[str, int, str]:
        try:
            return kernel_id, await self.destroy_kernel(address, kernel_id, reason), ""
        except BaiError as exc:
            return kernel_id, 0, exc.message

    async def restart_kernel(self, address: str, kernel_id: str) -> CreatedKernel:
        request = pb.RestartKernelRequest(kernel_id=kernel_id)
        reply = await self._unary(address, "RestartKernel", request, self._config.create_timeout)
        return CreatedKernel(container_id=reply.kernel.container_id)

    async def interrupt_kernel(self, address: str, kernel_id: str) -> None:
        request = pb.InterruptKernelRequest(kernel_id=kernel_id)
        await self._unary(address, "InterruptKernel", request, self._config.call_timeout)

    async def start_service(self, address: str, kernel_id: str, service: str,
                            environ: dict[str, str], arguments: list[str]) -> AgentApp:
        request = pb.StartServiceRequest(kernel_id=kernel_id, service=service, environ=environ,
                                         arguments=arguments)
        # The agent waits for the app to answer (Jupyter takes seconds).
        reply = await self._unary(address, "StartService", request, self._config.create_timeout)
        return AgentApp(socket_path=reply.socket_path, protocol=reply.protocol,
                        ssh_private_key=reply.ssh_private_key, ssh_user=reply.ssh_user)

    async def list_kernels(self, address: str) -> list[AgentKernel]:
        reply = await self._unary(address, "ListKernels", pb.ListKernelsRequest(),
                                  self._config.call_timeout)
        return [
            AgentKernel(kernel_id=k.kernel_id, session_id=k.session_id,
                        state=kernel_state_name(k.state), container_id=k.container_id,
                        exit_code=k.exit_code)
            for k in reply.kernels
        ]

    async def execute(
        self, address: str, kernel_id: str, inp: ExecInput
    ) -> AsyncIterator[ExecOutput]:
        request = pb.ExecuteRequest(
            kernel_id=kernel_id, run_id=inp.run_id, code=inp.code,
            mode=pb.ExecutionMode.ValueType(int(inp.mode)),
            max_wait=_duration(inp.max_wait_seconds), timeout=_duration(inp.timeout_seconds),
        )
        bound = inp.max_wait_seconds or inp.timeout_seconds
        timeout = bound + self._config.call_timeout if bound else self._config.stream_timeout
        call = self._stub(address).Execute(request, metadata=self._metadata, timeout=timeout)
        try:
            async for r in call:
                yield ExecOutput(run_id=r.run_id, stream=r.stream, data=r.data,
                                 finished=r.finished, continued=r.continued,
                                 waiting_input=r.waiting_input, exit_code=r.exit_code,
                                 timed_out=r.timed_out)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    async def stream_logs(
        self, address: str, kernel_id: str, follow: bool, tail_lines: int
    ) -> AsyncIterator[LogChunk]:
        request = pb.StreamKernelLogsRequest(kernel_id=kernel_id, follow=follow,
                                             tail_lines=tail_lines)
        timeout = self._config.stream_timeout if follow else self._config.create_timeout
        call = self._stub(address).StreamKernelLogs(request, metadata=self._metadata,
                                                   timeout=timeout)
        try:
            async for r in call:
                yield LogChunk(data=r.data, stream=r.stream)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()
