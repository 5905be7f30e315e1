"""Per-access-key rate limiting, as Backend.AI does it: a sliding window of requests per key.

Every signed HTTP request is counted against its access key over the last ``window`` seconds
(Backend.AI: 15 minutes); the key's limit is its keypair's ``rate_limit`` (see
:class:`KeypairLimits`). Responses carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Window``; a request over the limit gets 429 in Backend.AI's problem shape with a
``Retry-After`` header, and never reaches the manager.

Windows live in Redis (one sorted set per key, updated by one Lua script, so several gateways
share the count atomically and use Redis' clock) when configured, in process otherwise.

Unlike Backend.AI, which authenticates before it counts, the gateway counts before the manager
has verified the signature. So that forged requests cannot spend someone else's quota, a request
the manager rejects as unauthenticated (401) is taken back out of the window, and a request
refused with 429 is not counted at all.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from bai.common import auth
from bai.gateway.errors import PROBLEM_BASE

__all__ = [
    "DEFAULT_WINDOW",
    "Decision",
    "InProcessWindows",
    "KeypairLimits",
    "RateLimitMiddleware",
    "RedisWindows",
    "Windows",
    "build_windows",
    "rate_limit_middleware",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 900
"""Seconds of Backend.AI's rolling window (15 minutes)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of counting one request."""

    allowed: bool
    """False when the key already had ``limit`` requests in the window (nothing was counted)."""
    count: int
    """Requests in the window, this one included when allowed."""
    retry_after: float
    """Seconds until the oldest counted request leaves the window (0 when allowed)."""


class Windows(Protocol):
    """Sliding windows of request times, one per key."""

    async def hit(self, key: str, member: str, limit: int, window: float) -> Decision:
        """Counts request ``member`` for ``key`` unless ``limit`` is already reached."""
        ...

    async def forget(self, key: str, member: str) -> None:
        """Takes a counted request back out (the manager rejected its signature)."""
        ...

    async def close(self) -> None: ...


class InProcessWindows:
    """Windows in this process: a deque of (time, member) per key, oldest first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, collections.deque[tuple[float, str]]] = {}

    async def hit(self, key: str, member: str, limit: int, window: float) -> Decision:
        now = self._clock()
        entries = self._windows.get(key)
        if entries is None:
            entries = self._windows[key] = collections.deque()
        horizon = now - window
        while entries and entries[0][0] <= horizon:
            entries.popleft()
        if len(entries) >= limit:
            retry = entries[0][0] - horizon if entries else window
            return Decision(False, len(entries), max(retry, 0.0))
        entries.append((now, member))
        return Decision(True, len(entries), 0.0)

    async def forget(self, key: str, member: str) -> None:
        entries = self._windows.get(key)
        if entries:
            for entry in reversed(entries):  # the request is recent: search from the end
                if entry[1] == member:
                    entries.remove(entry)
                    break
            if not entries:  # forged keys must not leave an empty window behind each
                del self._windows[key]

    async def close(self) -> None:
        self._windows.clear()


_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = window
  if oldest[2] then retry = tonumber(oldest[2]) + window - now end
  return {0, count, retry}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, count + 1, 0}
"""
"""KEYS[1]: the key's sorted set; ARGV: limit, window (µs), member. Scores are Redis' own
clock in µs, so gateways with skewed clocks share one window."""


class RedisWindows:
    """Windows in Redis (sorted sets ``<prefix><access key>``), shared by every gateway."""

    def __init__(self, url: str, prefix: str = "bai:rlim:") -> None:
        from redis.asyncio import Redis  # the in-process default needs no redis import

        self._redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._prefix = prefix
        self._script = self._redis.register_script(_HIT)

    async def hit(self, key: str, member: str, limit: int, window: float) -> Decision:
        allowed, count, retry_us = await self._script(
            keys=[self._prefix + key], args=[limit, int(window * 1_000_000), member])
        return Decision(bool(allowed), int(count), max(int(retry_us), 0) / 1_000_000)

    async def forget(self, key: str, member: str) -> None:
        await self._redis.zrem(self._prefix + key, member)

    async def close(self) -> None:
        await self._redis.aclose()


LimitLookup = Callable[[Scope, str], Awaitable[int]]
"""``(scope, access_key) -> limit``: the keypair's rate limit (see :class:`KeypairLimits`)."""


