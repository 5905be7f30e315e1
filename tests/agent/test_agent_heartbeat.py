"""The manager link against a small real AgentRegistryService written here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import grpc
import pytest
from agent_harness import (
    IMAGE,
    TOKEN,
    Agent,
    containers_of,
    remove_agent_containers,
    start_agent,
    wait_until,
)
from bai.agent.heartbeat import LinkConfig, ManagerLink
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.manager.v1 import agent_registry_pb2 as pb
from bai.pb.manager.v1 import agent_registry_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]

INTERVAL_MS = 100


class FakeManager(pb_grpc.AgentRegistryServiceServicer):  # type: ignore[misc]
    """Records every stream's messages; acks registration and heartbeats; sends directives."""

    def __init__(self) -> None:
        self.streams: list[list[pb.HeartbeatRequest]] = []
        self.tokens: list[str] = []
        self.directives: asyncio.Queue[pb.AgentDirective] = asyncio.Queue()

    async def Heartbeat(self, request_iterator: Any, context: Any) -> None:
        received: list[pb.HeartbeatRequest] = []
        self.streams.append(received)
        self.tokens.append(dict(context.invocation_metadata()).get(SERVICE_TOKEN_KEY, ""))
        first = await context.read()
        received.append(first)
        if first.WhichOneof("message") != "registration":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register first")
        ack = pb.RegistrationAck(
            agent_id=first.registration.agent_id, heartbeat_interval_ms=INTERVAL_MS
        )
        await context.write(pb.HeartbeatResponse(registration_ack=ack))
        while True:
            message = await context.read()
            if message is grpc.aio.EOF:
                return
            received.append(message)
            if message.WhichOneof("message") == "heartbeat":
                ack_beat = pb.HeartbeatAck(sequence=message.heartbeat.sequence)
                await context.write(pb.HeartbeatResponse(heartbeat_ack=ack_beat))
            while not self.directives.empty():
                await context.write(pb.HeartbeatResponse(directive=self.directives.get_nowait()))


async def serve_manager(manager: FakeManager, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_AgentRegistryServiceServicer_to_server(manager, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


def kinds(stream: list[pb.HeartbeatRequest]) -> list[str]:
    return [str(m.WhichOneof("message")) for m in stream]


@pytest.fixture
async def linked(
    kernel_root: Path, docker: aiodocker.Docker
) -> AsyncIterator[tuple[Agent, FakeManager, grpc.aio.Server, int]]:
    manager = FakeManager()
    server, port = await serve_manager(manager)
    agent = await start_agent("i-test-" + uuid.uuid4().hex[:8], kernel_root, docker)
    config = LinkConfig(
        manager=f"127.0.0.1:{port}",
        service_token=TOKEN,
        address=agent.address,
        architecture="x86_64",
        version="test",
        reconnect_initial_s=0.1,
        reconnect_max_s=0.5,
    )
    task = asyncio.create_task(ManagerLink(agent.service, config).run())
    try:
        yield agent, manager, server, port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()
        await server.stop(None)
        await remove_agent_containers(docker, agent.agent_id)


async def test_registers_first_then_heartbeats_and_reconnects(
    linked: tuple[Agent, FakeManager, grpc.aio.Server, int],
) -> None:
    agent, manager, server, port = linked

    async def beats(stream_index: int, count: int) -> bool:
        return (
            len(manager.streams) > stream_index
            and kinds(manager.streams[stream_index]).count("heartbeat") >= count
        )

    await wait_until(lambda: beats(0, 3))
    stream = manager.streams[0]
    assert kinds(stream)[0] == "registration"
    registration = stream[0].registration
    assert registration.agent_id == agent.agent_id
    assert registration.address == agent.address
    assert registration.capacity == {"cpu": "4", "mem": str(8 << 30)}
    assert registration.resource_group == "default" and registration.version == "test"
    refs = {image.ref: image for image in registration.images}
    assert IMAGE in refs and refs[IMAGE].labels["ai.backend.kernelspec"] == "1"
    assert refs[IMAGE].digest.startswith("sha256:") and refs[IMAGE].size_bytes > 0
    assert all("ai.backend.kernelspec" in image.labels for image in registration.images)
    sequences = [m.heartbeat.sequence for m in stream if m.WhichOneof("message") == "heartbeat"]
    assert sequences == list(range(1, len(sequences) + 1))
    assert manager.tokens == [TOKEN]

    await server.stop(None)  # the manager goes away and comes back on the same port
    await asyncio.sleep(0.3)
    server2, _ = await serve_manager(manager, port)
    try:
        await wait_until(lambda: beats(1, 2))
        again = manager.streams[1]
        assert kinds(again)[0] == "registration"
        assert [m.heartbeat.sequence for m in again if m.heartbeat.sequence][:2] == [1, 2]
    finally:
        await server2.stop(None)


async def test_kernel_events_and_directives(
    linked: tuple[Agent, FakeManager, grpc.aio.Server, int], docker: aiodocker.Docker
) -> None:
    agent, manager, _, _ = linked
    await wait_until(lambda: _registered(manager))
    created = await agent.create(session_type="batch", startup_command="exit 3")
    kernel = created.kernel.kernel_id

    async def terminated() -> bool:
        return any(m.event.kernel_id == kernel for m in manager.streams[-1])

    await wait_until(terminated)
    (event,) = [m.event for m in manager.streams[-1] if m.event.kernel_id == kernel]
    assert event.kind == pb.KernelEvent.KIND_TERMINATED
    assert (event.exit_code, event.reason) == (3, "TaskFailed")
    assert event.session_id == created.kernel.session_id and event.event_time.seconds > 0

    async def reported() -> bool:
        beats = [m.heartbeat for m in manager.streams[-1] if m.WhichOneof("message") == "heartbeat"]
        return bool(beats) and any(
            k.kernel_id == kernel and k.state == "terminated" and k.exit_code == 3
            for k in beats[-1].kernels
        )

    await wait_until(reported)

    manager.directives.put_nowait(
        pb.AgentDirective(destroy_kernel_ids=[kernel, str(uuid.uuid4())], reason="test")
    )

    async def gone() -> bool:
        return not agent.service.list_kernels() and not await containers_of(
            docker, kernel_id=kernel
        )

    await wait_until(gone)


async def _registered(manager: FakeManager) -> bool:
    return bool(manager.streams) and len(manager.streams[-1]) > 1
