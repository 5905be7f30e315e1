"""The GetSession read cache: served from memory, never stale after an event or a write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from bai.manager.adapters.db import Database, run_migrations
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.adapters.session_cache import CachedSessionRepository
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import SessionState
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as pb
from manager_harness import Harness, ProtocolAgent


async def test_get_session_sees_every_transition_at_once(
    manager: Harness, agents: Callable[..., Awaitable[ProtocolAgent]]
) -> None:
    await agents()
    stub = manager.sessions()
    created = await stub.CreateSession(pb.CreateSessionRequest(
        name="cache-" + uuid.uuid4().hex[:6], image="python", resources={"cpu": "1"}),
        timeout=20)
    ref = created.session.id
    for _ in range(3):  # repeated reads: the cached record
        got = await stub.GetSession(pb.GetSessionRequest(session_ref=ref), timeout=5)
        assert got.session.status.state == session_pb2.Session.STATE_RUNNING
    by_name = await stub.GetSession(pb.GetSessionRequest(session_ref=created.session.name))
    assert by_name.session.id == ref
    await stub.DeleteSession(pb.DeleteSessionRequest(session_ref=ref), timeout=10)
    # No TTL wait: the transitions' events dropped the cached record.
    for lookup in (ref, created.session.name):
        after = await stub.GetSession(pb.GetSessionRequest(session_ref=lookup), timeout=5)
        assert after.session.status.state in (session_pb2.Session.STATE_TERMINATING,
                                              session_pb2.Session.STATE_TERMINATED)


async def test_event_drops_the_entry_before_subscribers_wake(db_url: str) -> None:
    db = Database(db_url)
    try:
        await run_migrations(db)
        bus = InProcessEventBus()
        now = [0.0]
        repo = CachedSessionRepository(db, bus, ttl=60, clock=lambda: now[0])
        missing = uuid.uuid4()
        assert await repo.get(missing) is None
        # Put a record in the cache by hand (no row is needed to test invalidation order).
        repo._by_id[missing] = (60.0, object())  # type: ignore[assignment]
        assert await repo.get(missing) is not None
        seen: list[object] = []
        async with bus.subscribe() as sub:

            async def waiter() -> None:
                await sub.next(5)
                seen.append(await repo.get(missing))

            task = asyncio.create_task(waiter())
            await asyncio.sleep(0)
            await bus.publish(SessionChanged(missing, SessionState.RUNNING, "x"))
            await task
        assert seen == [None]  # re-read from the database, not the stale entry
        now[0] = 120.0
        repo._by_id[missing] = (60.0, object())  # type: ignore[assignment]
        assert await repo.get(missing) is None  # expired entries are reloaded
    finally:
        await db.close()
