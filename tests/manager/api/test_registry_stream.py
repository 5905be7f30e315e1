"""The agent heartbeat stream over real gRPC, with a client speaking the stream protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.manager.adapters.db import SqlAgentRepository
from bai.pb.agent.v1 import kernel_pb2
from bai.pb.manager.v1 import agent_registry_pb2 as rpb
from bai.pb.manager.v1 import agent_registry_pb2_grpc as rpb_grpc
from bai.pb.manager.v1 import image_service_pb2 as ipb
from bai.pb.manager.v1 import session_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2 as pb
from manager_harness import IMAGE, Harness, ProtocolAgent, eventually

State = spb.Session.State
StartAgent = Callable[..., Awaitable[ProtocolAgent]]


async def _status(manager: Harness, agent_id: str) -> str:
    agent = await SqlAgentRepository(manager.running.db).get(agent_id)
    return agent.status.value if agent else "unknown"


async def _session(manager: Harness, ref: str) -> spb.Session:
    reply = await manager.sessions().GetSession(pb.GetSessionRequest(session_ref=ref))
    return reply.session


async def test_first_message_must_be_a_registration(manager: Harness) -> None:
    async with grpc.aio.insecure_channel(manager.address) as channel:
        stub = rpb_grpc.AgentRegistryServiceStub(channel)

        async def heartbeat_first() -> AsyncIterator[rpb.HeartbeatRequest]:
            yield rpb.HeartbeatRequest(heartbeat=rpb.AgentHeartbeat(sequence=1))
            await asyncio.sleep(5)

        call = stub.Heartbeat(heartbeat_first(), metadata=((SERVICE_TOKEN_KEY, manager.token),))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_registration_is_acked_heartbeats_are_acked_images_are_listed(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents(cpu="3", mem=str(6 << 30))
    assert agent.interval_ms == 200
    await eventually(lambda: _true(len(agent.acks) >= 3))
    assert agent.acks[:3] == [1, 2, 3]
    record = await SqlAgentRepository(manager.running.db).get(agent.agent_id)
    assert record is not None and record.status.value == "ALIVE"
    assert record.address == agent.address
    assert {k: str(v) for k, v in record.capacity.items()} == {"cpu": "3", "mem": str(6 << 30)}

    images = (await manager.images().ListImages(ipb.ListImagesRequest())).images
    assert [i.ref for i in images] == [IMAGE]
    image = images[0]
    assert list(image.aliases) == ["python", "python:3.11", "python:latest"]
    assert list(image.agent_ids) == [agent.agent_id]
    assert image.min_resources == {"cpu": "1", "mem": str(64 << 20)}


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


async def test_silent_agent_goes_lost_and_is_not_used_until_it_is_back(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents()
    agent.heartbeats = False
    await eventually(lambda: _status_is(manager, agent.agent_id, "LOST"), within=5)
    stub = manager.sessions()
    reply = await stub.CreateSession(
        pb.CreateSessionRequest(name="while-lost", image="python", enqueue_only=True)
    )
    await asyncio.sleep(0.6)
    pending = await _session(manager, reply.session.id)
    assert pending.status.state == State.STATE_PENDING
    assert "no ALIVE agent" in pending.status.message
    agent.heartbeats = True
    await eventually(lambda: _status_is(manager, agent.agent_id, "ALIVE"), within=5)
    await eventually(lambda: _state_is(manager, reply.session.id, State.STATE_RUNNING))


async def _status_is(manager: Harness, agent_id: str, status: str) -> bool:
    return await _status(manager, agent_id) == status


async def _state_is(manager: Harness, ref: str, state: int) -> bool:
    return bool((await _session(manager, ref)).status.state == state)


async def test_registration_reconciles_kernels(manager: Harness, agents: StartAgent) -> None:
    agent = await agents()
    stub = manager.sessions()
    lost = (
        await stub.CreateSession(pb.CreateSessionRequest(name="will-lose", image="python"))
    ).session
    kept = (
        await stub.CreateSession(pb.CreateSessionRequest(name="will-keep", image="python"))
    ).session
    batch = (
        await stub.CreateSession(
            pb.CreateSessionRequest(
                name="batch-done", image="python", session_type="batch", startup_command="exit 4"
            )
        )
    ).session
    assert {lost.status.state, kept.status.state, batch.status.state} == {State.STATE_RUNNING}

    # a snapshot only counts for sessions that were RUNNING well before it (2 s slack)
    await asyncio.sleep(2.1)
    # while disconnected: one kernel vanished, the batch one exited, a stranger appeared
    await agent.disconnect()
    del agent.kernels[lost.kernels[0].id]
    finished = agent.kernels[batch.kernels[0].id]
    finished.state, finished.exit_code = kernel_pb2.Kernel.STATE_TERMINATED, 4
    agent.kernels["stranger"] = kernel_pb2.Kernel(
        kernel_id="stranger", state=kernel_pb2.Kernel.STATE_RUNNING
    )
    await agent.connect()

    await eventually(lambda: _true(len(agent.directives) >= 1))
    assert set(agent.directives[0].destroy_kernel_ids) == {"stranger", batch.kernels[0].id}
    got = await _session(manager, lost.id)
    assert got.status.state == State.STATE_ERROR and got.status.reason == "KernelLost"
    got = await _session(manager, batch.id)
    assert got.status.state == State.STATE_TERMINATED and got.status.exit_code == 4
    assert got.status.reason == "BatchFailed"
    assert (await _session(manager, kept.id)).status.state == State.STATE_RUNNING
    # slots of the two finished sessions are free again; the kept one still holds its own
    record = await SqlAgentRepository(manager.running.db).get(agent.agent_id)
    assert record is not None and {k: str(v) for k, v in record.occupied.items()} == {
        "cpu": "1",
        "mem": str(1 << 30),
    }


async def test_a_second_stream_replaces_the_first(manager: Harness, agents: StartAgent) -> None:
    agent = await agents()
    async with grpc.aio.insecure_channel(manager.address) as channel:
        stub = rpb_grpc.AgentRegistryServiceStub(channel)
        queue: asyncio.Queue[rpb.HeartbeatRequest] = asyncio.Queue()
        queue.put_nowait(rpb.HeartbeatRequest(registration=agent.registration()))

        async def requests() -> AsyncIterator[rpb.HeartbeatRequest]:
            while True:
                yield await queue.get()

        first_task: asyncio.Task[Any] = asyncio.create_task(_drain(agent))
        call = stub.Heartbeat(requests(), metadata=((SERVICE_TOKEN_KEY, manager.token),))
        first = await call.read()
        assert first.registration_ack.agent_id == agent.agent_id
        # the agent's own (older) stream is closed by the manager
        await asyncio.wait_for(first_task, 5)
        call.cancel()


async def _drain(agent: ProtocolAgent) -> None:
    receiver = agent._tasks[0]
    await asyncio.wait({receiver})


async def test_heartbeat_kernel_lists_are_reconciled_too(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents()
    session = (await manager.sessions().CreateSession(pb.CreateSessionRequest(
        name="dies-quietly", image="python"))).session
    await asyncio.sleep(2.1)
    del agent.kernels[session.kernels[0].id]  # gone without an event, stream still open
    agent.kernels["stray"] = kernel_pb2.Kernel(kernel_id="stray",
                                               state=kernel_pb2.Kernel.STATE_RUNNING)
    await eventually(lambda: _state_is(manager, session.id, State.STATE_ERROR), within=8)
    got = await _session(manager, session.id)
    assert got.status.reason == "KernelLost"
    await eventually(lambda: _true("stray" not in agent.kernels))
