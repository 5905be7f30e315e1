"""A short-lived read cache of sessions for the user-facing read path (GetSession).

``GET /session/{id}`` is the hottest call (P7). Loading a session costs three ORM queries
(session, kernels, history) on the database; this keeps loaded records for ``ttl`` seconds.

Staleness is bounded two ways. Every :class:`SessionChanged` event drops the entry of its
session — synchronously, through a bus listener, before any subscriber is woken, so a waiter
re-reading after an event never sees the record the event replaced; with the Redis bus, other
replicas' events do the same here. Every write made through this repository drops its entry as
well. Writes that publish no event (activity timestamps, queue bookkeeping) show after ``ttl``
at most. Lookups by name are cached too and dropped on every session event (a new session may
take a name).

Only :class:`~bai.manager.domain.sessions.SessionService` reads through this; the lifecycle
engine, the scheduler and the registry keep reading the database directly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bai.manager.adapters.db import Database, SqlSessionRepository
from bai.manager.adapters.event_bus import ListenableEventBus
from bai.manager.domain.events import Event, SessionChanged
from bai.manager.domain.model import SessionRecord

__all__ = ["CachedSessionRepository"]

_MAX_ENTRIES = 10_000
K = TypeVar("K")


class CachedSessionRepository(SqlSessionRepository):
    """:class:`SqlSessionRepository` with ``get`` / ``find_by_name`` served from memory."""

    def __init__(self, db: Database, bus: ListenableEventBus, *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(db)
        self._ttl = ttl
        self._clock = clock
        self._by_id: dict[uuid.UUID, tuple[float, SessionRecord]] = {}
        self._by_name: dict[tuple[str, str | None], tuple[float, SessionRecord]] = {}
        self._loading: dict[tuple[int, Any], asyncio.Future[SessionRecord | None]] = {}
        self._generation = 0
        """Bumped by every invalidation; a load that straddles one is not cached."""
        bus.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SessionChanged):
            self.forget(event.session_id)

    def forget(self, session_id: uuid.UUID) -> None:
        """Drops what is cached about ``session_id`` (and every lookup by name)."""
        self._generation += 1
        self._by_id.pop(session_id, None)
        self._by_name.clear()

    async def get(self, session_id: uuid.UUID) -> SessionRecord | None:
        return await self._cached(self._by_id, session_id, lambda: super(
            CachedSessionRepository, self).get(session_id))

    async def find_by_name(self, name: str, access_key: str | None) -> SessionRecord | None:
        return await self._cached(self._by_name, (name, access_key), lambda: super(
            CachedSessionRepository, self).find_by_name(name, access_key))

    async def _cached(
        self, entries: dict[K, tuple[float, SessionRecord]], key: K,
        load: Callable[[], Awaitable[SessionRecord | None]],
    ) -> SessionRecord | None:
        hit = entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        # One load per key at a time: concurrent misses share it instead of each querying.
        flight = self._loading.get((id(entries), key))
        if flight is None:
            generation = self._generation
            flight = asyncio.ensure_future(load())
            self._loading[(id(entries), key)] = flight
            try:
                record = await flight
            finally:
                self._loading.pop((id(entries), key), None)
            # Not cached when an event arrived meanwhile: the load may predate the change.
            if record is not None and generation == self._generation:
                if len(entries) >= _MAX_ENTRIES:
                    entries.clear()
                entries[key] = (self._clock() + self._ttl, record)
            return record
        return await asyncio.shield(flight)

    def _forget_all(self) -> None:
        self._generation += 1
        self._by_id.clear()
        self._by_name.clear()

    # Writes through this repository drop what they touch, event or not.

    async def transition(self, session_id: uuid.UUID, *args: Any, **kw: Any) -> Any:
        self.forget(session_id)
        try:
            return await super().transition(session_id, *args, **kw)
        finally:
            self.forget(session_id)

    async def set_pending_reason(self, session_id: uuid.UUID, reason: str, message: str) -> None:
        await super().set_pending_reason(session_id, reason, message)
        self.forget(session_id)

    async def place(self, *args: Any, **kw: Any) -> Any:
        try:
            return await super().place(*args, **kw)
        finally:
            self._forget_all()

    async def place_many(self, *args: Any, **kw: Any) -> Any:
        try:
            return await super().place_many(*args, **kw)
        finally:
            self._forget_all()
