"""Property-based invariants of placement and the session lifecycle (hypothesis).

Random sequences of: create a session (1-3 kernels), a lifecycle step (schedule + start),
destroy a session (forced or not), lose an agent (the registry's LOST verdict), an agent coming
back (registration with its kernel snapshot, reconciled), and a manager restart (every domain
object rebuilt on the same database, in-memory state lost, creations resumed). They run against
the real manager domain (scheduler, lifecycle handlers, registry) on a real SQLite database, and
three simulated agents (the agent's real domain service on the simulated runtime) behind real
gRPC servers on 127.0.0.1.

After every operation:
- no agent's recorded occupancy exceeds its capacity, for any slot;
- each agent's recorded occupancy equals the sum of the slots of the live kernels placed on it;
- no kernel is placed twice: each kernel runs on at most one agent, and only on the agent the
  database placed it on; every kernel of a session is on one agent (single-node clusters);
- RUNNING sessions have every kernel running on their agent.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections import defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bai.agent.domain import AgentService, Capacity
from bai.agent.runtime.simulated import DEFAULT_SIM_IMAGE, SimulatedKernelRuntime
from bai.agent.server import start_server
from bai.common.errors import BaiError
from bai.manager.adapters.agent_client import GrpcAgentClientPool
from bai.manager.adapters.db import (
    Database,
    SqlAgentRepository,
    SqlSessionRepository,
    run_migrations,
)
from bai.manager.adapters.db.accounts import bootstrap_admin
from bai.manager.adapters.db.tables import AgentRow, KernelRow, SessionRow
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain import slots
from bai.manager.domain.lifecycle import (
    BatchedMoves,
    InFlight,
    KernelExitHandler,
    LifecycleEngine,
    ResumeHandler,
    StartHandler,
    TerminateHandler,
)
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentImage,
    AgentRegistration,
    AgentStatus,
    KernelReport,
    NewSession,
    SessionSpec,
    SessionState,
    SessionType,
    utcnow,
)
from bai.manager.domain.registry import AgentRegistry, RegistryConfig
from bai.manager.domain.scheduling import SessionScheduler
from bai.manager.domain.transitions import Transitions
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

TOKEN = "inv-token"
AGENTS = ("inv-a", "inv-b", "inv-c")
CAPACITY = {"cpu": Decimal(4), "mem": Decimal(16 << 30)}
_LIVE = sorted(s.value for s in LIVE_STATES)

Op = tuple[Any, ...]
_create = st.tuples(st.just("create"), st.integers(1, 3), st.integers(1, 2))
_step = st.tuples(st.just("step"))
ops = st.lists(st.one_of(  # creations and steps weighted up, so that kernels do run
    _create, _create, _create, _step, _step, _step,
    st.tuples(st.just("destroy"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("lose"), st.integers(0, 2)),
    st.tuples(st.just("return"), st.integers(0, 2)),
    st.tuples(st.just("restart")),
), min_size=8, max_size=24)


@dataclass
class _Agent:
    agent_id: str
    service: AgentService
    address: str


@dataclass
class _World:
    db: Database
    access_key: str
    agents: dict[str, _Agent]
    client: GrpcAgentClientPool
    sessions: list[uuid.UUID] = field(default_factory=list)

    def build(self) -> tuple[LifecycleEngine, TerminateHandler, AgentRegistry]:
        """The manager's domain objects, fresh (a restart loses everything in memory)."""
        srepo, arepo, bus = SqlSessionRepository(self.db), SqlAgentRepository(self.db), \
            InProcessEventBus()
        moves, inflight = Transitions(srepo, bus), InFlight()
        start, exits = StartHandler(arepo, self.client, moves), KernelExitHandler(srepo, moves)
        terminate = TerminateHandler(srepo, arepo, self.client, moves,
                                     batched=BatchedMoves(srepo, bus))
        resume = ResumeHandler(arepo, self.client, moves, start, exits, grace=0.0)
        engine = LifecycleEngine(srepo, SessionScheduler(srepo, arepo, bus), start, resume,
                                 terminate, bus, inflight)
        registry = AgentRegistry(arepo, srepo, self.client, moves, exits, bus,
                                 RegistryConfig(reconcile_every=0))
        return engine, terminate, registry

    def registration(self, agent: _Agent) -> AgentRegistration:
        return AgentRegistration(
            agent_id=agent.agent_id, address=agent.address, capacity=dict(CAPACITY),
            architecture="x86_64", resource_group="default", version="inv",
            kernels=tuple(KernelReport(k.kernel_id, k.session_id, k.state.value, k.container_id,
                                       k.exit_code) for k in agent.service.list_kernels()),
            images=(AgentImage(ref=DEFAULT_SIM_IMAGE, digest="sha256:inv", labels={},
                               size_bytes=0, architecture="x86_64"),))


