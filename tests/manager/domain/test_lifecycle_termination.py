"""Cancellation of pending sessions and termination in parallel, batched per agent.

Real manager over gRPC, ProtocolAgents and simulated agents over real gRPC, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from bai.agent.domain import AgentService, Capacity
from bai.agent.domain.model import KernelRequest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.agent.runtime.simulated import DEFAULT_SIM_IMAGE, SimulatedKernelRuntime
from bai.agent.server import start_server
from bai.manager.adapters.agent_client import GrpcAgentClientPool
from bai.manager.adapters.db import Database, SqlSessionRepository, run_migrations
from bai.manager.adapters.db.accounts import bootstrap_admin
from bai.manager.adapters.db.tables import AgentRow
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.errors import IllegalTransition, SessionNotFound
from bai.manager.domain.lifecycle.batched_moves import BatchedMoves
from bai.manager.domain.lifecycle.destroyer import KernelDestroyer
from bai.manager.domain.model import (
    NewSession,
    SessionSpec,
    SessionState,
    SessionType,
    utcnow,
)
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from manager_harness import Harness, ProtocolAgent
from sqlalchemy import select

State = session_pb2.Session.State


async def test_cancelling_a_pending_session_calls_no_agent(
    manager: Harness, agents: Callable[..., Awaitable[ProtocolAgent]]
) -> None:
    agent = await agents(cpu="1")
    stub = manager.sessions()
    pending = (await stub.CreateSession(spb.CreateSessionRequest(
        image="python", enqueue_only=True, resources={"cpu": "4", "mem": "1g"}))).session
    assert pending.status.state == State.STATE_PENDING
    done = (await stub.DeleteSession(spb.DeleteSessionRequest(session_ref=pending.id))).session
    assert done.status.state == State.STATE_CANCELLED
    assert done.status.reason == "UserRequested"
    assert agent.create_calls == 0 and agent.destroyed == []
    # Cancelling again is a no-op that answers the same.
    again = (await stub.DeleteSession(spb.DeleteSessionRequest(session_ref=pending.id))).session
    assert again.status.state == State.STATE_CANCELLED


async def test_many_cluster_sessions_terminated_concurrently(manager: Harness) -> None:
    fleet = SimulatedFleet(FleetConfig(manager=manager.address, service_token=manager.token,
                                       count=2, cpu=Decimal(16), mem=64 << 30))
    await fleet.start()
    try:
        await fleet.wait_registered(20)
        stub = manager.sessions()
        request = spb.CreateSessionRequest(image="python", enqueue_only=True, cluster_size=2,
                                           resources={"cpu": "0.5", "mem": "512m"})
        ids = [r.session.id for r in await asyncio.gather(
            *(stub.CreateSession(request) for _ in range(20)))]
        deadline = time.monotonic() + 30
        while True:
            replies = await asyncio.gather(*(stub.GetSession(
                spb.GetSessionRequest(session_ref=i)) for i in ids))
            if all(r.session.status.state == State.STATE_RUNNING for r in replies):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert sum(len(a.service.list_kernels()) for a in fleet.agents.values()) == 40

        done = await asyncio.gather(*(stub.DeleteSession(spb.DeleteSessionRequest(
            session_ref=i)) for i in ids))
        assert {d.session.status.state for d in done} == {State.STATE_TERMINATED}
        assert all(a.service.list_kernels() == [] for a in fleet.agents.values())
        async with manager.running.db.read() as s:
            occupied = [a.occupied for a in (await s.scalars(select(AgentRow))).all()]
        assert all(Decimal(o.get("cpu", "0")) == 0 for o in occupied), occupied
    finally:
        await fleet.close()


async def test_destroyer_batches_concurrent_destructions_per_agent() -> None:
    """40 concurrent requests for one agent travel in a handful of DestroyKernels calls."""
    runtime = SimulatedKernelRuntime()
    service = AgentService(agent_id="sim-batch", kernel_root=Path("/nonexistent"),
                           capacity=Capacity(cpu=Decimal(8), mem=8 << 30), runtime=runtime,
                           connect_runner=runtime.connect_runner)
    server = await start_server(service, listen="127.0.0.1:0", service_token="t")
    address = f"127.0.0.1:{server.port}"
    client = GrpcAgentClientPool("t")
    try:
        kernel_ids = [str(uuid.uuid4()) for _ in range(40)]
        for kid in kernel_ids:
            await service.create_kernel(KernelRequest(
                kernel_id=kid, session_id=str(uuid.uuid4()), image=DEFAULT_SIM_IMAGE,
                slots={"cpu": "0.1", "mem": str(1 << 20)}))
        destroyer = KernelDestroyer(client)
        results = await asyncio.gather(*(destroyer.destroy(address, [(kid, "test")])
                                         for kid in kernel_ids))
        assert results == [[""]] * 40
        assert destroyer.calls <= 2, destroyer.calls
        assert service.list_kernels() == []
        # Unknown kernels are no error (idempotent); an unreachable agent is, for each kernel.
        assert await destroyer.destroy(address, [(kernel_ids[0], "again")]) == [""]
        errors = await destroyer.destroy("127.0.0.1:1", [("a", "x"), ("b", "x")])
        assert all(errors) and len(errors) == 2
    finally:
        await client.close()
        await server.server.stop(None)


async def test_concurrent_moves_commit_together(db_url: str) -> None:
    """BatchedMoves: concurrent moves share one transaction; each caller gets its own result."""
    db = Database(db_url)
    try:
        await run_migrations(db)
        access_key = "AKBATCH" + uuid.uuid4().hex[:10].upper()
        await bootstrap_admin(db, access_key, "s" * 40)
        repo = SqlSessionRepository(db)
        spec = SessionSpec(image="img", session_type=SessionType.INTERACTIVE,
                           resources={"cpu": Decimal(1)})
        ids = []
        for n in range(12):
            sid = uuid.uuid4()
            await repo.create(NewSession(id=sid, name=f"batch-{n:02d}", access_key=access_key,
                                         domain="default", project="default", spec=spec,
                                         request_id=None, created_at=utcnow(),
                                         kernel_ids=(uuid.uuid4(),)))
            ids.append(sid)
        moves = BatchedMoves(repo, InProcessEventBus())
        first = await moves.move(ids[0], SessionState.PENDING, SessionState.CANCELLED, "Test", "1")
        assert first.state is SessionState.CANCELLED and moves.commits == 1
        results = await asyncio.gather(
            *(moves.move(i, SessionState.PENDING, SessionState.CANCELLED, "Test", f"m{n}")
              for n, i in enumerate(ids)), return_exceptions=True)
        assert isinstance(results[0], IllegalTransition)  # already CANCELLED
        assert all(r.state is SessionState.CANCELLED for r in results[1:])  # type: ignore[union-attr]
        assert [r.history[-1].message for r in results[1:]] == [  # type: ignore[union-attr]
            f"m{n}" for n in range(1, 12)]
        assert moves.commits == 2  # 12 concurrent moves, one transaction
        missing = uuid.uuid4()
        with pytest.raises(SessionNotFound):
            await moves.move(missing, SessionState.PENDING, SessionState.CANCELLED, "Test", "x")
    finally:
        await db.close()
