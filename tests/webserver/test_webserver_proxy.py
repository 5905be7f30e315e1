"""``/func`` through the real webserver: WebSockets under ``/func/stream``, streamed bodies both
ways (SSE out, chunked uploads in), the official client's encoded login body, bad input, Redis
sessions that outlive a webserver, and a gateway that is down. A real manager (SQLite) with a
protocol agent and the real gateway stand behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from bai.webserver import SESSION_COOKIE
from bai.webserver.crypto import encrypt_payload
from e2e_util import body
from postgres import free_port
from redis_server import start_redis
from webserver_stack import ADMIN_EMAIL, WebStack, serve_webserver, start_web_stack
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebStack]:
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'manager.db'}"
    async with start_web_stack(db_url) as running:
        yield running


async def _cookie(base: str, stack: WebStack) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        r = await c.post("/server/login",
                         json={"username": ADMIN_EMAIL, "password": stack.password})
        assert r.json()["authenticated"] is True, r.text
        return {"Cookie": f"{SESSION_COOKIE}={r.cookies[SESSION_COOKIE]}"}


async def _running_session(stack: WebStack, cookie: dict[str, str]) -> str:
    name = "web-" + uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=stack.web, timeout=60, headers=cookie) as c:
        created = await c.post("/func/session", json=body(name))
        assert created.status_code in (200, 201), created.text
    return name


def _ws_url(stack: WebStack, path: str) -> str:
    return stack.web.replace("http://", "ws://") + path


async def test_websocket_execute_streams_both_ways(stack: WebStack) -> None:
    cookie = await _cookie(stack.web, stack)
    name = await _running_session(stack, cookie)
    url = _ws_url(stack, f"/func/stream/session/{name}/execute")
    async with connect(url, additional_headers=cookie, proxy=None) as ws:
        await ws.send(json.dumps({"code": "count", "mode": "query", "options": {}}))
        frames = [json.loads(frame) async for frame in ws]
    out = "".join(data for f in frames for kind, data in f["console"] if kind == "stdout")
    assert out == "0\n1\n2\n", frames
    assert frames[-1]["status"] == "finished" and frames[-1]["exitCode"] == 7
    assert len(frames) >= 3  # one frame per event, as they arrived: nothing was buffered

    # Client → gateway: the prompt's answer travels as the client's next frame.
    async with connect(url, additional_headers=cookie, proxy=None) as ws:
        await ws.send(json.dumps({"code": "ask", "mode": "query"}))
        prompt = json.loads(await ws.recv())
        while prompt["status"] != "waiting-input":
            prompt = json.loads(await ws.recv())
        await ws.send("bob")
        rest = [json.loads(frame) async for frame in ws]
    assert any(data == "hello bob\n" for f in rest for _, data in f["console"]), rest
    assert ws.close_code == 1000

    # The gateway's close code travels too: a bad first frame is a policy violation (1008).
    async with connect(url, additional_headers=cookie, proxy=None) as ws:
        await ws.send("not json")
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["status"] == "error" and "JSON" in error["msg"], error
    assert ws.close_code == 1008


async def test_websocket_refusals_are_precise(stack: WebStack) -> None:
    with pytest.raises(InvalidStatus) as anonymous:
        async with connect(_ws_url(stack, "/func/stream/session/x/execute"), proxy=None):
            pass
    assert anonymous.value.response.status_code == 401
    assert json.loads(anonymous.value.response.body)["reason"] == "LOGIN_REQUIRED"

    for path, headers in (("/func/", {}),  # the anonymous probe is no anonymous socket
                          ("/func/stream/session/x/execute",
                           {"Cookie": f"{SESSION_COOKIE}={'f' * 43}"})):  # a forged cookie
        with pytest.raises(InvalidStatus) as refused:
            async with connect(_ws_url(stack, path), additional_headers=headers, proxy=None):
                pass
        assert refused.value.response.status_code == 401, path

    cookie = await _cookie(stack.web, stack)
    with pytest.raises(InvalidStatus) as unknown:
        async with connect(_ws_url(stack, "/func/stream/session/no-such-session/execute"),
                           additional_headers=cookie, proxy=None):
            pass
    # The gateway's own answer, relayed: the signature verified, the session does not exist.
    assert unknown.value.response.status_code == 404
    assert json.loads(unknown.value.response.body)["type"].endswith("/session-not-found")


async def test_sse_streams_out_and_chunked_bodies_stream_in(stack: WebStack) -> None:
    cookie = await _cookie(stack.web, stack)
    name = await _running_session(stack, cookie)
    async with httpx.AsyncClient(base_url=stack.web, timeout=60, headers=cookie) as c:
        async with c.stream("GET", "/func/events/session",
                            params={"sessionName": name, "scope": "*"}) as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            destroy = asyncio.create_task(c.delete(f"/func/session/{name}"))
            names = [line.removeprefix("event: ") async for line in events.aiter_lines()
                     if line.startswith("event: ")]
            assert (await destroy).status_code == 200
        assert names[-1] == "server_close" and "session_terminated" in names, names

        async def chunks() -> AsyncIterator[bytes]:
            query = json.dumps({"query": "query { keypair { access_key } }"}).encode()
            for i in range(0, len(query), 7):
                yield query[i:i + 7]

        me = await c.post("/func/admin/gql", content=chunks(),
                          headers={"Content-Type": "application/json"})
        assert me.status_code == 200, me.text
        assert me.json()["data"]["keypair"]["access_key"] == stack.admin.access_key


async def test_encoded_login_body_and_bad_input(stack: WebStack) -> None:
    async with httpx.AsyncClient(base_url=stack.web, timeout=60) as c:
        # Exactly what the official client sends over http: the key derives from its endpoint.
        creds = json.dumps({"username": ADMIN_EMAIL, "password": stack.password}).encode()
        iv = secrets.token_hex(8).encode()
        encoded = encrypt_payload(stack.web, creds, iv)
        ok = await c.post("/server/login", content=encoded,
                          headers={"X-BackendAI-Encoded": "true", "Content-Type": "text/plain"})
        assert ok.json()["authenticated"] is True, ok.text

        wrong_key = encrypt_payload("http://elsewhere:1", creds, iv)
        for bad, why in ((wrong_key, "does not decrypt"), (b"no-colon", "iv"),
                         (iv + b":%%%", "base64")):
            r = await c.post("/server/login", content=bad,
                             headers={"X-BackendAI-Encoded": "true"})
            assert r.status_code == 400 and why in r.json()["msg"], r.text
        for bad_json, why in ((b"{", "must be JSON"), (b"[1]", "JSON object"),
                              (b'{"password": "x"}', "username"),
                              (b'{"username": "a@b", "password": 3}', "password")):
            r = await c.post("/server/login", content=bad_json)
            assert r.status_code == 400, r.text
            problem = r.json()
            assert problem["reason"] == "INVALID_LOGIN_REQUEST" and why in problem["msg"]
            assert problem["title"] and problem["type"].endswith("/invalid-api-params")


async def test_redis_sessions_outlive_the_webserver(stack: WebStack) -> None:
    with start_redis() as redis:
        async with serve_webserver(stack.gateway, redis_url=redis.url) as first:
            cookie = await _cookie(first, stack)
        # A new webserver process (same Redis) honours the cookie the first one issued.
        async with serve_webserver(stack.gateway, redis_url=redis.url) as second, \
                httpx.AsyncClient(base_url=second, timeout=60, headers=cookie) as c:
            check = await c.get("/server/login-check")
            assert check.json()["authenticated"] is True, check.text
            me = await c.post("/func/admin/gql",
                              json={"query": "query { keypair { access_key } }"})
            assert me.json()["data"]["keypair"]["access_key"] == stack.admin.access_key
            await c.post("/server/logout")
            assert (await c.get("/server/login-check")).json()["authenticated"] is False


@pytest.mark.parametrize("store", ["in-process", "redis"])
async def test_sessions_expire_after_max_age(stack: WebStack, store: str) -> None:
    with contextlib.ExitStack() as resources:
        redis_url = resources.enter_context(start_redis()).url if store == "redis" else ""
        async with serve_webserver(stack.gateway, redis_url=redis_url,
                                   session_max_age=1) as base:
            cookie = await _cookie(base, stack)
            await asyncio.sleep(1.5)  # waits out the 1-second session; asserts no duration
            async with httpx.AsyncClient(base_url=base, timeout=60, headers=cookie) as c:
                assert (await c.get("/server/login-check")).json()["authenticated"] is False
                r = await c.get("/func/session/x")
                assert r.status_code == 401 and r.json()["reason"] == "LOGIN_REQUIRED"


async def test_gateway_down_is_a_bad_gateway_problem(stack: WebStack) -> None:
    async with serve_webserver(f"http://127.0.0.1:{free_port()}") as base, \
            httpx.AsyncClient(base_url=base, timeout=60) as c:
        r = await c.post("/server/login", json={"username": ADMIN_EMAIL, "password": "x"})
        assert r.status_code == 502, r.text
        assert r.json()["reason"] == "GATEWAY_UNAVAILABLE" and r.json()["title"]
