"""The gateway's own HTTP responsibilities, over real HTTP against the real app.

These need no manager: the version probe, error shapes for unknown routes, unsigned requests and
bad bodies (answered before any call), and a manager that is down. Calls that reach the manager
are in test_gateway_with_manager.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
import websockets
from bai.common import auth
from bai.gateway.native import bindings
from cluster import SignedAuth
from postgres import free_port

PROB = "https://api.backend.ai/probs/"


@pytest.fixture(scope="module")
async def gateway(
    gateway_server: Callable[..., AbstractAsyncContextManager[str]],
) -> AsyncIterator[str]:
    """A gateway whose manager address has nothing listening."""
    async with gateway_server(f"127.0.0.1:{free_port()}", call_timeout=2.0) as addr:
        yield addr


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == PROB + slug
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["data"], dict) and "msg" in body
    assert "detail" not in body
    return dict(body)


async def test_version_probe_is_open_and_also_accepts_signed_requests(gateway: str) -> None:
    expected = {"version": "v9.20250722", "manager": "26.9.6"}
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as anon:
        assert (await anon.get("/")).json() == expected
        announcement = await anon.get("/manager/announcement")
        assert announcement.json() == {"enabled": False, "message": ""}
    async with httpx.AsyncClient(base_url=f"http://{gateway}", auth=SignedAuth("AK", "SK")) as c:
        assert (await c.get("/")).json() == expected


async def test_unknown_routes_and_methods_get_problem_bodies(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as c:
        _assert_problem(await c.get("/no/such/route"), 404, "generic-not-found")
        _assert_problem(await c.put("/session"), 405, "method-not-allowed")


async def test_unsigned_requests_are_401_on_every_route(gateway: str) -> None:
    routes = [("GET", "/session/x"), ("POST", "/session/x/interrupt"), ("DELETE", "/session/x")]
    for binding in bindings():
        path = binding.route_path.replace("{session_ref}", "x")
        routes.append((binding.verb, path))
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as c:
        for method, path in routes:
            body = None if method in ("GET", "DELETE") else {}
            response = await c.request(method, path, json=body)
            problem = _assert_problem(response, 401, "auth-failed")
            assert problem["reason"] == "MISSING_AUTHORIZATION", (method, path)


async def test_stale_dates_are_401_without_asking_the_manager(gateway: str) -> None:
    stale = "2020-01-01T00:00:00+00:00"
    async with httpx.AsyncClient(
        base_url=f"http://{gateway}", auth=SignedAuth("AK", "SK", date=stale)
    ) as c:
        problem = _assert_problem(await c.get("/session/x"), 401, "auth-failed")
        assert problem["reason"] == "CLOCK_SKEW"


async def test_malformed_bodies_are_400_invalid_api_params(gateway: str) -> None:
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=f"http://{gateway}", auth=SignedAuth("AK", "SK")) as c:
        _assert_problem(
            await c.post("/session", content=b"{oops", headers=headers), 400, "invalid-api-params"
        )
        wrong = _assert_problem(
            await c.post("/session", json={"image": 42}), 400, "invalid-api-params"
        )
        assert wrong["data"] == {"image": "Input should be a valid string"}
        missing = _assert_problem(await c.post("/session", json={}), 400, "invalid-api-params")
        assert "image" in missing["data"]
        bad_mode = await c.post("/session/x", json={"mode": "teleport", "code": ""})
        _assert_problem(bad_mode, 400, "invalid-api-params")
        native = await c.post("/v1/sessions", content=b"{oops", headers=headers)
        _assert_problem(native, 400, "invalid-api-params")
        unknown = await c.get("/v1/sessions", params={"bogus": "1"})
        _assert_problem(unknown, 400, "invalid-api-params")
        mounts = {"image": "python", "config": {"mounts": [{"bad": "shape"}]}}
        _assert_problem(await c.post("/session", json=mounts), 400, "invalid-api-params")


async def test_a_manager_that_is_down_is_503(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway}", auth=SignedAuth("AK", "SK")) as c:
        for response in (await c.get("/session/x"), await c.get("/v1/images")):
            _assert_problem(response, 503, "service-unavailable")
        streamed = await c.get("/v1/sessions/x/logs")
        _assert_problem(streamed, 503, "service-unavailable")


async def test_websocket_handshakes_are_refused_with_a_problem(gateway: str) -> None:
    url = f"ws://{gateway}/stream/session/x/execute"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["type"] == PROB + "auth-failed"
    path = "/stream/session/x/execute"
    date = auth.now_date()
    signed = auth.SignedRequest(
        "GET", path, date, gateway, "application/octet-stream", auth.API_VERSION
    )
    headers = {
        "Date": date,
        "X-BackendAI-Version": auth.API_VERSION,
        "Authorization": auth.authorization_header("AK", auth.sign(signed, "SK")),
    }
    with pytest.raises(websockets.InvalidStatus) as down:
        async with websockets.connect(url, additional_headers=headers):
            pass
    assert down.value.response.status_code == 503


async def test_openapi_describes_both_apis(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as c:
        schema = (await c.get("/openapi.json")).json()
    assert {"/session", "/session/{ref}", "/v1/sessions", "/v1/images"} <= set(schema["paths"])


async def test_values_protobuf_refuses_are_400_not_500(gateway: str) -> None:
    lone_surrogate = b'{"image": "python", "name": "\\ud800"}'
    async with httpx.AsyncClient(base_url=f"http://{gateway}", auth=SignedAuth("AK", "SK")) as c:
        for content in (
            lone_surrogate,
            b'{"image": "python", "batch_timeout": NaN}',
            b'{"image": "python", "batch_timeout": "forever"}',
            b'{"image": "python", "maxWaitSeconds": 100000000000}',
            b'{"image": "python", "clusterSize": 1099511627776}',
        ):
            response = await c.post(
                "/session", content=content, headers={"Content-Type": "application/json"}
            )
            _assert_problem(response, 400, "invalid-api-params")
        execute = await c.post(
            "/session/x",
            content=b'{"mode": "query", "code": "\\udfff"}',
            headers={"Content-Type": "application/json"},
        )
        _assert_problem(execute, 400, "invalid-api-params")
