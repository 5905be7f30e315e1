"""Two managers and two gateways sharing one database and one Redis event bus.

A session created and destroyed through gateway A (manager A) is watched over SSE through both
gateways; gateway B's manager only learns of the transitions from the Redis stream. The
kernel_terminating event checked is one the watcher's periodic database re-read could never
produce, so its arrival through gateway B proves the bus carried it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bai.manager.server import run_manager
from cluster import SignedAuth
from gateway_stack import serve_gateway
from manager_harness import InteractiveAgent, Keys, manager_config, prepare_db
from redis_server import RedisServer, start_redis

Frames = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@dataclass
class Replicas:
    managers: list[str]
    gateways: list[str]
    user: Keys
    token: str


@pytest.fixture
async def replicas(db_url: str, redis_server: RedisServer) -> AsyncIterator[Replicas]:
    _, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with AsyncExitStack() as stack:
        managers, gateways = [], []
        for _ in range(2):
            running = await stack.enter_async_context(run_manager(manager_config(
                db_url, token, redis_url=redis_server.url)))
            managers.append(running.address)
            gateways.append(await stack.enter_async_context(
                serve_gateway(running.address, token)))
        yield Replicas(managers, gateways, user, token)


async def _watch(gateway: str, user: Keys, name: str, ready: asyncio.Event) -> Frames:
    frames: Frames = []
    auth = SignedAuth(user.access_key, user.secret_key)
    async with (httpx.AsyncClient(base_url=f"http://{gateway}", auth=auth, timeout=60) as c,
                c.stream("GET", "/events/session", params={"sessionName": name}) as response):
        assert response.status_code == 200, await response.aread()
        ready.set()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                frames.append((event, json.loads(line.removeprefix("data: "))))
    return frames


async def test_every_gateway_sees_every_event(replicas: Replicas) -> None:
    user = replicas.user
    name = "rep-" + uuid.uuid4().hex[:8]
    auth = SignedAuth(user.access_key, user.secret_key)
    # The agent joins manager A only; the session is created and destroyed through gateway A.
    agent = await InteractiveAgent("i-rep-" + secrets.token_hex(3), replicas.managers[0],
                                   replicas.token).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{replicas.gateways[0]}", auth=auth,
                                     timeout=60) as a:
            r = await a.post("/session", json={
                "name": name, "image": "python",
                "config": {"resources": {"cpu": "1", "mem": "64m"}}})
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "RUNNING"
            ready = [asyncio.Event(), asyncio.Event()]
            watchers = [asyncio.create_task(_watch(gw, user, name, ev))
                        for gw, ev in zip(replicas.gateways, ready, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in ready)), 30)
            assert (await a.delete(f"/session/{name}")).status_code in (200, 204)
            results = await asyncio.wait_for(asyncio.gather(*watchers), 60)
    finally:
        await agent.stop()
    for frames in results:
        # kernel_terminating only comes from a TERMINATING notice on the bus: the periodic
        # re-read jumps straight to the terminal state's events.
        assert [f[0] for f in frames] == ["kernel_terminating", "kernel_terminated",
                                          "session_terminated", "server_close"]
        assert all(f[1]["sessionName"] == name for f in frames[:-1])
