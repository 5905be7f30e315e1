"""Per-access-key rate limiting: both window stores (in process and a real redis-server), the
middleware's headers and 429 shape, uncounting 401s, and the real gateway in front of a manager."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from bai.common import auth
from bai.gateway.ratelimit import (
    InProcessWindows,
    KeypairLimits,
    RateLimitMiddleware,
    RedisWindows,
    Windows,
)
from bai.manager.adapters.db import Database
from bai.manager.server import run_manager
from cluster import SignedAuth
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db
from redis_server import RedisServer, start_redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture(params=["in-process", "redis"])
async def windows(request: pytest.FixtureRequest) -> AsyncIterator[Windows]:
    store: Windows
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisWindows(server.url, prefix=f"t{secrets.token_hex(4)}:")
    else:
        store = InProcessWindows()
    try:
        yield store
    finally:
        await store.close()


async def test_window_counts_up_to_the_limit_then_refuses(windows: Windows) -> None:
    got = [await windows.hit("AK1", f"m{i}", 3, 60) for i in range(5)]
    assert [(d.allowed, d.count) for d in got] == [
        (True, 1), (True, 2), (True, 3), (False, 3), (False, 3)]
    assert 0 < got[3].retry_after <= 60
    assert (await windows.hit("AK2", "m0", 3, 60)).count == 1  # keys are independent
    await windows.forget("AK1", "m1")
    assert (await windows.hit("AK1", "m9", 3, 60)).allowed


async def test_window_slides(windows: Windows) -> None:
    assert (await windows.hit("AK", "a", 1, 0.3)).allowed
    assert not (await windows.hit("AK", "b", 1, 0.3)).allowed
    await asyncio.sleep(0.4)
    assert (await windows.hit("AK", "c", 1, 0.3)).allowed


async def test_redis_windows_are_shared_by_gateways(redis_server: RedisServer) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    one, two = RedisWindows(redis_server.url, prefix), RedisWindows(redis_server.url, prefix)
    try:
        results = await asyncio.gather(*(
            (one if i % 2 else two).hit("AK", f"m{i}", 10, 60) for i in range(30)))
        assert sum(d.allowed for d in results) == 10  # atomic: never more than the limit
    finally:
        await one.close()
        await two.close()


def _signed_app(windows: Windows, limit: int, window: int = 60) -> httpx.AsyncClient:
    async def ok(request: Request) -> JSONResponse:
        status = 401 if request.headers.get("x-fail") else 200
        return JSONResponse({"ok": True}, status_code=status)

    app = Starlette(routes=[Route("/thing", ok)])
    limits = KeypairLimits(limit, None)
    wrapped = RateLimitMiddleware(app, windows, limits, window)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped),  # type: ignore[arg-type]
                             base_url="http://gw")


def _auth(access_key: str) -> dict[str, str]:
    return {"Authorization": auth.authorization_header(access_key, "0" * 64)}


async def test_middleware_headers_429_and_uncounted_rejections(windows: Windows) -> None:
    async with _signed_app(windows, limit=2) as client:
        r = await client.get("/thing", headers=_auth("AKM"))
        assert r.status_code == 200
        assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"],
                r.headers["x-ratelimit-window"]) == ("2", "1", "60")
        for _ in range(3):  # rejected signatures are taken back out of the window
            r = await client.get("/thing", headers={**_auth("AKM"), "x-fail": "1"})
            assert r.status_code == 401
        r = await client.get("/thing", headers=_auth("AKM"))
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "0"
        r = await client.get("/thing", headers=_auth("AKM"))
        assert r.status_code == 429
        body: dict[str, Any] = r.json()
        assert body["type"] == "https://api.backend.ai/probs/too-many-requests"
        assert body["title"] and body["msg"] and body["reason"] == "RATE_LIMITED"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert int(r.headers["retry-after"]) >= 1
        assert (await client.get("/thing")).status_code == 200  # unsigned: not counted here
        r = await client.get("/thing", headers=_auth("AKOTHER"))
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "1"


async def test_keypair_limits_are_fetched_and_cached() -> None:
    calls: list[str] = []
    now = [0.0]

    async def fetch(scope: Any) -> int:
        calls.append(scope["path"])
        return 0 if scope["path"] == "/unset" else 7

    limits = KeypairLimits(100, fetch, ttl=10, clock=lambda: now[0])
    scope = {"path": "/a"}
    assert [await limits(scope, "AK") for _ in range(3)] == [7, 7, 7]
    assert calls == ["/a"]
    now[0] = 11
    assert await limits(scope, "AK") == 7 and len(calls) == 2
    assert await limits({"path": "/unset"}, "AK2") == 100  # no own limit: the default

    async def broken(scope: Any) -> int:
        raise RuntimeError("manager down")

    assert await KeypairLimits(5, broken)({}, "AK") == 5


@pytest.fixture(scope="module")
async def manager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, str, Keys]]:
    """A real manager on SQLite: (address, service token, a user's keys)."""
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('rl') / 'manager.db'}"
    _, user = await prepare_db(db_url)
    db = Database(db_url)
    try:  # the keypair's own limit, which the gateway learns from the manager
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE keypairs SET rate_limit = 3 WHERE access_key = :ak"),
                               {"ak": user.access_key})
    finally:
        await db.close()
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        yield running.address, token, user


@pytest.mark.parametrize("backend", ["in-process", "redis"])
async def test_gateway_limits_requests_per_access_key(
    manager: tuple[str, str, Keys], backend: str, request: pytest.FixtureRequest
) -> None:
    address, token, user = manager
    config: dict[str, Any] = {"rate_limit": 1000}  # the default; this keypair has its own
    if backend == "redis":
        config["redis_url"] = request.getfixturevalue("redis_server").url
    async with serve_gateway(address, token, **config) as addr:
        signer = SignedAuth(user.access_key, user.secret_key)
        async with httpx.AsyncClient(base_url=f"http://{addr}", auth=signer) as client:
            statuses = []
            for _ in range(4):
                r = await client.get("/session/no-such-session")
                statuses.append(r.status_code)
                assert r.headers["x-ratelimit-limit"] == "3"
                assert r.headers["x-ratelimit-window"] == "900"
            assert statuses == [404, 404, 404, 429]
            assert r.json()["type"].endswith("/too-many-requests")
        wrong = SignedAuth(user.access_key, "not-the-secret")
        async with httpx.AsyncClient(base_url=f"http://{addr}", auth=wrong) as forger:
            r = await forger.get("/session/no-such-session")
            assert r.status_code == 429  # over the limit: refused before the manager
