"""Coalesced liveness writes (touch_many), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from bai.manager.adapters.db import Database, SqlAgentRepository, run_migrations
from bai.manager.domain.model import AgentRegistration, AgentStatus, utcnow


async def test_touch_many_writes_each_time_and_revives_lost_agents(db_url: str) -> None:
    db = Database(db_url)
    try:
        await run_migrations(db)
        repo = SqlAgentRepository(db)
        start = utcnow() - timedelta(minutes=5)
        for agent_id in ("t-1", "t-2", "t-3"):
            await repo.register(AgentRegistration(
                agent_id=agent_id, address="127.0.0.1:1",
                capacity={"cpu": Decimal(1), "mem": Decimal(1 << 30)}, architecture="x86_64",
                resource_group="default", version="t", kernels=(), images=()), start)
        assert await repo.mark_lost(start + timedelta(seconds=1)) == ["t-1", "t-2", "t-3"]
        await repo.touch_many({"t-3": start + timedelta(seconds=2)})  # back before the batch
        now = utcnow()
        seen = {"t-1": now - timedelta(seconds=1), "t-2": now, "t-9": now}  # t-9 is unknown
        assert await repo.touch_many(seen) == ["t-1", "t-2"]
        for agent_id in ("t-1", "t-2"):
            agent = await repo.get(agent_id)
            assert agent is not None and agent.status is AgentStatus.ALIVE
            assert agent.last_heartbeat == seen[agent_id]
        untouched = await repo.get("t-3")
        assert untouched is not None and untouched.last_heartbeat == start + timedelta(seconds=2)
        assert await repo.touch_many({}) == []

        # ids are sent as one array literal on PostgreSQL: quotes, backslashes, commas, braces
        odd = 't-"4\\,{x} y'
        await repo.register(AgentRegistration(
            agent_id=odd, address="127.0.0.1:1", capacity={"cpu": Decimal(1)},
            architecture="x86_64", resource_group="default", version="t", kernels=(),
            images=()), start)
        assert await repo.mark_lost(start + timedelta(seconds=1)) == [odd]
        at = utcnow()
        assert await repo.touch_many({odd: at, "t-1": at}) == [odd]
        for agent_id in (odd, "t-1"):
            agent = await repo.get(agent_id)
            assert agent is not None and agent.status is AgentStatus.ALIVE
            assert agent.last_heartbeat == at
    finally:
        await db.close()