async def _apply(world: _World, parts: list[Any], op: Op) -> None:
    engine, terminate, registry = parts
    kind = op[0]
    if kind == "create":
        _, size, cpu = op
        sid = uuid.uuid4()
        spec = SessionSpec(image=DEFAULT_SIM_IMAGE, session_type=SessionType.INTERACTIVE,
                           resources={"cpu": Decimal(cpu), "mem": Decimal(1 << 30)},
                           cluster_size=size)
        await SqlSessionRepository(world.db).create(NewSession(
            id=sid, name=f"inv-{sid.hex[:10]}", access_key=world.access_key, domain="default",
            project="default", spec=spec, request_id=None, created_at=utcnow(),
            kernel_ids=tuple(uuid.uuid4() for _ in range(size))))
        world.sessions.append(sid)
    elif kind == "step":
        await engine.step()
        await engine.drain()
    elif kind == "destroy" and world.sessions:
        _, index, forced = op
        try:
            await terminate.terminate(world.sessions[index % len(world.sessions)], forced=forced,
                                      reason="UserRequested", message="invariant test")
        except BaiError:
            pass  # a LOST agent: the session stays TERMINATING (retried by the engine)
    elif kind == "lose":
        agent_id = AGENTS[op[1]]
        async with world.db.write() as s:
            await s.execute(update(AgentRow).where(AgentRow.id == agent_id)
                            .values(status=AgentStatus.LOST.value))
    elif kind == "return":
        agent = world.agents[AGENTS[op[1]]]
        registered = await registry.register(world.registration(agent))
        for kernel_id in registered.destroy_kernel_ids:  # the directive the agent obeys
            await agent.service.destroy_kernel(kernel_id, "not live in the manager")
    elif kind == "restart":
        parts[:] = world.build()
        await parts[0].step()
        await parts[0].drain()


async def _check(world: _World) -> int:
    async with world.db.read() as s:
        agents = {a.id: a for a in (await s.scalars(select(AgentRow))).all()}
        rows = (await s.execute(
            select(KernelRow.id, KernelRow.agent_id, KernelRow.occupied_slots,
                   KernelRow.session_id, SessionRow.state)
            .join(SessionRow, SessionRow.id == KernelRow.session_id))).all()
    live_sum: dict[str, slots.Slots] = defaultdict(dict)
    placed: dict[str, str] = {}
    session_agents: dict[uuid.UUID, set[str]] = defaultdict(set)
    for kernel_id, agent_id, occupied, session_id, state in rows:
        if agent_id is None:
            continue
        placed[str(kernel_id)] = agent_id
        if state in _LIVE:
            live_sum[agent_id] = slots.add(live_sum[agent_id], slots.from_strings(occupied))
            session_agents[session_id].add(agent_id)
    for agent_id, row in agents.items():
        occupied = slots.from_strings(row.occupied)
        capacity = slots.from_strings(row.capacity)
        assert not slots.missing(capacity, occupied), f"{agent_id} over capacity: {occupied}"
        assert slots.to_strings(occupied) == slots.to_strings(live_sum[agent_id]), (
            agent_id, occupied, live_sum[agent_id])
    assert all(len(where) == 1 for where in session_agents.values()), session_agents
    held: dict[str, str] = {}
    for agent in world.agents.values():
        for kernel in agent.service.list_kernels():
            assert kernel.kernel_id not in held, f"kernel {kernel.kernel_id} on two agents"
            held[kernel.kernel_id] = agent.agent_id
            assert placed.get(kernel.kernel_id) == agent.agent_id, (
                f"kernel {kernel.kernel_id} runs on {agent.agent_id}, placed on "
                f"{placed.get(kernel.kernel_id)}")
    running = {sid for _, _, _, sid, state in rows if state == SessionState.RUNNING.value}
    for kernel_id, agent_id, _, session_id, _ in rows:
        if session_id in running:
            assert held.get(str(kernel_id)) == agent_id, f"RUNNING kernel {kernel_id} missing"
    return len(held)


async def _run(db_path: Path, sequence: list[Op]) -> None:
    async with AsyncExitStack() as stack:
        db = Database(f"sqlite+aiosqlite:///{db_path}")
        stack.push_async_callback(db.close)
        await run_migrations(db)
        access_key = "AKINV" + uuid.uuid4().hex[:12].upper()
        await bootstrap_admin(db, access_key, "s" * 40)
        client = GrpcAgentClientPool(TOKEN)
        stack.push_async_callback(client.close)
        agents: dict[str, _Agent] = {}
        for agent_id in AGENTS:
            runtime = SimulatedKernelRuntime()
            service = AgentService(agent_id=agent_id, kernel_root=Path("/nonexistent"),
                                   capacity=Capacity(cpu=CAPACITY["cpu"],
                                                     mem=int(CAPACITY["mem"])),
                                   runtime=runtime, connect_runner=runtime.connect_runner)
            server = await start_server(service, listen="127.0.0.1:0", service_token=TOKEN)
            stack.push_async_callback(server.server.stop, None)
            agents[agent_id] = _Agent(agent_id, service, f"127.0.0.1:{server.port}")
        world = _World(db, access_key, agents, client)
        parts: list[Any] = list(world.build())
        for agent in agents.values():
            await parts[2].register(world.registration(agent))
        most = 0
        for op in sequence:
            await _apply(world, parts, op)
            most = max(most, await _check(world))
        event(f"at most {most} kernels running at once")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=ops)
# A cluster bigger than any agent, sessions on an agent that is lost, force-destroyed, comes
# back and is reconciled, then a restart that resumes the rest.
@example(sequence=[("create", 3, 2), ("create", 2, 2), ("create", 2, 2), ("step",),
                   ("lose", 0), ("lose", 1), ("destroy", 1, True), ("destroy", 2, False),
                   ("create", 1, 3), ("step",), ("return", 0), ("return", 1), ("restart",),
                   ("step",), ("destroy", 0, False), ("destroy", 3, False)])
def test_placement_and_lifecycle_invariants(sequence: list[Op]) -> None:
    with tempfile.TemporaryDirectory(prefix="bai-inv-") as tmp:
        asyncio.run(_run(Path(tmp) / "inv.db", sequence))
