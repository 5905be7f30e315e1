"""Batched placement commits and the scheduler's agent snapshot, on SQLite and PostgreSQL:
racing schedulers committing small chunks never over-allocate, a refused placement writes
nothing, and a pass sees capacity freed, agents added and agents lost since the last pass."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.adapters.db.placement import place_batch
from bai.manager.adapters.db.scheduling import SqlSchedulingRepository
from bai.manager.adapters.db.tables import KeypairResourcePolicyRow, StatusHistoryRow
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
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import PlaceOutcome
from bai.manager.domain.scheduling import (
    INSUFFICIENT,
    Allocation,
    QueueView,
    ResourceGroup,
    SessionScheduler,
    UsageSample,
)
from manager_harness import prepare_db
from sqlalchemy import func, select, update

S = SessionState
GIB = 1 << 30


@dataclass
class Bed:
    db: Database
    sessions: SqlSessionRepository
    agents: SqlAgentRepository
    access_key: str

    def scheduler(self, db: Database | None = None, *, chunk_size: int = 1000) -> SessionScheduler:
        db = db or self.db
        return SessionScheduler(SqlSessionRepository(db), SqlAgentRepository(db),
                                InProcessEventBus(), SqlSchedulingRepository(db),
                                chunk_size=chunk_size)

    async def agent(self, agent_id: str, cpu: str, group: str = "default") -> None:
        await self.agents.register(AgentRegistration(
            agent_id=agent_id, address="127.0.0.1:1",
            capacity={"cpu": Decimal(cpu), "mem": Decimal(64 * GIB)}, architecture="x86_64",
            resource_group=group, version="t", kernels=(),
            images=(AgentImage(ref="img", digest="", labels={}, size_bytes=0,
                               architecture="x86_64"),)), utcnow())

    async def session(self, name: str, cpu: str = "1", group: str = "default") -> uuid.UUID:
        spec = SessionSpec(image="img", session_type=SessionType.INTERACTIVE,
                           resources={"cpu": Decimal(cpu), "mem": Decimal(GIB)},
                           resource_group=group)
        record = await self.sessions.create(NewSession(
            id=uuid.uuid4(), name=name, access_key=self.access_key, domain="default",
            project="default", spec=spec, request_id=None, created_at=utcnow(),
            kernel_ids=(uuid.uuid4(),)))
        return record.id

    async def state(self, sid: uuid.UUID) -> S:
        record = await self.sessions.get(sid)
        assert record is not None
        return record.state

    async def scheduled_rows(self, sid: uuid.UUID) -> int:
        async with self.db.read() as s:
            return int(await s.scalar(select(func.count()).select_from(StatusHistoryRow).where(
                StatusHistoryRow.session_id == sid, StatusHistoryRow.state == "SCHEDULED"))
                or 0)

    async def finish(self, sid: uuid.UUID) -> None:
        """SCHEDULED → … → TERMINATED, which releases what the session occupied."""
        for source, target in ((S.SCHEDULED, S.PREPARING), (S.PREPARING, S.CREATING),
                               (S.CREATING, S.RUNNING), (S.RUNNING, S.TERMINATED)):
            await self.sessions.transition(sid, frozenset({source}), target, "t", "",
                                           at=utcnow())


@pytest.fixture
async def bed(db_url: str) -> AsyncIterator[Bed]:
    _, user = await prepare_db(db_url)
    db = Database(db_url)
    async with db.write() as s:  # no per-key session cap: capacity is what limits here
        await s.execute(update(KeypairResourcePolicyRow).values(max_concurrent_sessions=0))
    try:
        yield Bed(db, SqlSessionRepository(db), SqlAgentRepository(db), user.access_key)
    finally:
        await db.close()


async def test_racing_schedulers_committing_small_chunks_never_over_allocate(bed: Bed) -> None:
    for i in range(6):
        await bed.agent(f"a-{i}", cpu="3")
    ids = [await bed.session(f"s-{i:02d}") for i in range(30)]
    other_db = Database(bed.db.url.render_as_string(hide_password=False))
    try:
        # chunks of 4: many transactions of both schedulers interleave on the same agent rows
        mine, theirs = bed.scheduler(chunk_size=4), bed.scheduler(other_db, chunk_size=4)
        for _ in range(2):
            await asyncio.gather(mine.schedule_once(), theirs.schedule_once())
    finally:
        await other_db.close()
    records = [await bed.sessions.get(i) for i in ids]
    placed = [r for r in records if r is not None and r.state is S.SCHEDULED]
    assert len(placed) == 18  # 6 agents x 3 cpu
    for i in range(6):
        agent = await bed.agents.get(f"a-{i}")
        assert agent is not None
        on_agent = [r for r in placed if r.kernels[0].agent_id == agent.id]
        assert agent.occupied["cpu"] == len(on_agent) == 3
        assert all(r.kernels[0].occupied_slots["cpu"] == 1 for r in on_agent)
    for r in placed:
        assert await bed.scheduled_rows(r.id) == 1  # placed exactly once
    waiting = [r for r in records if r is not None and r.state is S.PENDING]
    assert len(waiting) == 12 and all(r.reason == INSUFFICIENT for r in waiting)


async def test_a_refused_placement_writes_nothing(bed: Bed) -> None:
    await bed.agent("a-0", cpu="2")
    first, second, third, gone = [await bed.session(f"s-{i}") for i in range(4)]
    assert await place_batch(bed.db, [Placement(gone, "a-0", {"cpu": Decimal(1)})],
                             utcnow()) == {gone: PlaceOutcome.PLACED}
    outcome = await place_batch(bed.db, [
        Placement(first, "a-0", {"cpu": Decimal(1)}),
        Placement(second, "a-0", {"cpu": Decimal(1)}),  # the agent has 1 cpu left: refused
        Placement(third, "no-such-agent", {"cpu": Decimal(1)}),
        Placement(gone, "a-0", {"cpu": Decimal(1)}),  # no longer PENDING
    ], utcnow())
    assert outcome == {first: PlaceOutcome.PLACED, second: PlaceOutcome.AGENT_CHANGED,
                       third: PlaceOutcome.AGENT_CHANGED, gone: PlaceOutcome.SESSION_GONE}
    agent = await bed.agents.get("a-0")
    assert agent is not None and agent.occupied == {"cpu": Decimal(2)}
    for refused in (second, third):
        record = await bed.sessions.get(refused)
        assert record is not None and record.state is S.PENDING
        assert record.kernels[0].agent_id is None and not record.kernels[0].occupied_slots
        assert await bed.scheduled_rows(refused) == 0
    record = await bed.sessions.get(first)
    assert record is not None and record.state is S.SCHEDULED
    assert (record.reason, record.message) == ("Scheduled", "placed on agent a-0")
    assert record.kernels[0].agent_id == "a-0"
    assert await bed.scheduled_rows(gone) == 1


async def test_each_pass_sees_freed_capacity_new_agents_and_lost_agents(bed: Bed) -> None:
    scheduler = bed.scheduler()
    await bed.agent("a-0", cpu="1")
    first, second = await bed.session("first"), await bed.session("second")
    assert await scheduler.schedule_once() == 1
    assert (await bed.state(first), await bed.state(second)) == (S.SCHEDULED, S.PENDING)
    await bed.finish(first)  # frees a-0 behind the scheduler's back
    assert await scheduler.schedule_once() == 1
    assert await bed.state(second) is S.SCHEDULED
    third = await bed.session("third")
    assert await scheduler.schedule_once() == 0
    await bed.agent("a-1", cpu="1")  # registers after the last pass
    assert await scheduler.schedule_once() == 1
    record = await bed.sessions.get(third)
    assert record is not None and record.kernels[0].agent_id == "a-1"
    await bed.finish(third)
    assert await bed.agents.mark_lost(utcnow() + timedelta(seconds=1)) == ["a-0", "a-1"]
    fourth = await bed.session("fourth")
    assert await scheduler.schedule_once() == 0
    record = await bed.sessions.get(fourth)
    assert record is not None and record.state is S.PENDING
    assert record.message.startswith("no ALIVE agent")


class CountingRules(SqlSchedulingRepository):
    """The SQL repository, counting the reads that ordering queues make."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.reads: dict[str, int] = {"usage": 0, "weights": 0, "allocations": 0}

    async def usage(self, since: datetime) -> list[UsageSample]:
        self.reads["usage"] += 1
        return await super().usage(since)

    async def weights(self) -> dict[tuple[str, str], Decimal]:
        self.reads["weights"] += 1
        return await super().weights()

    async def allocations(self) -> list[Allocation]:
        self.reads["allocations"] += 1
        return await super().allocations()


async def test_ordering_reads_happen_once_per_pass_for_all_groups(bed: Bed) -> None:
    rules = CountingRules(bed.db)
    for name in ("default", "gpu", "batch"):
        await rules.put_resource_group(ResourceGroup(
            name, scheduler="fair-share" if name != "batch" else "drf"))
    for name in ("default", "gpu", "batch"):
        await bed.agent(f"a-{name}", cpu="1", group=name)
        await bed.session(f"s-{name}", group=name)
    scheduler = SessionScheduler(bed.sessions, bed.agents, InProcessEventBus(), rules)
    assert await scheduler.schedule_once() == 3
    # two fair-share groups with the same window, one DRF group: one read of each per pass
    assert rules.reads == {"usage": 1, "weights": 1, "allocations": 1}
    position = QueueView(rules, bed.agents, scheduler.plugins)
    waiting = await bed.session("waiting", group="gpu")
    assert await position.position(waiting, "gpu") == 1
    assert rules.reads == {"usage": 2, "weights": 2, "allocations": 1}
