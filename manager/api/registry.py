"""AgentRegistryService servicer: the bidirectional heartbeat stream (protocol in the proto).

The stream is served with ``context.read()``/``context.write()``: a reader task handles the
agent's messages and queues answers; the writer loop sends them in order. A second stream of
the same agent id ends the older one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeAlias

import grpc
from bai.manager.api.convert import kernel_event, kernel_reports, registration
from bai.manager.domain.registry import AgentRegistry
from bai.pb.manager.v1 import agent_registry_pb2 as pb
from bai.pb.manager.v1 import agent_registry_pb2_grpc as pb_grpc

__all__ = ["AgentRegistryServicer"]

log = logging.getLogger(__name__)
Context: TypeAlias = grpc.aio.ServicerContext
Outbox = asyncio.Queue[pb.HeartbeatResponse | None]


class AgentRegistryServicer(pb_grpc.AgentRegistryServiceServicer):
    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry
        self._streams: dict[str, Outbox] = {}

    async def Heartbeat(self, request_iterator: object, context: Context) -> None:
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("message") != "registration":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message of a heartbeat stream must be a registration")
        outbox: Outbox = asyncio.Queue()
        agent_id = await self._register(first.registration, outbox)
        previous = self._streams.get(agent_id)
        if previous is not None:
            log.info("agent %s opened a new heartbeat stream; closing the older one", agent_id)
            previous.put_nowait(None)
        self._streams[agent_id] = outbox
        reader = asyncio.create_task(self._read(agent_id, context, outbox))
        try:
            while (message := await outbox.get()) is not None:
                await context.write(message)
        finally:
            reader.cancel()
            if self._streams.get(agent_id) is outbox:
                del self._streams[agent_id]

    async def _register(self, message: pb.AgentRegistration, outbox: Outbox) -> str:
        registered = await self._registry.register(registration(message))
        outbox.put_nowait(pb.HeartbeatResponse(registration_ack=pb.RegistrationAck(
            agent_id=registered.agent_id,
            heartbeat_interval_ms=registered.heartbeat_interval_ms)))
        if registered.destroy_kernel_ids:
            outbox.put_nowait(_destroy(registered.destroy_kernel_ids))
        return registered.agent_id

    async def _read(self, agent_id: str, context: Context, outbox: Outbox) -> None:
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                try:
                    await self._handle(agent_id, message, outbox)
                except Exception:
                    log.exception("agent %s: could not handle %s", agent_id,
                                  message.WhichOneof("message"))
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            outbox.put_nowait(None)

    async def _handle(self, agent_id: str, message: pb.HeartbeatRequest, outbox: Outbox) -> None:
        kind = message.WhichOneof("message")
        if kind == "heartbeat":
            beat = message.heartbeat
            destroy = await self._registry.heartbeat(agent_id, beat.sequence,
                                                     kernel_reports(beat.kernels))
            outbox.put_nowait(pb.HeartbeatResponse(
                heartbeat_ack=pb.HeartbeatAck(sequence=beat.sequence)))
            if destroy:
                outbox.put_nowait(_destroy(destroy))
        elif kind == "event":
            event = kernel_event(message.event)
            if event is not None:
                await self._registry.kernel_event(agent_id, event)
        elif kind == "registration":
            await self._register(message.registration, outbox)


def _destroy(kernel_ids: tuple[str, ...]) -> pb.HeartbeatResponse:
    return pb.HeartbeatResponse(directive=pb.AgentDirective(
        destroy_kernel_ids=list(kernel_ids),
        reason="the manager does not know these kernels as live"))