class KeypairLimits:
    """The rate limit of each access key, cached for ``ttl`` seconds.

    When the manager's ``Keypair`` message carries ``rate_limit``, a cache miss asks the manager
    (``AdminService.GetKeypair`` signed with the request's own forwarded signature: the caller's
    own keypair); a keypair without one (0), a failed call, or a manager that does not report
    limits yet gets ``default``. A change to a keypair's limit shows after at most ``ttl``.
    """

    def __init__(self, default: int, fetch: Callable[[Scope], Awaitable[int]] | None,
                 ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._default = default
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, int]] = {}

    async def __call__(self, scope: Scope, access_key: str) -> int:
        if self._fetch is None:
            return self._default
        now = self._clock()
        cached = self._cache.get(access_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            limit = await self._fetch(scope) or self._default
        except Exception as exc:  # the request itself will say what is wrong
            log.debug("no rate limit for %s from the manager: %s", access_key, exc)
            return self._default
        if len(self._cache) > 100_000:  # bounded: forged keys must not grow it forever
            self._cache.clear()
        self._cache[access_key] = (now + self._ttl, limit)
        return limit


def _access_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            try:
                return auth.parse_authorization(value.decode("latin-1"))[0]
            except auth.AuthError:
                return None  # the route answers 401 with the precise reason
    return None


def _too_many(limit: int, window: int, retry_after: float) -> tuple[list[tuple[bytes, bytes]],
                                                                   bytes]:
    body = json.dumps({
        "type": PROBLEM_BASE + "too-many-requests",
        "title": "You have reached your API query rate limit.",
        "msg": f"more than {limit} requests in {window} s with this access key",
        "data": {"limit": limit, "window": window, "retryAfter": math.ceil(retry_after)},
        "reason": "RATE_LIMITED",
    }).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
    ]
    return headers, body


class RateLimitMiddleware:
    """ASGI middleware counting signed HTTP requests per access key (WebSockets pass through)."""

    def __init__(self, app: ASGIApp, windows: Windows, limits: LimitLookup, window: int) -> None:
        self._app = app
        self._windows = windows
        self._limits = limits
        self._window = window
        self._window_header = str(window).encode()
        self._prefix = secrets.token_hex(4) + ":"
        self._serial = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _access_key(scope) if scope["type"] == "http" else None
        if key is None:
            await self._app(scope, receive, send)
            return
        limit = await self._limits(scope, key)
        member = self._prefix + str(next(self._serial))
        try:
            decision = await self._windows.hit(key, member, limit, self._window)
        except Exception as exc:  # a broken limiter must not take the API down
            log.warning("rate limiter unavailable, request of %s not counted: %s", key, exc)
            await self._app(scope, receive, send)
            return
        limit_headers = [
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(max(limit - decision.count, 0)).encode()),
            (b"x-ratelimit-window", self._window_header),
        ]
        if not decision.allowed:
            headers, body = _too_many(limit, self._window, decision.retry_after)
            await send({"type": "http.response.start", "status": 429,
                        "headers": headers + limit_headers})
            await send({"type": "http.response.body", "body": body})
            return
        rejected = False

        async def send_with_headers(message: Message) -> None:
            nonlocal rejected
            if message["type"] == "http.response.start":
                rejected = message["status"] == 401
                message["headers"] = [*message.get("headers", ()), *limit_headers]
            await send(message)

        try:
            await self._app(scope, receive, send_with_headers)
        finally:
            if rejected:
                await self._forget(key, member)

    async def _forget(self, key: str, member: str) -> None:
        try:
            await self._windows.forget(key, member)
        except Exception as exc:  # best effort: the entry expires with its window
            log.warning("could not uncount a rejected request of %s: %s", key, exc)


async def _manager_rate_limit(scope: Scope) -> int:
    from bai.gateway.admin.calls import admin_calls  # admin imports the routes: load lazily
    from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
    from starlette.requests import Request

    request = Request(scope)
    up, calls = admin_calls(request)
    reply = await calls.get_keypair(admin_pb.GetKeypairRequest(), metadata=up.metadata(request),
                                    deadline=up.config.call_timeout)
    return int(getattr(reply.keypair, "rate_limit", 0))


def _manager_reports_limits() -> bool:
    from bai.pb.manager.v1 import admin_service_pb2 as admin_pb

    return "rate_limit" in admin_pb.Keypair.DESCRIPTOR.fields_by_name


def build_windows(redis_url: str) -> Windows:
    """Redis windows when a URL is configured (shared by gateways), else in-process."""
    return RedisWindows(redis_url) if redis_url else InProcessWindows()


def rate_limit_middleware(
    app: ASGIApp, windows: Windows, *, default_limit: int, window: int, cache_ttl: float
) -> RateLimitMiddleware:
    """The middleware with limits from the manager's keypairs (``default_limit`` until then)."""
    fetch = _manager_rate_limit if _manager_reports_limits() else None
    return RateLimitMiddleware(app, windows, KeypairLimits(default_limit, fetch, cache_ttl),
                               window)
