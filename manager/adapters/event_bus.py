"""Event buses: in-process (one manager) here; :mod:`.redis_event_bus` for several replicas.

:func:`open_event_bus` picks one from the configuration: Redis when a URL is given, else
in-process. Both implement :class:`bai.manager.domain.ports.EventBus`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from bai.manager.domain.events import CredentialsChanged, Event
from bai.manager.domain.ports import EventBus

__all__ = [
    "InProcessEventBus",
    "ListenableEventBus",
    "LocalSubscription",
    "credentials_sync",
    "open_event_bus",
]

Listener = Callable[[Event], None]
"""A synchronous callback run for every event before any subscriber sees it."""


class ListenableEventBus(EventBus, Protocol):
    """An event bus that also calls listeners synchronously (cache invalidation: a subscriber
    woken by an event must never re-read a cache entry that event made stale)."""

    def add_listener(self, listener: Listener) -> None: ...


class LocalSubscription:
    """One subscriber's bounded queue."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=capacity)

    def offer(self, event: Event) -> None:
        if self.queue.full():  # events only say "look again": dropping the oldest is safe
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def next(self, wait: float) -> Event | None:
        if wait <= 0:
            return self.queue.get_nowait() if not self.queue.empty() else None
        try:
            # Not asyncio.wait_for: on 3.11 it swallows a cancellation that coincides with an
            # event arriving, and the cancelled loop would run on.
            async with asyncio.timeout(wait):
                return await self.queue.get()
        except TimeoutError:
            return None


class InProcessEventBus:
    """Implements :class:`bai.manager.domain.ports.EventBus` with one queue per subscriber."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._subscribers: set[LocalSubscription] = set()
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[LocalSubscription]:
        subscription = LocalSubscription(self._capacity)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)


@asynccontextmanager
async def open_event_bus(redis_url: str = "") -> AsyncIterator[ListenableEventBus]:
    """A Redis Streams bus when ``redis_url`` is set (several replicas), else in-process."""
    if not redis_url:
        yield InProcessEventBus()
        return
    from bai.manager.adapters.redis_event_bus import RedisEventBus  # needs redis only here

    async with RedisEventBus.connect(redis_url) as bus:
        yield bus


def credentials_sync(bus: ListenableEventBus, forget: Callable[[], None]) -> Callable[[], None]:
    """Keeps every replica's credential cache in step.

    Returns the callback to run after a change to users, keypairs or memberships: it drops this
    replica's cache at once and publishes :class:`CredentialsChanged`, on which every replica
    (through the Redis bus) calls ``forget`` too, instead of waiting out the cache's TTL.
    """
    pending: set[asyncio.Task[None]] = set()

    def on_event(event: Event) -> None:
        if isinstance(event, CredentialsChanged):
            forget()

    def changed() -> None:
        forget()
        task = asyncio.get_running_loop().create_task(bus.publish(CredentialsChanged()))
        pending.add(task)  # keep a reference until it is done
        task.add_done_callback(pending.discard)

    bus.add_listener(on_event)
    return changed
