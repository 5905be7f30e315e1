"""FIFO scheduler on the real repositories (both databases), including two racing schedulers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.model import (
    AgentImage,
    AgentRegistration,
    NewSession,
    SessionSpec,
    SessionState,
    SessionType,
    utcnow,
)
from bai.manager.domain.scheduling import INSUFFICIENT, SessionScheduler
from manager_harness import prepare_db

S = SessionState
GIB = 1 << 30


@dataclass
class World:
    db: Database
    sessions: SqlSessionRepository
    agents: SqlAgentRepository
    scheduler: SessionScheduler
    access_key: str

    async def agent(self, agent_id: str, cpu: str, mem: int = 8 * GIB,
                    images: tuple[str, ...] = ("img",), group: str = "default") -> None:
        await self.agents.register(AgentRegistration(
            agent_id=agent_id, address="127.0.0.1:1",
            capacity={"cpu": Decimal(cpu), "mem": Decimal(mem)}, architecture="x86_64",
            resource_group=group, version="t", kernels=(),
            images=tuple(AgentImage(ref=r, digest="", labels={}, size_bytes=0,
                                    architecture="x86_64") for r in images)), utcnow())

    async def session(self, name: str, cpu: str, mem: int = GIB, image: str = "img",
                      **slots: str) -> uuid.UUID:
        resources = {"cpu": Decimal(cpu), "mem": Decimal(mem),
                     **{k.replace("_", "."): Decimal(v) for k, v in slots.items()}}
        spec = SessionSpec(image=image, session_type=SessionType.INTERACTIVE,
                           resources=resources)
        record = await self.sessions.create(NewSession(
            id=uuid.uuid4(), name=name, access_key=self.access_key, domain="default",
            project="default", spec=spec, request_id=None, created_at=utcnow(),
            kernel_ids=(uuid.uuid4(),)))
        return record.id

    async def state(self, session_id: uuid.UUID) -> tuple[S, str, str]:
        record = await self.sessions.get(session_id)
        assert record is not None
        return record.state, record.reason, record.message


async def _world(db_url: str, access_key: str | None = None) -> World:
    if access_key is None:
        _, user = await prepare_db(db_url)
        access_key = user.access_key
    db = Database(db_url)
    sessions, agents = SqlSessionRepository(db), SqlAgentRepository(db)
    return World(db, sessions, agents, SessionScheduler(sessions, agents, InProcessEventBus()),
                 access_key)


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    w = await _world(db_url)
    try:
        yield w
    finally:
        await w.db.close()


async def test_fifo_with_capacity_limits_and_no_head_of_line_blocking(world: World) -> None:
    await world.agent("i-1", cpu="4")
    first = await world.session("first", cpu="3")
    too_big = await world.session("too-big", cpu="2")
    small = await world.session("small", cpu="1")
    assert await world.scheduler.schedule_once() == 2
    assert (await world.state(first))[0] is S.SCHEDULED
    state, reason, message = await world.state(too_big)
    assert state is S.PENDING and reason == INSUFFICIENT
    assert "cpu=2" in message and "i-1 lacks cpu=1" in message
    assert (await world.state(small))[0] is S.SCHEDULED
    agent = await world.agents.get("i-1")
    assert agent is not None and agent.occupied == {"cpu": 4, "mem": 2 * GIB}
    # nothing changes on another pass, and no new history is written for the waiting one
    assert await world.scheduler.schedule_once() == 0
    record = await world.sessions.get(too_big)
    assert record is not None and len(record.history) == 1


async def test_picks_agents_with_room_image_and_group_and_explains(world: World) -> None:
    await world.agent("i-small", cpu="1")
    await world.agent("i-big", cpu="8")
    await world.agent("i-other-group", cpu="64", group="gpu")
    await world.agent("i-no-image", cpu="64", images=("else",))
    placed = await world.session("fits-big", cpu="6")
    never = await world.session("never", cpu="16")
    missing_image = await world.session("no-img", cpu="1", image="nothing")
    gpu = await world.session("gpu", cpu="1", cuda_device="1")
    await world.scheduler.schedule_once()
    record = await world.sessions.get(placed)
    assert record is not None and record.kernels[0].agent_id == "i-big"
    assert "more than the total capacity" in (await world.state(never))[2]
    assert "holds image nothing" in (await world.state(missing_image))[2]
    assert "cuda.device=1" in (await world.state(gpu))[2]


async def test_lost_agents_get_no_placements(world: World) -> None:
    await world.agent("i-1", cpu="4")
    lost = await world.agents.mark_lost(utcnow())
    assert lost == ["i-1"]
    waiting = await world.session("waits", cpu="1")
    await world.scheduler.schedule_once()
    assert (await world.state(waiting))[2].startswith("no ALIVE agent")
    assert await world.agents.touch("i-1", utcnow()) is not None  # it comes back
    await world.scheduler.schedule_once()
    assert (await world.state(waiting))[0] is S.SCHEDULED


async def test_two_racing_schedulers_never_double_allocate(world: World) -> None:
    for i in range(3):
        await world.agent(f"i-{i}", cpu="5", mem=100 * GIB)
    ids = [await world.session(f"race-{i:02d}", cpu="1") for i in range(40)]
    other = await _world(world.db.url.render_as_string(hide_password=False), world.access_key)
    try:
        for _ in range(3):
            await asyncio.gather(world.scheduler.schedule_once(), other.scheduler.schedule_once(),
                                 world.scheduler.schedule_once(), other.scheduler.schedule_once())
    finally:
        await other.db.close()
    records = [await world.sessions.get(i) for i in ids]
    placed = [r for r in records if r is not None and r.state is S.SCHEDULED]
    assert len(placed) == 15
    for i in range(3):
        agent = await world.agents.get(f"i-{i}")
        assert agent is not None
        on_agent = [r for r in placed if r.kernels[0].agent_id == agent.id]
        assert agent.occupied["cpu"] == len(on_agent) <= 5
        assert all(len(r.history) == 2 for r in on_agent)  # PENDING, SCHEDULED exactly once
    # (strict FIFO holds for one scheduler; two racing ones may skip a row the other locked)
