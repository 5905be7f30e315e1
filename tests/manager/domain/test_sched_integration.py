"""The scheduler with its plugins, predicates and policies, through real placement on SQLite and
PostgreSQL (SqlSchedulingRepository + SessionScheduler + place_batch)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.adapters.db.scheduling import SqlSchedulingRepository
from bai.manager.adapters.db.tables import (
    KeypairResourcePolicyRow,
    KeypairRow,
    ProjectRow,
    StatusHistoryRow,
    UserResourcePolicyRow,
)
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import (
    AgentImage,
    AgentRegistration,
    NewSession,
    SessionSpec,
    SessionState,
    SessionType,
    utcnow,
)
from bai.manager.domain.scheduling import QueueView, ResourceGroup, SessionScheduler
from manager_harness import Keys, prepare_db
from sqlalchemy import update

S = SessionState
GIB = 1 << 30


@dataclass
class World:
    db: Database
    sessions: SqlSessionRepository
    agents: SqlAgentRepository
    rules: SqlSchedulingRepository
    bus: InProcessEventBus
    scheduler: SessionScheduler
    admin: Keys
    user: Keys

    async def agent(self, agent_id: str, cpu: str = "4", mem: int = 16 * GIB,
                    group: str = "default", **extra: str) -> None:
        capacity = {"cpu": Decimal(cpu), "mem": Decimal(mem),
                    **{k.replace("_", "."): Decimal(v) for k, v in extra.items()}}
        await self.agents.register(AgentRegistration(
            agent_id=agent_id, address="127.0.0.1:1", capacity=capacity,
            architecture="x86_64", resource_group=group, version="t", kernels=(),
            images=(AgentImage(ref="img", digest="", labels={}, size_bytes=0,
                               architecture="x86_64"),)), utcnow())

    async def session(self, name: str, cpu: str = "1", *, key: Keys | None = None,
                      group: str = "default", project: str = "default", **kw: Any) -> uuid.UUID:
        extra = {k.replace("_", "."): Decimal(v) for k, v in kw.pop("slots", {}).items()}
        spec = SessionSpec(image="img", session_type=SessionType.INTERACTIVE,
                           resources={"cpu": Decimal(cpu), "mem": Decimal(GIB), **extra},
                           resource_group=group, **kw)
        record = await self.sessions.create(NewSession(
            id=uuid.uuid4(), name=name, access_key=(key or self.user).access_key,
            domain="default", project=project, spec=spec, request_id=None,
            created_at=utcnow(), kernel_ids=tuple(uuid.uuid4() for _ in
                                                  range(spec.cluster_size))))
        return record.id

    async def state(self, sid: uuid.UUID) -> tuple[S, str, str]:
        r = await self.sessions.get(sid)
        assert r is not None
        return r.state, r.reason, r.message

    async def agent_of(self, sid: uuid.UUID) -> str | None:
        r = await self.sessions.get(sid)
        assert r is not None
        return r.kernels[0].agent_id

    async def finish(self, sid: uuid.UUID, exit_code: int, at: datetime | None = None) -> None:
        """SCHEDULED → … → RUNNING → TERMINATED with ``exit_code``."""
        path = ((S.SCHEDULED, S.PREPARING), (S.PREPARING, S.CREATING), (S.CREATING, S.RUNNING))
        for source, target in path:
            await self.sessions.transition(sid, frozenset({source}), target, "t", "",
                                           at=utcnow())
        await self.sessions.transition(sid, frozenset({S.RUNNING}), S.TERMINATED, "t", "",
                                       at=at or utcnow(), exit_code=exit_code)

    async def group(self, **kw: Any) -> None:
        await self.rules.put_resource_group(ResourceGroup(**kw))

    async def sql(self, statement: Any) -> None:
        async with self.db.write() as s:
            await s.execute(statement)


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    admin, user = await prepare_db(db_url)
    db = Database(db_url)
    sessions, agents, rules = (SqlSessionRepository(db), SqlAgentRepository(db),
                               SqlSchedulingRepository(db))
    bus = InProcessEventBus()
    try:
        yield World(db, sessions, agents, rules, bus,
                    SessionScheduler(sessions, agents, bus, rules), admin, user)
    finally:
        await db.close()


async def test_group_scheduler_and_selector_are_chosen_by_name(world: World) -> None:
    await world.group(name="packed", scheduler="lifo", agent_selector="concentrated")
    await world.agent("p-1", cpu="2", group="packed")
    await world.agent("p-2", cpu="2", group="packed")
    first = await world.session("first", group="packed")
    second = await world.session("second", group="packed")
    third = await world.session("third", group="packed", cpu="2")
    assert await world.scheduler.schedule_once() == 3
    # lifo: third (2 cpu) went first and filled one agent; concentrated then packs the two
    # 1-cpu sessions onto the other one (dispersed would have split them too, but first)
    full = await world.agent_of(third)
    assert full in ("p-1", "p-2")
    assert await world.agent_of(second) == await world.agent_of(first) != full


async def test_round_robin_and_dispersed_spread_sessions(world: World) -> None:
    await world.group(name="rr", scheduler="fifo", agent_selector="round-robin")
    for i in range(3):
        await world.agent(f"rr-{i}", cpu="8", group="rr")
    ids = [await world.session(f"rr-s{i}", group="rr") for i in range(6)]
    assert await world.scheduler.schedule_once() == 6
    assert [await world.agent_of(i) for i in ids] == ["rr-0", "rr-1", "rr-2"] * 2


async def test_priority_goes_first_and_unschedulable_never_blocks(world: World) -> None:
    await world.agent("a-1", cpu="2")
    huge = await world.session("huge", cpu="64", priority=90)
    low = await world.session("low", priority=1)
    normal = await world.session("normal")
    high = await world.session("high", priority=50)
    assert await world.scheduler.schedule_once() == 2
    assert (await world.state(high))[0] is S.SCHEDULED
    assert (await world.state(normal))[0] is S.SCHEDULED
    assert (await world.state(low))[:2] == (S.PENDING, "InsufficientResources")
    assert "more than the total capacity" in (await world.state(huge))[2]
    view = QueueView(world.rules, world.agents, world.scheduler.plugins)
    assert await view.position(huge, "default") == 1
    assert await view.position(low, "default") == 2
    assert await view.position(high, "default") is None


async def test_drf_between_two_keys_through_placement(world: World) -> None:
    await world.group(name="default", scheduler="drf", agent_selector="dispersed")
    await world.agent("d-1", cpu="4", mem=64 * GIB)
    # the admin key already runs a 2-cpu session; both keys then queue 1-cpu sessions
    running = await world.session("adm-running", cpu="2", key=world.admin)
    assert await world.scheduler.schedule_once() == 1
    admin_ids = [await world.session(f"adm-{i}", key=world.admin) for i in range(2)]
    user_ids = [await world.session(f"usr-{i}") for i in range(2)]
    assert await world.scheduler.schedule_once() == 2
    placed = {i for i in admin_ids + user_ids if (await world.state(i))[0] is S.SCHEDULED}
    assert placed == set(user_ids)  # the admin key's dominant share was already 0.5
    assert (await world.state(running))[0] is S.SCHEDULED


async def test_fair_share_uses_recent_usage(world: World) -> None:
    await world.group(name="default", scheduler="fair-share", agent_selector="dispersed",
                      scheduler_opts={"half_life_seconds": 3600, "charge_seconds": 60})
    await world.agent("f-1", cpu="2")
    # the admin user ran 2 cpu for a while (placed, then terminated)
    used = await world.session("adm-used", cpu="2", key=world.admin)
    assert await world.scheduler.schedule_once() == 1
    await world.finish(used, 0, at=utcnow() - timedelta(minutes=30))
    await world.sql(update(StatusHistoryRow).where(
        StatusHistoryRow.session_id == used, StatusHistoryRow.state == "SCHEDULED")
        .values(at=utcnow() - timedelta(hours=1)))
    adm = await world.session("adm-next", key=world.admin)
    usr = await world.session("usr-next")
    await world.sql(update(ProjectRow).values(total_resource_slots={"cpu": "1"}))
    assert await world.scheduler.schedule_once() == 1  # the project cap allows one
    assert (await world.state(usr))[0] is S.SCHEDULED
    assert (await world.state(adm))[:2] == (S.PENDING, "ProjectResourceLimit")


async def test_group_membership_start_time_and_inactive_groups(world: World) -> None:
    await world.group(name="private", allowed_projects=frozenset({"default/other"}))
    await world.group(name="off", is_active=False)
    await world.agent("g-1", group="private")
    await world.agent("g-2", group="off")
    await world.agent("g-3")
    denied = await world.session("denied", group="private")
    off = await world.session("off-one", group="off")
    later = await world.session("later", starts_at=utcnow() + timedelta(hours=1))
    now = await world.session("past", starts_at=utcnow() - timedelta(seconds=1))
    async with world.bus.subscribe() as events:
        assert await world.scheduler.schedule_once() == 1
        seen = []
        while (event := await events.next(0.05)) is not None:
            assert isinstance(event, SessionChanged)
            seen.append((event.session_id, event.reason))
    assert (await world.state(now))[0] is S.SCHEDULED
    state, reason, message = await world.state(denied)
    assert (state, reason) == (S.PENDING, "ResourceGroupNotAllowed")
    assert "default/default may not use resource group 'private'" in message
    assert (await world.state(off))[1] == "ResourceGroupInactive"
    assert (await world.state(later))[1] == "StartTimeNotReached"
    assert {(denied, "ResourceGroupNotAllowed"), (later, "StartTimeNotReached"),
            (now, "Scheduled")} <= set(seen)
    # the scheduling history: one PENDING row per reason, not one per pass
    await world.scheduler.schedule_once()
    record = await world.sessions.get(later)
    assert record is not None
    assert [(h.state, h.reason) for h in record.history] == [
        (S.PENDING, "SessionEnqueued"), (S.PENDING, "StartTimeNotReached")]


async def test_dependencies_wait_then_run_or_cancel(world: World) -> None:
    await world.agent("x-1", cpu="8")
    first = await world.session("first")
    failing = await world.session("failing")
    after = await world.session("after", dependencies=(first,))
    doomed = await world.session("doomed", dependencies=(failing,))
    assert await world.scheduler.schedule_once() == 2
    assert (await world.state(after))[1] == "DependenciesNotReady"
    assert "waiting for first (PENDING) to finish" in (await world.state(after))[2]
    await world.finish(first, 0)
    await world.finish(failing, 3)
    assert await world.scheduler.schedule_once() == 1
    assert (await world.state(after))[0] is S.SCHEDULED
    state, reason, message = await world.state(doomed)
    assert (state, reason) == (S.CANCELLED, "DependencyFailed")
    assert "exit code 3" in message


async def test_keypair_and_user_policies(world: World) -> None:
    await world.agent("k-1", cpu="16", mem=64 * GIB)
    await world.sql(update(KeypairResourcePolicyRow).values(max_concurrent_sessions=2))
    ids = [await world.session(f"conc-{i}") for i in range(3)]
    assert await world.scheduler.schedule_once() == 2
    state, reason, message = await world.state(ids[2])
    assert (state, reason) == (S.PENDING, "KeypairConcurrencyLimit")
    assert "'default'" in message
    # a keypair slot cap, in a policy of its own for the admin key
    async with world.db.write() as s:
        s.add(KeypairResourcePolicyRow(name="small", created_at=utcnow(),
                                       total_resource_slots={"cpu": "3"},
                                       max_concurrent_sessions=0))
        await s.flush()
        await s.execute(update(KeypairRow).where(KeypairRow.access_key == world.admin.access_key)
                        .values(resource_policy="small"))
    a = await world.session("adm-a", cpu="2", key=world.admin)
    b = await world.session("adm-b", cpu="2", key=world.admin)
    assert await world.scheduler.schedule_once() == 1
    assert (await world.state(a))[0] is S.SCHEDULED
    state, reason, message = await world.state(b)
    assert reason == "KeypairResourceLimit" and "limit cpu=3" in message
    # a user cap across keys
    await world.sql(update(UserResourcePolicyRow).values(total_resource_slots={"mem": str(GIB)}))
    await world.sql(update(KeypairResourcePolicyRow).values(max_concurrent_sessions=0))
    assert await world.scheduler.schedule_once() == 0
    assert (await world.state(ids[2]))[1] == "UserResourceLimit"


async def test_accelerator_and_cluster_slots(world: World) -> None:
    await world.agent("gpu-1", cpu="8", cuda_device="2", cuda_shares="4")
    await world.agent("cpu-1", cpu="8")
    whole = [await world.session(f"dev-{i}", slots={"cuda_device": "1"}) for i in range(3)]
    shares = await world.session("shares", slots={"cuda_shares": "2.5"})
    pair = await world.session("pair", cluster_size=2)
    assert await world.scheduler.schedule_once() == 4
    assert [await world.agent_of(i) for i in whole[:2]] == ["gpu-1", "gpu-1"]
    _, reason, message = await world.state(whole[2])
    assert reason == "InsufficientResources" and "lacks cuda.device=1" in message
    assert await world.agent_of(shares) == "gpu-1"
    gpu = await world.agents.get("gpu-1")
    assert gpu is not None and gpu.occupied["cuda.device"] == 2
    assert gpu.occupied["cuda.shares"] == Decimal("2.5")
    record = await world.sessions.get(pair)
    assert record is not None and record.state is S.SCHEDULED
    assert {k.agent_id for k in record.kernels} == {record.kernels[0].agent_id}
    assert all(k.occupied_slots["cpu"] == 1 for k in record.kernels)
    holder = await world.agents.get(record.kernels[0].agent_id or "")
    assert holder is not None and holder.occupied["cpu"] >= 2


async def test_unknown_plugin_names_explain_themselves(world: World) -> None:
    await world.group(name="broken", scheduler="nope")
    await world.agent("b-1", group="broken")
    sid = await world.session("stuck", group="broken")
    assert await world.scheduler.schedule_once() == 0
    state, reason, message = await world.state(sid)
    assert (state, reason) == (S.PENDING, "SchedulerNotFound")
    assert "'nope'" in message and "fifo" in message


async def test_two_schedulers_with_plugins_never_over_allocate(world: World) -> None:
    await world.group(name="default", scheduler="drf", agent_selector="concentrated")
    for i in range(3):
        await world.agent(f"r-{i}", cpu="5", mem=100 * GIB)
    for i in range(24):
        await world.session(f"race-{i:02d}", key=world.user if i % 2 else world.admin)
    await world.sql(update(KeypairResourcePolicyRow).values(max_concurrent_sessions=0))
    other_db = Database(world.db.url.render_as_string(hide_password=False))
    try:
        other = SessionScheduler(SqlSessionRepository(other_db), SqlAgentRepository(other_db),
                                 InProcessEventBus(), SqlSchedulingRepository(other_db))
        import asyncio
        await asyncio.gather(world.scheduler.schedule_once(), other.schedule_once(),
                             world.scheduler.schedule_once(), other.schedule_once())
    finally:
        await other_db.close()
    total = 0
    for i in range(3):
        agent = await world.agents.get(f"r-{i}")
        assert agent is not None and agent.occupied.get("cpu", 0) <= 5
        total += agent.occupied.get("cpu", 0)
    assert total == 15


def test_replace_keeps_spec_defaults() -> None:
    spec = SessionSpec(image="i", session_type=SessionType.BATCH, resources={})
    assert replace(spec, priority=3).priority == 3 and spec.priority == 10
