"""In-process event bus (one manager process). A Redis implementation comes with replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bai.manager.domain.events import Event

__all__ = ["InProcessEventBus"]


class _Subscription:
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
        self._subscribers: set[_Subscription] = set()

    async def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[_Subscription]:
        subscription = _Subscription(self._capacity)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
