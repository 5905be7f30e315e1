"""Event bus on a Redis Stream, for several manager replicas.

Every replica appends the events it publishes to one stream (``XADD``, capped with an
approximate ``MAXLEN``) and runs one reader task that follows the stream with a blocking
``XREAD`` from its own last-read entry id, fanning entries out to its local subscribers. The
reader's position survives a dropped connection: after a reconnect it resumes from the last id
it delivered, so nothing published meanwhile is lost (as long as the cap has not trimmed it).
Plain pub/sub would lose everything sent while a replica is reconnecting.

A replica delivers its own events to its local subscribers at once (no round trip through
Redis, and no silence when Redis is down) and skips them when they come back from the stream.
Events only say "look again", so an event delivered to a subscriber that joined a moment after
it was published is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from bai.manager.adapters.event_bus import InProcessEventBus, LocalSubscription
from bai.manager.domain.events import AgentChanged, CredentialsChanged, Event, SessionChanged
from bai.manager.domain.model import AgentStatus, SessionState
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

__all__ = ["DEFAULT_STREAM", "RedisEventBus", "decode_event", "encode_event"]

log = logging.getLogger(__name__)

DEFAULT_STREAM = "bai:events"
_ORIGIN = "o"
_KIND = "k"


def encode_event(event: Event) -> dict[str, str]:
    """The stream entry fields of ``event`` (without the origin)."""
    if isinstance(event, SessionChanged):
        return {_KIND: "session", "id": str(event.session_id), "state": event.state.value,
                "reason": event.reason}
    if isinstance(event, AgentChanged):
        return {_KIND: "agent", "id": event.agent_id, "status": event.status.value}
    return {_KIND: "credentials"}


def decode_event(fields: dict[str, str]) -> Event | None:
    """The event of a stream entry; None for an entry this version does not understand."""
    try:
        kind = fields[_KIND]
        if kind == "session":
            return SessionChanged(uuid.UUID(fields["id"]), SessionState(fields["state"]),
                                  fields.get("reason", ""))
        if kind == "agent":
            return AgentChanged(fields["id"], AgentStatus(fields["status"]))
        if kind == "credentials":
            return CredentialsChanged()
    except (KeyError, ValueError):
        pass
    return None


class RedisEventBus:
    """Implements :class:`bai.manager.domain.ports.EventBus` across processes.

    Use :meth:`connect` (an async context manager) to get a started bus.
    """

    def __init__(
        self, redis: Redis, *, stream: str = DEFAULT_STREAM, maxlen: int = 100_000,
        block_ms: int = 1000, capacity: int = 1024,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._maxlen = maxlen
        self._block_ms = block_ms
        self._local = InProcessEventBus(capacity)
        self._origin = secrets.token_hex(8)
        self._last_id = "$"
        self._reader: asyncio.Task[None] | None = None
        self.delivered_remote = 0
        """Events from other replicas delivered so far (for logs and tests)."""

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, **kw: Any) -> AsyncIterator[RedisEventBus]:
        """A bus on the Redis at ``url`` whose reader runs until the block exits."""
        redis = Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                               health_check_interval=30)
        bus = cls(redis, **kw)
        try:
            await bus.start()
            yield bus
        finally:
            await bus.close()
            try:
                async with asyncio.timeout(2.0):
                    await redis.aclose()
            except TimeoutError:
                log.warning("event bus: closing the Redis connections timed out")

    async def start(self) -> None:
        """Pins the read position to the stream's current end, then starts the reader."""
        # An explicit id, not "$": "$" would be re-evaluated after a reconnect and skip entries.
        try:
            info = await self._redis.xinfo_stream(self._stream)
        except ResponseError:  # no such key: nothing was ever published on this stream
            info = None
        self._last_id = info["last-generated-id"] if info else "0-0"
        self._reader = asyncio.create_task(self._follow(), name="redis-event-bus")
        log.info("event bus on Redis stream %s from %s (replica %s)", self._stream,
                 self._last_id, self._origin)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # Bounded: a reader cancelled mid-reconnect inside redis-py may take a while.
            await asyncio.wait([self._reader], timeout=2.0)
            self._reader = None

    async def publish(self, event: Event) -> None:
        await self._local.publish(event)
        fields = {**encode_event(event), _ORIGIN: self._origin}
        try:
            await self._redis.xadd(self._stream, fields,  # type: ignore[arg-type]
                                   maxlen=self._maxlen, approximate=True)
        except RedisError as exc:
            # Other replicas miss this hint; their periodic re-reads of the database catch up.
            log.warning("event %s not sent to Redis: %s", event, exc)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Runs ``listener`` for every event (this replica's and the others') before delivery."""
        self._local.add_listener(listener)

    def subscribe(self) -> AbstractAsyncContextManager[LocalSubscription]:
        """Like :meth:`InProcessEventBus.subscribe`: this replica's and every other one's events."""
        return self._local.subscribe()

    async def _follow(self) -> None:
        delay = 0.1
        while True:
            try:
                reply: Any = await self._redis.xread({self._stream: self._last_id},
                                                block=self._block_ms, count=512)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("event bus: reading %s failed (%s); retrying in %.1f s",
                            self._stream, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            streams: list[tuple[str, list[tuple[str, dict[str, str]]]]] = reply or []
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    if fields.get(_ORIGIN) == self._origin:
                        continue
                    event = decode_event(fields)
                    if event is not None:
                        self.delivered_remote += 1
                        await self._local.publish(event)

