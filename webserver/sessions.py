"""Server-side web sessions: what a login cookie stands for.

The cookie carries only an opaque random id (``secrets.token_urlsafe(32)``); the keypair stays on
the server. Stores key sessions by the SHA-256 of that id, so a dump of Redis yields no usable
cookie. Two real stores behind one Protocol: in process (a single webserver) and Redis (replicas
share sessions; a restarted webserver keeps them). Backend.AI keeps the same data in Redis
through aiohttp_session.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

__all__ = [
    "InProcessSessionStore",
    "RedisSessionStore",
    "SessionStore",
    "WebSession",
    "build_store",
    "new_session_id",
]

_REDIS_PREFIX = "bai:websession:"


@dataclass(frozen=True, slots=True)
class WebSession:
    """One logged-in user, as ``/auth/authorize`` answered."""

    access_key: str
    """The user's keypair access key: every ``/func`` request is signed with it."""
    secret_key: str
    """The keypair's secret key; never sent to the browser."""
    role: str
    """``superadmin``, ``admin``, ``user`` or ``monitor``."""
    user: dict[str, str] = field(default_factory=dict)
    """Public facts about the user: ``user_id``, ``email``, ``full_name``, ``status``."""
    expires_at: float = 0.0
    """Unix time after which the session is gone (set by the store)."""

    def public(self) -> dict[str, Any]:
        """What the browser may see (no secret key)."""
        return {"access_key": self.access_key, "role": self.role, **self.user,
                "expires_at": self.expires_at}


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(Protocol):
    """Where web sessions live. Every method takes the cookie's session id."""

    async def put(self, session_id: str, session: WebSession, ttl: int) -> WebSession:
        """Stores ``session`` for ``ttl`` seconds; returns it with ``expires_at`` set."""

    async def get(self, session_id: str) -> WebSession | None:
        """The live session, or None (unknown, expired, logged out)."""

    async def extend(self, session_id: str, ttl: int) -> WebSession | None:
        """Pushes the expiry ``ttl`` seconds from now; None when there is no live session."""

    async def delete(self, session_id: str) -> None: ...

    async def close(self) -> None: ...


class InProcessSessionStore:
    """Sessions in a dict: one webserver process; they die with it."""

    _PURGE_EVERY = 256
    """Writes between two sweeps of expired sessions (a sweep walks them all)."""

    def __init__(self) -> None:
        self._sessions: dict[str, WebSession] = {}
        self._writes = 0

    async def put(self, session_id: str, session: WebSession, ttl: int) -> WebSession:
        self._writes += 1
        if self._writes % self._PURGE_EVERY == 0:
            self._purge()
        stored = replace(session, expires_at=time.time() + ttl)
        self._sessions[_digest(session_id)] = stored
        return stored

    async def get(self, session_id: str) -> WebSession | None:
        session = self._sessions.get(_digest(session_id))
        if session is None or session.expires_at <= time.time():
            return None
        return session

    async def extend(self, session_id: str, ttl: int) -> WebSession | None:
        session = await self.get(session_id)
        return None if session is None else await self.put(session_id, session, ttl)

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    async def close(self) -> None:
        self._sessions.clear()

    def _purge(self) -> None:
        # Amortised clean-up keeps abandoned (never logged out) sessions from piling up.
        now = time.time()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]


class RedisSessionStore:
    """Sessions as JSON strings with a Redis TTL (``bai:websession:<sha256 of id>``)."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis: Redis = Redis.from_url(url, decode_responses=True)

    async def put(self, session_id: str, session: WebSession, ttl: int) -> WebSession:
        stored = replace(session, expires_at=time.time() + ttl)
        await self._redis.set(_REDIS_PREFIX + _digest(session_id), json.dumps(asdict(stored)),
                              ex=ttl)
        return stored

    async def get(self, session_id: str) -> WebSession | None:
        raw = await self._redis.get(_REDIS_PREFIX + _digest(session_id))
        if raw is None:
            return None
        return WebSession(**json.loads(raw))

    async def extend(self, session_id: str, ttl: int) -> WebSession | None:
        session = await self.get(session_id)
        if session is None:
            return None
        stored = replace(session, expires_at=time.time() + ttl)
        # XX: only while the key still exists, so a logout racing this cannot be undone.
        written = await self._redis.set(_REDIS_PREFIX + _digest(session_id),
                                        json.dumps(asdict(stored)), ex=ttl, xx=True)
        return stored if written else None

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(_REDIS_PREFIX + _digest(session_id))

    async def close(self) -> None:
        await self._redis.aclose()


def build_store(redis_url: str) -> SessionStore:
    """Redis when a URL is configured, in process otherwise."""
    return RedisSessionStore(redis_url) if redis_url else InProcessSessionStore()
