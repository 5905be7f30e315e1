"""The lifecycle engine paces its steps: a stream of session events joins one step per gap.

StepPacer and wait_for_step on a real in-process event bus; then a real manager (gRPC, SQLite
and PostgreSQL) with simulated agents: a burst of enqueued sessions is placed, and a session
created after an idle period starts. No assertion times anything: they check which events a
step absorbed and what state sessions reached.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.events import AgentChanged, SessionChanged
from bai.manager.domain.lifecycle.engine import EngineConfig, StepPacer, wait_for_step
from bai.manager.domain.model import AgentStatus, SessionState
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from google.protobuf import duration_pb2
from manager_harness import Harness, eventually, manager_config, prepare_db

State = session_pb2.Session.State


def _enqueued() -> SessionChanged:
    return SessionChanged(uuid.uuid4(), SessionState.PENDING, "SessionEnqueued")


def test_pacer_gap_follows_the_last_step_and_is_gone_after_idle() -> None:
    config = EngineConfig(interval=1.0, step_gap_factor=1.0, min_step_gap=0.02,
                          max_step_gap=0.5)
    pacer = StepPacer(config)
    assert pacer.hold(0.0) == 0.0  # never stepped: the first event steps at once
    pacer.stepped(10.0, 10.1)  # a 100 ms step
    assert pacer.hold(10.1) == pytest.approx(0.1)
    assert pacer.hold(10.15) == pytest.approx(0.05)
    assert pacer.hold(10.2) == 0.0
    assert pacer.hold(60.0) == 0.0  # after an idle period: no wait
    pacer.stepped(20.0, 20.001)  # a fast step: the floor
    assert pacer.hold(20.001) == pytest.approx(0.02)
    pacer.stepped(30.0, 35.0)  # a very slow step: capped, the queue must not stall
    assert pacer.hold(35.0) == pytest.approx(0.5)
    capped = StepPacer(EngineConfig(interval=0.2, max_step_gap=0.5))
    capped.stepped(0.0, 3.0)
    assert capped.hold(3.0) == pytest.approx(0.2)  # never beyond the idle interval


async def test_events_during_the_gap_join_one_step() -> None:
    config = EngineConfig(interval=5.0, step_gap_factor=1.0, max_step_gap=0.3)
    pacer = StepPacer(config)
    bus = InProcessEventBus()
    published: list[float] = []
    stop = asyncio.Event()

    async def stream() -> None:  # a continuous stream, 10 ms apart, past the gap
        while not stop.is_set():
            await bus.publish(_enqueued())
            published.append(time.monotonic())
            await asyncio.sleep(0.01)

    async with bus.subscribe() as events:
        last = time.monotonic()
        pacer.stepped(last, last + 0.3)  # as if the last step took 300 ms
        hold_until = last + 0.3 + pacer.hold(last + 0.3)
        publisher = asyncio.create_task(stream())
        try:
            assert await wait_for_step(events, pacer, config, last) is True
            returned = time.monotonic()
        finally:
            stop.set()
            await publisher
        left = 0
        while await events.next(0) is not None:
            left += 1
    assert returned >= hold_until  # it waited out the gap instead of stepping per event
    absorbed = len(published) - left
    during_gap = sum(1 for t in published if t < hold_until)
    assert during_gap > 1
    assert absorbed >= during_gap  # every event of the gap went into the one step


async def test_a_quiet_engine_steps_on_the_first_event() -> None:
    config = EngineConfig(interval=5.0)
    pacer = StepPacer(config)
    pacer.stepped(time.monotonic() - 10.0, time.monotonic() - 9.9)  # long ago
    bus = InProcessEventBus()
    async with bus.subscribe() as events:
        await bus.publish(_enqueued())
        before = time.monotonic()
        assert pacer.hold(before) == 0.0
        assert await wait_for_step(events, pacer, config, before - 9.9) is True


async def test_agent_churn_alone_does_not_ask_for_a_session_step() -> None:
    config = EngineConfig(interval=5.0)
    bus = InProcessEventBus()
    async with bus.subscribe() as events:
        for i in range(20):
            await bus.publish(AgentChanged(f"a{i}", AgentStatus.LOST))
        assert await wait_for_step(events, StepPacer(config), config, time.monotonic()) is False
        assert await events.next(0) is None  # the burst was absorbed


@pytest.fixture
async def paced(db_url: str) -> AsyncIterator[Harness]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        harness = Harness(running=running, token=token, admin=admin, user=user, db_url=db_url)
        fleet = SimulatedFleet(FleetConfig(manager=harness.address, service_token=token,
                                           count=2, cpu=Decimal(64), mem=256 << 30))
        try:
            await fleet.start()
            await fleet.wait_registered(20)
            yield harness
        finally:
            await fleet.close()
            await harness.close()


async def test_a_burst_is_placed_and_a_later_session_starts(paced: Harness) -> None:
    stub = paced.sessions()
    replies = await asyncio.gather(*(stub.CreateSession(spb.CreateSessionRequest(
        image="python", enqueue_only=True, resources={"cpu": "1", "mem": "1g"}))
        for _ in range(24)))
    ids = [r.session.id for r in replies]

    async def all_running() -> bool:
        states = [(await stub.GetSession(spb.GetSessionRequest(session_ref=i))).session
                  .status.state for i in ids]
        return all(s == State.STATE_RUNNING for s in states)

    await eventually(all_running, within=60)
    await asyncio.sleep(1.5)  # idle: the gap has long passed
    wait = duration_pb2.Duration()
    wait.FromSeconds(30)
    reply = await stub.CreateSession(spb.CreateSessionRequest(
        image="python", resources={"cpu": "1", "mem": "1g"}, max_wait=wait))
    assert reply.session.status.state == State.STATE_RUNNING, reply.session.status
