"""AgentRegistryService servicer: the bidirectional heartbeat stream (protocol in the proto).

The stream is served with ``context.read()``/``context.write()`` from the handler's own
coroutine: each message is read, handled and answered in turn (no queue and no second task per
stream: at thousands of agents the per-message task switches were most of the cost). A second
stream of the same agent id supersedes the older one: the older handler ends its stream (status
OK) at its next message. (Cancelling the older handler's task instead would leave that stream
open: grpc.aio sends no status for a cancelled handler.)
Heartbeat acks reuse one message per stream (``write`` serializes it before returning), a
heartbeat's kernel list is only converted when the registry will reconcile it, and handling a
heartbeat awaits nothing but the ack's write. Kernels the registry's batched reconciliation
wants destroyed go out as a directive right after the agent's next ack.
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


class AgentRegistryServicer(pb_grpc.AgentRegistryServiceServicer):
    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry
        self._streams: dict[str, object] = {}
        """The live stream of each agent, as a token unique to the stream."""

    async def Heartbeat(self, request_iterator: object, context: Context) -> None:
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("message") != "registration":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message of a heartbeat stream must be a registration")
        agent_id = await self._register(first.registration, context)
        this = object()
        if agent_id in self._streams:
            log.info("agent %s opened a new heartbeat stream; closing the older one", agent_id)
        self._streams[agent_id] = this
        ack = pb.HeartbeatResponse(heartbeat_ack=pb.HeartbeatAck())
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                if self._streams.get(agent_id) is not this:
                    return  # superseded by a newer stream of the agent
                try:
                    await self._handle(agent_id, message, context, ack)
                except (grpc.aio.AioRpcError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("agent %s: could not handle %s", agent_id,
                                  message.WhichOneof("message"))
        except grpc.aio.AioRpcError:
            pass  # the agent went away; LOST detection takes it from here
        finally:
            if self._streams.get(agent_id) is this:
                del self._streams[agent_id]

    async def _register(self, message: pb.AgentRegistration, context: Context) -> str:
        registered = await self._registry.register(registration(message))
        await context.write(pb.HeartbeatResponse(registration_ack=pb.RegistrationAck(
            agent_id=registered.agent_id,
            heartbeat_interval_ms=registered.heartbeat_interval_ms)))
        if registered.destroy_kernel_ids:
            await context.write(_destroy(registered.destroy_kernel_ids))
        return registered.agent_id

    async def _handle(
        self, agent_id: str, message: pb.HeartbeatRequest, context: Context,
        ack: pb.HeartbeatResponse,
    ) -> None:
        kind = message.WhichOneof("message")
        if kind == "heartbeat":
            beat = message.heartbeat
            sequence = beat.sequence
            registry = self._registry
            registry.heartbeat(agent_id, sequence, kernel_reports(beat.kernels)
                               if registry.wants_kernels(sequence) else None)
            ack.heartbeat_ack.sequence = sequence
            await context.write(ack)
            destroy = registry.take_directives(agent_id)
            if destroy:
                await context.write(_destroy(tuple(destroy)))
        elif kind == "event":
            event = kernel_event(message.event)
            if event is not None:
                await self._registry.kernel_event(agent_id, event)
        elif kind == "registration":
            await self._register(message.registration, context)


def _destroy(kernel_ids: tuple[str, ...]) -> pb.HeartbeatResponse:
    return pb.HeartbeatResponse(directive=pb.AgentDirective(
        destroy_kernel_ids=list(kernel_ids),
        reason="the manager does not know these kernels as live"))
