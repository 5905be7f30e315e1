"""The manager with simulated agents (bai.agent.fleet): real gRPC agents without containers.

Covers placement onto a fleet with a second scheduler racing on the same database (never
over-allocates), parallel termination, and liveness: a killed agent goes LOST in time while one
whose heartbeats arrive 2 s late never does.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.adapters.db.tables import AgentRow, KernelRow
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.model import AgentStatus
from bai.manager.domain.scheduling import SessionScheduler
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from manager_harness import Harness, manager_config, prepare_db
from sqlalchemy import select

State = session_pb2.Session.State


async def _fleet(harness: Harness, count: int, **kw: object) -> SimulatedFleet:
    fleet = SimulatedFleet(FleetConfig(manager=harness.address, service_token=harness.token,
                                       count=count, **kw))  # type: ignore[arg-type]
    await fleet.start()
    await fleet.wait_registered(20)
    return fleet


async def _states(stub: object, ids: list[str]) -> list[int]:
    replies = await asyncio.gather(*(stub.GetSession(  # type: ignore[attr-defined]
        spb.GetSessionRequest(session_ref=i)) for i in ids))
    return [r.session.status.state for r in replies]


async def _racing_scheduler(db_url: str, stop: asyncio.Event) -> int:
    """A second scheduler (own engine and connections) on the same database."""
    db = Database(db_url)
    scheduler = SessionScheduler(SqlSessionRepository(db), SqlAgentRepository(db),
                              InProcessEventBus(), chunk_size=4)
    placed = 0
    try:
        while not stop.is_set():
            placed += await scheduler.schedule_once()
            await asyncio.sleep(0.01)
    finally:
        await db.close()
    return placed


async def test_fleet_placement_never_over_allocates_and_terminates_in_parallel(
    manager: Harness, db_url: str
) -> None:
    fleet = await _fleet(manager, 12, cpu=Decimal(2), mem=8 << 30)
    try:
        stub = manager.sessions()
        stop = asyncio.Event()
        racer = asyncio.create_task(_racing_scheduler(db_url, stop))
        request = spb.CreateSessionRequest(image="python", enqueue_only=True,
                                           resources={"cpu": "1", "mem": "1g"})
        replies = await asyncio.gather(*(stub.CreateSession(request) for _ in range(30)))
        ids = [r.session.id for r in replies]
        deadline = time.monotonic() + 30
        while True:  # 24 slots for 30 sessions: 24 run, 6 wait
            states = await _states(stub, ids)
            if states.count(State.STATE_RUNNING) == 24 and \
                    states.count(State.STATE_PENDING) == 6:
                break
            assert time.monotonic() < deadline, sorted(states)
            await asyncio.sleep(0.1)
        stop.set()
        await racer

        db = manager.running.db
        async with db.read() as s:
            agents = (await s.scalars(select(AgentRow))).all()
            kernels = (await s.scalars(select(KernelRow).where(KernelRow.agent_id.is_not(None))))
            placed = kernels.all()
        for agent in agents:
            assert Decimal(agent.occupied.get("cpu", "0")) <= Decimal(agent.capacity["cpu"])
            held = fleet.agents[agent.id].service.list_kernels()
            assert len(held) == sum(1 for k in placed if k.agent_id == agent.id) <= 2
        assert len({k.id for k in placed}) == len(placed) == 24

        running = [i for i, s in zip(ids, states, strict=True) if s == State.STATE_RUNNING]
        # Deleted concurrently; how fast that is belongs to bench/scheduler.py, not to a test.
        done = await asyncio.gather(*(stub.DeleteSession(spb.DeleteSessionRequest(
            session_ref=i)) for i in running))
        assert {d.session.status.state for d in done} == {State.STATE_TERMINATED}
        deadline = time.monotonic() + 15  # the freed slots go to the 6 waiting sessions
        while (await _states(stub, ids)).count(State.STATE_RUNNING) != 6:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert sum(len(a.service.list_kernels()) for a in fleet.agents.values()) == 6
    finally:
        await fleet.close()


@pytest.fixture
async def short_manager(db_url: str) -> AsyncIterator[Harness]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    config = manager_config(db_url, token, heartbeat_interval_ms=500, lost_timeout=4.0)
    async with run_manager(config) as running:
        harness = Harness(running=running, token=token, admin=admin, user=user, db_url=db_url)
        try:
            yield harness
        finally:
            await harness.close()


async def test_killed_agent_goes_lost_delayed_heartbeats_do_not(short_manager: Harness) -> None:
    fleet = await _fleet(short_manager, 4)
    try:
        agents = SqlAgentRepository(short_manager.running.db)
        fleet.set_delay("sim-00002", 2.0)
        await fleet.kill("sim-00001")
        killed_at = time.monotonic()
        lost_after = None
        while time.monotonic() - killed_at < 7.0:
            for agent_id in ("sim-00002", "sim-00003", "sim-00004"):
                record = await agents.get(agent_id)
                assert record is not None and record.status is AgentStatus.ALIVE, agent_id
            record = await agents.get("sim-00001")
            assert record is not None
            if lost_after is None and record.status is AgentStatus.LOST:
                lost_after = time.monotonic() - killed_at
            await asyncio.sleep(0.1)
        assert lost_after is not None and lost_after <= 15.0
        assert short_manager.running.registry.heartbeats > 0
    finally:
        await fleet.close()
