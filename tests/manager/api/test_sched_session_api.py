"""Scheduling through the real SessionService (gRPC on 127.0.0.1:0, both databases): priority,
start time and dependencies in CreateSession, status info, queue position and scheduling history
in GetSession, and how `bai session info` shows them."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.client.output import Printer
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.tables import KeypairResourcePolicyRow
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from manager_harness import Harness
from sqlalchemy import update

State = session_pb2.Session.State


@pytest.fixture
async def fleet(manager: Harness) -> AsyncIterator[SimulatedFleet]:
    fleet = SimulatedFleet(FleetConfig(manager=manager.address, service_token=manager.token,
                                       count=1, cpu=Decimal(1), mem=8 << 30))
    await fleet.start()
    await fleet.wait_registered(20)
    try:
        yield fleet
    finally:
        await fleet.close()


def _create(name: str, **kw: object) -> spb.CreateSessionRequest:
    request = spb.CreateSessionRequest(name=name, image="python", enqueue_only=True,
                                       resources={"cpu": "1", "mem": "1g"})
    for key, value in kw.items():
        if key == "starts_at":
            assert isinstance(value, datetime)
            request.starts_at_time.FromDatetime(value)
        elif key == "dependencies":
            request.dependencies.extend(value)  # type: ignore[call-overload]
        elif key == "resources":
            request.resources.update(value)  # type: ignore[call-overload]
        else:
            setattr(request, key, value)
    return request


async def _get(stub: object, ref: str) -> session_pb2.Session:
    reply = await stub.GetSession(spb.GetSessionRequest(session_ref=ref))  # type: ignore[attr-defined]
    return reply.session  # type: ignore[no-any-return]


async def _until(stub: object, ref: str, reason: str) -> session_pb2.Session:
    for _ in range(100):
        session = await _get(stub, ref)
        if session.status.reason == reason:
            return session
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ref}: {session.status.reason} {session.status.message}")


async def test_priority_start_time_dependencies_and_queue_position(
    manager: Harness, fleet: SimulatedFleet
) -> None:
    stub = manager.sessions()
    await stub.CreateSession(_create("holder"))
    holder = await _get(stub, "holder")
    low = (await stub.CreateSession(_create("low-prio", priority=5))).session
    high = (await stub.CreateSession(_create("high-prio", priority=60))).session
    assert (low.spec.priority, high.spec.priority) == (5, 60)
    later = datetime.now(UTC) + timedelta(hours=2)
    timed = (await stub.CreateSession(_create("timed", starts_at=later))).session
    assert abs(timed.spec.starts_at_time.ToDatetime(tzinfo=UTC) - later) < timedelta(seconds=1)
    after = (await stub.CreateSession(_create("after", dependencies=["holder"]))).session
    assert list(after.spec.dependencies) == [holder.id]

    waiting = await _until(stub, "low-prio", "InsufficientResources")
    assert "lacks cpu=1" in waiting.status.message
    high_now = await _until(stub, "high-prio", "InsufficientResources")
    # priority 60 before priority 5; both behind nothing else that could run
    assert high_now.status.queue_position < waiting.status.queue_position
    assert (await _until(stub, "timed", "StartTimeNotReached")).status.message.startswith(
        "scheduled to start at")
    dependent = await _until(stub, "after", "DependenciesNotReady")
    assert "holder" in dependent.status.message
    # scheduling history: enqueued, then the reason it waits (written once, not every pass)
    await asyncio.sleep(0.5)
    history = [(h.state, h.reason) for h in (await _get(stub, "low-prio")).status.history]
    assert history == [(State.STATE_PENDING, "SessionEnqueued"),
                       (State.STATE_PENDING, "InsufficientResources")]

    out = io.StringIO()
    Printer(as_json=False, stream=out).session(await _get(stub, "low-prio"))
    text = out.getvalue()
    assert "Queue position" in text and "InsufficientResources" in text
    assert "Priority" in text and "lacks cpu=1" in text

    # the holder finishes: the higher priority one takes the agent; the dependent one no
    # longer waits for its dependency, only for room
    await stub.DeleteSession(spb.DeleteSessionRequest(session_ref="holder"))
    for _ in range(100):
        if (await _get(stub, "high-prio")).status.state != State.STATE_PENDING:
            break
        await asyncio.sleep(0.1)
    assert (await _get(stub, "high-prio")).status.state != State.STATE_PENDING
    assert "InsufficientResources" == (await _until(stub, "after",
                                                    "InsufficientResources")).status.reason
    assert (await _get(stub, "high-prio")).status.queue_position == 0


async def test_bad_scheduling_fields_are_rejected(manager: Harness) -> None:
    stub = manager.sessions()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateSession(_create("bad-prio", priority=500))
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "priority 500 must be between 0 and 100" in (exc.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateSession(_create("bad-dep", dependencies=["no-such-session"]))
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    assert "dependency 'no-such-session'" in (exc.value.details() or "")
    # nothing was half-created
    listed = await stub.ListSessions(spb.ListSessionsRequest())
    assert not [s for s in listed.sessions if s.name.startswith("bad-")]


async def test_max_pending_sessions_is_enforced_at_creation(
    manager: Harness, fleet: SimulatedFleet
) -> None:
    db = Database(manager.db_url)
    try:
        async with db.write() as s:
            await s.execute(update(KeypairResourcePolicyRow).values(max_pending_session_count=1))
    finally:
        await db.close()
    stub = manager.sessions()
    too_big = {"resources": {"cpu": "64"}}
    await stub.CreateSession(_create("queued-1", **too_big))  # it stays PENDING
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateSession(_create("queued-2", **too_big))
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "already has 1 pending sessions" in (exc.value.details() or "")
    listed = await stub.ListSessions(spb.ListSessionsRequest())
    assert [s.name for s in listed.sessions] == ["queued-1"]


async def test_mock_accelerator_slots_reported_by_agents_are_scheduled(manager: Harness) -> None:
    from bai.agent.accelerators import parse_mock_accelerator

    gpu = parse_mock_accelerator("2:4").slots()
    fleet = SimulatedFleet(FleetConfig(manager=manager.address, service_token=manager.token,
                                       count=1, prefix="gpu-", cpu=Decimal(8), mem=32 << 30,
                                       accelerators=gpu))
    await fleet.start()
    try:
        await fleet.wait_registered(20)
        stub = manager.sessions()
        whole = _create("whole-gpu")
        whole.resources["cuda.device"] = "2"
        shared = _create("shared-gpu")
        shared.resources["cuda.shares"] = "1.5"
        extra = _create("one-more-gpu")
        extra.resources["cuda.device"] = "1"
        for request in (whole, shared, extra):
            await stub.CreateSession(request)
        for name in ("whole-gpu", "shared-gpu"):
            for _ in range(100):
                if (await _get(stub, name)).status.state != State.STATE_PENDING:
                    break
                await asyncio.sleep(0.1)
            session = await _get(stub, name)
            assert session.status.state != State.STATE_PENDING, session.status
            assert session.kernels[0].agent_id == "gpu-00001"
        waiting = await _until(stub, "one-more-gpu", "InsufficientResources")
        assert "lacks cuda.device=1" in waiting.status.message
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            half = _create("half-gpu")
            half.resources["cuda.device"] = "0.5"
            await stub.CreateSession(half)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot be split" in (exc.value.details() or "")
    finally:
        await fleet.close()
