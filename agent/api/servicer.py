"""The AgentService gRPC servicer: convert, call one domain method, convert back."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from bai.agent.api import convert
from bai.agent.domain.service import AgentService
from bai.common.errors import BaiError, InvalidArgument
from bai.common.rpc import abort_with
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import agent_service_pb2_grpc as pb_grpc

__all__ = ["ERROR_DOMAIN", "AgentServicer"]

ERROR_DOMAIN = "bai.agent"
_DESTROY_BATCH_MAX = 1000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _unary(
    method: Callable[[AgentServicer, Req, Context], Awaitable[Resp]],
) -> Callable[[AgentServicer, Req, Context], Awaitable[Resp]]:
    """Turns domain errors into the call's status (the one place that does)."""

    @functools.wraps(method)
    async def wrapper(self: AgentServicer, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except BaiError as exc:
            await abort_with(context, exc, ERROR_DOMAIN)
            raise  # abort_with raises; keeps the type checker honest

    return wrapper


def _streaming(
    method: Callable[[AgentServicer, Req, Context], AsyncIterator[Resp]],
) -> Callable[[AgentServicer, Req, Context], AsyncIterator[Resp]]:
    """Like :func:`_unary` for server-streaming methods."""

    @functools.wraps(method)
    async def wrapper(self: AgentServicer, request: Req, context: Context) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except BaiError as exc:
            await abort_with(context, exc, ERROR_DOMAIN)

    return wrapper


class AgentServicer(pb_grpc.AgentServiceServicer):
    """bai.agent.v1.AgentService on the agent's domain service."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    @_unary
    async def CreateKernel(
        self, request: pb.CreateKernelRequest, context: Context
    ) -> pb.CreateKernelResponse:
        report = await self._service.create_kernel(convert.kernel_request_from_proto(request))
        return pb.CreateKernelResponse(kernel=convert.kernel_to_proto(report))

    @_unary
    async def DestroyKernel(
        self, request: pb.DestroyKernelRequest, context: Context
    ) -> pb.DestroyKernelResponse:
        exit_code = await self._service.destroy_kernel(request.kernel_id, request.reason)
        return pb.DestroyKernelResponse(exit_code=exit_code or 0)

    @_unary
    async def DestroyKernels(
        self, request: pb.DestroyKernelsRequest, context: Context
    ) -> pb.DestroyKernelsResponse:
        if len(request.kernels) > _DESTROY_BATCH_MAX:
            raise InvalidArgument(f"at most {_DESTROY_BATCH_MAX} kernels per DestroyKernels call")
        done = await self._service.destroy_kernels([(k.kernel_id, k.reason)
                                                    for k in request.kernels])
        return pb.DestroyKernelsResponse(results=[
            pb.DestroyKernelResult(kernel_id=kid, exit_code=code or 0, error=error)
            for kid, code, error in done])

    @_unary
    async def RestartKernel(
        self, request: pb.RestartKernelRequest, context: Context
    ) -> pb.RestartKernelResponse:
        report = await self._service.restart_kernel(request.kernel_id)
        return pb.RestartKernelResponse(kernel=convert.kernel_to_proto(report))

    @_streaming
    async def Execute(
        self, request: pb.ExecuteRequest, context: Context
    ) -> AsyncIterator[pb.ExecuteResponse]:
        events = self._service.execute(convert.exec_request_from_proto(request))
        async for event in events:
            yield convert.run_event_to_proto(event)

    @_unary
    async def InterruptKernel(
        self, request: pb.InterruptKernelRequest, context: Context
    ) -> pb.InterruptKernelResponse:
        await self._service.interrupt(request.kernel_id)
        return pb.InterruptKernelResponse()

    @_unary
    async def ListKernels(
        self, request: pb.ListKernelsRequest, context: Context
    ) -> pb.ListKernelsResponse:
        kernels = [convert.kernel_to_proto(k) for k in self._service.list_kernels()]
        return pb.ListKernelsResponse(kernels=kernels)

    @_streaming
    async def StreamKernelLogs(
        self, request: pb.StreamKernelLogsRequest, context: Context
    ) -> AsyncIterator[pb.StreamKernelLogsResponse]:
        chunks = self._service.logs(
            request.kernel_id, follow=request.follow, tail=max(request.tail_lines, 0)
        )
        async for chunk in chunks:
            yield convert.log_chunk_to_proto(chunk)

    @_unary
    async def StartService(
        self, request: pb.StartServiceRequest, context: Context
    ) -> pb.StartServiceResponse:
        app = await self._service.start_service(
            request.kernel_id, request.service, dict(request.environ), list(request.arguments))
        return pb.StartServiceResponse(
            socket_path=str(app.socket_path), protocol=app.protocol,
            ssh_private_key=app.ssh_private_key, ssh_user=app.ssh_user)
