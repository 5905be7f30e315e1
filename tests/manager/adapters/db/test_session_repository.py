"""Session repository: creation, unique live names, state-checked transitions, slot release."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.domain.errors import (
    DuplicateRequest,
    IllegalTransition,
    SessionNameTaken,
    SessionNotFound,
)
from bai.manager.domain.model import (
    AgentRegistration,
    NewSession,
    SessionSpec,
    SessionState,
    SessionType,
    utcnow,
)
from bai.manager.domain.ports import PlaceOutcome
from manager_harness import prepare_db

S = SessionState


@dataclass
class Repos:
    db: Database
    sessions: SqlSessionRepository
    agents: SqlAgentRepository
    access_key: str


@pytest.fixture
async def repos(db_url: str) -> AsyncIterator[Repos]:
    _, user = await prepare_db(db_url)
    db = Database(db_url)
    try:
        yield Repos(db, SqlSessionRepository(db), SqlAgentRepository(db), user.access_key)
    finally:
        await db.close()


def new_session(access_key: str, name: str, **kw: object) -> NewSession:
    spec = SessionSpec(image="img", session_type=SessionType.INTERACTIVE,
                       resources={"cpu": Decimal(1), "mem": Decimal(1 << 30)})
    fields: dict[str, object] = dict(id=uuid.uuid4(), name=name, access_key=access_key,
                                     domain="default", project="default", spec=spec,
                                     request_id=None, created_at=utcnow(),
                                     kernel_ids=(uuid.uuid4(),))
    fields.update(kw)
    return NewSession(**fields)  # type: ignore[arg-type]


async def register(repos: Repos, agent_id: str = "i-a", cpu: int = 4) -> None:
    await repos.agents.register(AgentRegistration(
        agent_id=agent_id, address="127.0.0.1:1", capacity={"cpu": Decimal(cpu),
                                                            "mem": Decimal(8 << 30)},
        architecture="x86_64", resource_group="default", version="t", kernels=(), images=()),
        utcnow())


async def test_create_records_pending_with_history(repos: Repos) -> None:
    record = await repos.sessions.create(new_session(repos.access_key, "s-one"))
    assert record.state is S.PENDING and record.reason == "SessionEnqueued"
    assert [h.state for h in record.history] == [S.PENDING]
    assert record.kernels[0].cluster_role == "main" and record.kernels[0].agent_id is None
    assert record.spec.resources == {"cpu": Decimal(1), "mem": Decimal(1 << 30)}
    assert record.created_at.tzinfo is not None
    assert await repos.sessions.get(record.id) == record


async def test_live_names_are_unique_per_owner_until_terminal(repos: Repos) -> None:
    first = await repos.sessions.create(new_session(repos.access_key, "same"))
    with pytest.raises(SessionNameTaken) as err:
        await repos.sessions.create(new_session(repos.access_key, "same"))
    assert err.value.metadata["existing_session_id"] == str(first.id)
    await repos.sessions.transition(first.id, frozenset({S.PENDING}), S.CANCELLED,
                                    "UserRequested", "bye", at=utcnow())
    second = await repos.sessions.create(new_session(repos.access_key, "same"))
    found = await repos.sessions.find_by_name("same", repos.access_key)
    assert found is not None and found.id == second.id  # the live one wins


async def test_request_id_is_idempotency_key(repos: Repos) -> None:
    first = await repos.sessions.create(new_session(repos.access_key, "r-1", request_id="abc"))
    with pytest.raises(DuplicateRequest) as err:
        await repos.sessions.create(new_session(repos.access_key, "r-2", request_id="abc"))
    assert err.value.metadata["existing_session_id"] == str(first.id)


async def test_illegal_transition_changes_nothing(repos: Repos) -> None:
    await register(repos)
    record = await repos.sessions.create(new_session(repos.access_key, "t-1"))
    assert await repos.sessions.place(record.id, "i-a", record.spec.resources, utcnow()) is (
        PlaceOutcome.PLACED)
    before = await repos.sessions.get(record.id)
    agent_before = await repos.agents.get("i-a")
    with pytest.raises(IllegalTransition) as err:
        await repos.sessions.transition(record.id, frozenset({S.PENDING}), S.CANCELLED,
                                        "UserRequested", "too late", at=utcnow())
    assert err.value.metadata["state"] == "SCHEDULED"
    assert await repos.sessions.get(record.id) == before
    assert await repos.agents.get("i-a") == agent_before
    with pytest.raises(ValueError):  # not an edge of the status machine at all
        await repos.sessions.transition(record.id, frozenset({S.PENDING}), S.RUNNING,
                                        "X", "y", at=utcnow())
    with pytest.raises(SessionNotFound):
        await repos.sessions.transition(uuid.uuid4(), frozenset({S.PENDING}), S.CANCELLED,
                                        "X", "y", at=utcnow())


async def test_placement_reserves_and_terminal_transition_releases(repos: Repos) -> None:
    await register(repos, cpu=2)
    a = await repos.sessions.create(new_session(repos.access_key, "p-a"))
    b = await repos.sessions.create(new_session(repos.access_key, "p-b"))
    c = await repos.sessions.create(new_session(repos.access_key, "p-c"))
    now = utcnow()
    assert await repos.sessions.place(a.id, "i-a", a.spec.resources, now) is PlaceOutcome.PLACED
    assert await repos.sessions.place(a.id, "i-a", a.spec.resources, now) is (
        PlaceOutcome.SESSION_GONE)
    assert await repos.sessions.place(b.id, "i-a", b.spec.resources, now) is PlaceOutcome.PLACED
    assert await repos.sessions.place(c.id, "i-a", c.spec.resources, now) is (
        PlaceOutcome.AGENT_CHANGED)
    agent = await repos.agents.get("i-a")
    assert agent is not None and agent.occupied == {"cpu": 2, "mem": 2 << 30}
    placed = await repos.sessions.get(a.id)
    assert placed is not None and placed.state is S.SCHEDULED
    assert placed.kernels[0].agent_id == "i-a"
    assert placed.kernels[0].occupied_slots == {"cpu": 1, "mem": 1 << 30}

    for state in (S.PREPARING, S.CREATING):
        await repos.sessions.transition(a.id, frozenset({placed.state}) if state is S.PREPARING
                                        else frozenset({S.PREPARING}), state, "Step", "",
                                        at=utcnow())
    running = await repos.sessions.transition(
        a.id, frozenset({S.CREATING}), S.RUNNING, "KernelStarted", "up", at=utcnow(),
        container_ids={a.kernels[0].id: "cid-1"})
    assert running.kernels[0].container_id == "cid-1"
    assert running.kernels[0].state is S.RUNNING
    done = await repos.sessions.transition(a.id, frozenset({S.RUNNING}), S.TERMINATED,
                                           "BatchFinished", "ok", at=utcnow(), exit_code=0)
    assert done.terminated_at is not None and done.exit_code == 0
    assert [h.state for h in done.history] == [S.PENDING, S.SCHEDULED, S.PREPARING,
                                               S.CREATING, S.RUNNING, S.TERMINATED]
    agent = await repos.agents.get("i-a")
    assert agent is not None and agent.occupied == {"cpu": 1, "mem": 1 << 30}
    # releasing twice is impossible: the session is terminal now
    with pytest.raises(IllegalTransition):
        await repos.sessions.transition(a.id, frozenset({S.RUNNING}), S.ERROR, "X", "",
                                        at=utcnow())
    await repos.sessions.transition(b.id, frozenset({S.SCHEDULED}), S.CANCELLED, "X", "",
                                    at=utcnow())
    agent = await repos.agents.get("i-a")
    assert agent is not None and agent.occupied == {}


async def test_registration_recomputes_occupancy_from_live_kernels(repos: Repos) -> None:
    await register(repos, cpu=4)
    a = await repos.sessions.create(new_session(repos.access_key, "o-a"))
    await repos.sessions.place(a.id, "i-a", a.spec.resources, utcnow())
    async with repos.db.write() as s:  # simulate drift
        from bai.manager.adapters.db.tables import AgentRow

        row = await s.get(AgentRow, "i-a")
        assert row is not None
        row.occupied = {"cpu": "3"}
    await register(repos, cpu=4)
    agent = await repos.agents.get("i-a")
    assert agent is not None and agent.occupied == {"cpu": 1, "mem": 1 << 30}
