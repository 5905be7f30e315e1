"""Idle timeout and maximum lifetime, enforced by the manager's expiry sweep.

Real manager (gRPC), simulated agents over real gRPC, SQLite and PostgreSQL. The sweep runs
every 0.2 s here; the assertions wait for an outcome, they never time it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.manager.adapters.db.tables import KeypairResourcePolicyRow
from bai.manager.domain.lifecycle.expiry import ExpiryCandidate, expiry
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from google.protobuf import duration_pb2
from manager_harness import Harness, manager_config, prepare_db
from sqlalchemy import update

State = session_pb2.Session.State


@pytest.fixture
async def sweeping(db_url: str) -> AsyncIterator[tuple[Harness, SimulatedFleet]]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token, expiry_interval=0.2)) as running:
        harness = Harness(running=running, token=token, admin=admin, user=user, db_url=db_url)
        fleet = SimulatedFleet(FleetConfig(manager=harness.address, service_token=token,
                                           count=1, cpu=Decimal(8), mem=16 << 30))
        try:
            await fleet.start()
            await fleet.wait_registered(20)
            yield harness, fleet
        finally:
            await fleet.close()
            await harness.close()


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(seconds * 1000))
    return d


async def _running(stub: object, **kw: object) -> session_pb2.Session:
    reply = await stub.CreateSession(spb.CreateSessionRequest(  # type: ignore[attr-defined]
        image="python", resources={"cpu": "1", "mem": "1g"}, max_wait=_duration(20), **kw))
    assert reply.session.status.state == State.STATE_RUNNING, reply.session.status
    return reply.session  # type: ignore[no-any-return]


async def _ended(stub: object, session_id: str, within: float = 20) -> session_pb2.Session:
    deadline = time.monotonic() + within
    while True:
        got = (await stub.GetSession(spb.GetSessionRequest(session_ref=session_id))).session  # type: ignore[attr-defined]
        if got.status.state == State.STATE_TERMINATED:
            return got  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, got.status
        await asyncio.sleep(0.1)


async def test_idle_session_is_terminated_and_activity_keeps_one_alive(
    sweeping: tuple[Harness, SimulatedFleet],
) -> None:
    harness, fleet = sweeping
    stub = harness.sessions()
    idle = await _running(stub, idle_timeout=_duration(1))
    busy = await _running(stub, idle_timeout=_duration(3))
    ended = await _ended(stub, idle.id)
    assert ended.status.reason == "IdleTimeout"
    assert "no execution or app activity for 1 s" in ended.status.history[-2].message
    # Executions every 0.3 s, for longer than the 3 s timeout: never idle.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        async for _ in stub.ExecuteSession(spb.ExecuteSessionRequest(
                session_ref=busy.id, mode=spb.EXECUTION_MODE_QUERY, code="1")):
            pass
        await asyncio.sleep(0.3)
    got = (await stub.GetSession(spb.GetSessionRequest(session_ref=busy.id))).session
    assert got.status.state == State.STATE_RUNNING, got.status
    # Then left alone, it goes too; its kernel is gone from the agent.
    assert (await _ended(stub, busy.id)).status.reason == "IdleTimeout"
    agent = next(iter(fleet.agents.values()))
    assert agent.service.list_kernels() == []


async def test_lifetime_from_the_session_and_from_the_resource_policy(
    sweeping: tuple[Harness, SimulatedFleet],
) -> None:
    harness, _ = sweeping
    stub = harness.sessions()
    own = await _running(stub, max_lifetime=_duration(1))
    ended = await _ended(stub, own.id)
    assert ended.status.reason == "LifetimeExceeded"
    assert ended.spec.max_lifetime_seconds == 1

    # Policy limit (keypair resource policy "default", which the user's keypair has).
    async with harness.running.db.write() as s:
        await s.execute(update(KeypairResourcePolicyRow)
                        .where(KeypairResourcePolicyRow.name == "default")
                        .values(max_session_lifetime=1))
    by_policy = await _running(stub)
    ended = await _ended(stub, by_policy.id)
    assert ended.status.reason == "LifetimeExceeded"
    # A longer per-session value does not lift the policy's cap.
    capped = await _running(stub, max_lifetime=_duration(3600))
    assert (await _ended(stub, capped.id)).status.reason == "LifetimeExceeded"


async def test_sessions_without_limits_are_left_alone(
    sweeping: tuple[Harness, SimulatedFleet],
) -> None:
    harness, _ = sweeping
    stub = harness.sessions()
    plain = await _running(stub)
    await asyncio.sleep(1.0)  # several sweeps
    got = (await stub.GetSession(spb.GetSessionRequest(session_ref=plain.id))).session
    assert got.status.state == State.STATE_RUNNING


def _candidate(**kw: object) -> ExpiryCandidate:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = dict(session_id=uuid.uuid4(), name="s", started_at=start,
                                     last_activity_at=None, idle_timeout_seconds=0.0,
                                     max_lifetime_seconds=0.0)
    fields.update(kw)
    return ExpiryCandidate(**fields)  # type: ignore[arg-type]


def test_expiry_rules() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = start + timedelta(seconds=100)
    assert expiry(_candidate(), at) is None
    assert expiry(_candidate(started_at=None, max_lifetime_seconds=1), at) is None
    assert expiry(_candidate(max_lifetime_seconds=99), at)[0] == "LifetimeExceeded"  # type: ignore[index]
    assert expiry(_candidate(max_lifetime_seconds=101), at) is None
    # The smaller of session and policy limits wins.
    assert expiry(_candidate(max_lifetime_seconds=500, policy_max_lifetime_seconds=50), at)
    assert expiry(_candidate(policy_max_lifetime_seconds=500), at) is None
    # Idle counts from the latest activity, else from the start.
    assert expiry(_candidate(idle_timeout_seconds=50), at)[0] == "IdleTimeout"  # type: ignore[index]
    assert expiry(_candidate(idle_timeout_seconds=50,
                             last_activity_at=start + timedelta(seconds=60)), at) is None
    # The session's own idle timeout replaces the policy's.
    assert expiry(_candidate(idle_timeout_seconds=500, policy_idle_timeout_seconds=5), at) is None
    assert expiry(_candidate(policy_idle_timeout_seconds=5), at)[0] == "IdleTimeout"  # type: ignore[index]
