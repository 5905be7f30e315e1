"""The Redis Streams event bus against a real redis-server: fan-out across replicas, no loss."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from bai.manager.adapters.event_bus import InProcessEventBus, credentials_sync, open_event_bus
from bai.manager.adapters.redis_event_bus import RedisEventBus, decode_event, encode_event
from bai.manager.domain.events import AgentChanged, CredentialsChanged, Event, SessionChanged
from bai.manager.domain.model import AgentStatus, SessionState
from redis.asyncio import Redis
from redis_server import RedisServer, start_redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture
def stream() -> str:
    return "t:events:" + uuid.uuid4().hex[:8]


@pytest.fixture
async def replicas(redis_server: RedisServer, stream: str) -> AsyncIterator[list[RedisEventBus]]:
    async with (RedisEventBus.connect(redis_server.url, stream=stream, block_ms=200) as a,
                RedisEventBus.connect(redis_server.url, stream=stream, block_ms=200) as b,
                RedisEventBus.connect(redis_server.url, stream=stream, block_ms=200) as c):
        yield [a, b, c]


def changed(n: int) -> SessionChanged:
    return SessionChanged(uuid.UUID(int=n), SessionState.RUNNING, f"r{n}")


def test_codec_round_trips_every_event_kind() -> None:
    events: list[Event] = [changed(7), AgentChanged("i-x", AgentStatus.LOST),
                           CredentialsChanged()]
    assert [decode_event(encode_event(e)) for e in events] == events
    assert decode_event({"k": "session", "id": "not-a-uuid", "state": "RUNNING"}) is None
    assert decode_event({"k": "future-kind"}) is None


async def test_every_replica_sees_every_event_once(replicas: list[RedisEventBus]) -> None:
    a, b, c = replicas
    async with a.subscribe() as on_a, b.subscribe() as on_b, c.subscribe() as on_c:
        await a.publish(changed(1))
        await b.publish(AgentChanged("i-b", AgentStatus.ALIVE))
        await c.publish(changed(3))
        expected = {changed(1), AgentChanged("i-b", AgentStatus.ALIVE), changed(3)}
        for sub in (on_a, on_b, on_c):
            got = [await sub.next(5.0) for _ in range(3)]
            assert set(got) == expected
            assert await sub.next(0.3) is None  # own events are not delivered twice


async def test_reader_resumes_after_connection_drop_without_loss(
    replicas: list[RedisEventBus], redis_server: RedisServer
) -> None:
    a, b, _ = replicas
    async with b.subscribe() as on_b:
        await a.publish(changed(0))
        assert await on_b.next(5.0) == changed(0)
        admin = Redis.from_url(redis_server.url)
        try:
            # Drop every client connection (b's blocked XREAD included), then publish while
            # b is reconnecting: its reader resumes from the last entry it delivered.
            await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        finally:
            await admin.aclose()
        for n in range(1, 51):
            await a.publish(changed(n))
        got = [await on_b.next(10.0) for _ in range(50)]
        assert got == [changed(n) for n in range(1, 51)]


async def test_publish_survives_redis_outage_locally(redis_server: RedisServer) -> None:
    bus = RedisEventBus(Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True))
    async with bus.subscribe() as sub:
        await bus.publish(changed(5))  # Redis unreachable: logged, local subscribers still told
        assert await sub.next(1.0) == changed(5)


async def test_open_event_bus_picks_the_backend(redis_server: RedisServer) -> None:
    async with open_event_bus("") as local:
        assert isinstance(local, InProcessEventBus)
    async with open_event_bus(redis_server.url) as shared:
        assert isinstance(shared, RedisEventBus)
        async with shared.subscribe() as sub:
            await shared.publish(changed(9))
            assert await sub.next(1.0) == changed(9)
            assert await sub.next(0.3) is None


async def test_credential_changes_reach_every_replica(replicas: list[RedisEventBus]) -> None:
    forgotten = {"a": 0, "b": 0, "c": 0}
    callbacks = {name: credentials_sync(bus, lambda n=name: forgotten.__setitem__(
        n, forgotten[n] + 1)) for name, bus in zip("abc", replicas, strict=True)}
    async with replicas[1].subscribe() as on_b, replicas[2].subscribe() as on_c:
        callbacks["a"]()  # e.g. an admin deactivated a keypair through replica a
        assert forgotten["a"] >= 1  # at once, before any round trip
        assert await on_b.next(5.0) == CredentialsChanged()
        assert await on_c.next(5.0) == CredentialsChanged()
    assert forgotten["b"] == 1 and forgotten["c"] == 1
    await asyncio.sleep(0)
