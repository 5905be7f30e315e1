"""The gateway in front of the real manager: compatibility routes, WebSocket framing, native REST.

Each request goes HTTP -> gateway -> gRPC (forwarded signature) -> real manager servicers ->
agent protocol. Execution output comes from the protocol agent in gateway_stack.py.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import websockets
from bai.common import auth
from bai.gateway import convert
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from bai.pb.manager.v1 import session_service_pb2_grpc as sessions_grpc
from cluster import SignedAuth
from gateway_stack import Stack, serve_gateway
from manager_harness import manager_config, prepare_db, sign_metadata

PROB = "https://api.backend.ai/probs/"
IMAGE = "bai/python:3.11-debian12"


def _body(name: str, **kw: Any) -> dict[str, Any]:
    """The official client's v9 create body (wire doc §6.1)."""
    body: dict[str, Any] = {
        "tag": None, "name": name, "image": "python:3.11", "architecture": "x86_64",
        "type": "interactive", "domain": "default", "group": "default",
        "owner_access_key": None, "enqueueOnly": False, "maxWaitSeconds": 0,
        "reuseIfExists": True, "startupCommand": None, "clusterSize": 1,
        "clusterMode": "single-node", "starts_at": None, "bootstrap_script": None,
        "dependencies": [], "callback_url": None,
        "config": {"mounts": [], "mount_ids": [], "mount_map": {}, "mount_id_map": {},
                   "mount_options": {}, "environ": {"A": "1"},
                   "resources": {"cpu": "1", "mem": "256m"}, "resource_opts": {},
                   "scalingGroup": None, "attach_network": None, "preopen_ports": None},
    }  # fmt: skip
    body.update(kw)
    return body


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    signer = SignedAuth(stack.user.access_key, stack.user.secret_key)
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=signer, timeout=30) as c:
        yield c


@pytest.fixture
async def session(client: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    name = "gw-" + uuid.uuid4().hex[:8]
    created = await client.post("/session", json=_body(name))
    assert created.status_code == 201, created.text
    yield created.json()
    await client.delete(f"/session/{name}")


def _ws_headers(stack: Stack, path: str, secret: str | None = None) -> dict[str, str]:
    date = auth.now_date()
    signed = auth.SignedRequest(
        "GET", path, date, stack.gateway, "application/octet-stream", auth.API_VERSION
    )
    signature = auth.sign(signed, secret or stack.user.secret_key)
    return {
        "Date": date,
        "X-BackendAI-Version": auth.API_VERSION,
        "Authorization": auth.authorization_header(stack.user.access_key, signature),
    }


async def _ws_run(
    stack: Stack, ref: str, first: str, inputs: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], int | None]:
    """Drives the execute WebSocket like the official client; returns frames and close code."""
    path = f"/stream/session/{ref}/execute"
    pending = list(inputs)
    frames: list[dict[str, Any]] = []
    async with websockets.connect(
        f"ws://{stack.gateway}{path}", additional_headers=_ws_headers(stack, path)
    ) as ws:
        await ws.send(first)
        try:
            async for message in ws:
                assert isinstance(message, str)  # text frames only
                frames.append(json.loads(message))
                if frames[-1]["status"] == "waiting-input":
                    await ws.send(pending.pop(0))
        except websockets.ConnectionClosedError:
            pass  # closed with an error code: the caller checks it
    return frames, ws.close_code


async def test_create_reuse_and_name_conflict(stack: Stack, client: httpx.AsyncClient) -> None:
    name = "gw-" + uuid.uuid4().hex[:8]
    first = await client.post("/session", json=_body(name))
    assert first.status_code == 201, first.text
    created = first.json()
    assert str(uuid.UUID(created["sessionId"])) == created["sessionId"]
    assert (created["sessionName"], created["status"], created["created"]) == (
        name, "RUNNING", True,
    )  # fmt: skip
    assert created["servicePorts"] == []
    again = await client.post("/session", json=_body(name))
    assert again.status_code == 200
    assert (again.json()["sessionId"], again.json()["created"]) == (created["sessionId"], False)
    taken = await client.post("/session", json=_body(name, reuseIfExists=False))
    assert taken.status_code == 409
    assert taken.json()["type"] == PROB + "session-already-exists"
    assert taken.json()["data"]["existingSessionId"] == created["sessionId"]
    assert (await client.delete(f"/session/{name}")).json() == {"stats": {}}


async def test_info_by_name_and_id(
    stack: Stack, client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    by_name = (await client.get(f"/session/{session['sessionName']}")).json()
    by_id = (await client.get(f"/session/{session['sessionId']}")).json()
    assert by_name == {**by_id, "age": by_name["age"]}
    assert by_name["sessionId"] == session["sessionId"]
    assert (by_name["status"], by_name["type"], by_name["image"]) == (
        "RUNNING", "interactive", IMAGE,
    )  # fmt: skip
    assert by_name["agents"] == [stack.agent_id]
    assert by_name["containerId"].startswith("c")
    assert by_name["environ"] == {"A": "1"}
    assert by_name["occupiedSlots"]["cpu"] == "1"
    assert by_name["created_at"] and by_name["terminated_at"] is None
    history = (await client.get(f"/session/{session['sessionId']}/status-history")).json()
    assert {"PENDING", "SCHEDULED", "RUNNING"} <= set(history["result"])


async def test_session_info_fast_path_answers_what_the_manager_says(
    stack: Stack, client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    """``GET /session/{ref}`` is served by SessionInfoFastPath, not FastAPI's route: its body
    must still be ``convert.session_info`` of the manager's GetSession reply, behind the rate
    limiter (headers), with the JSON the route would send."""
    method = "/bai.manager.v1.SessionService/GetSession"
    async with grpc.aio.insecure_channel(stack.manager) as channel:
        reply = await sessions_grpc.SessionServiceStub(channel).GetSession(
            sessions_pb.GetSessionRequest(session_ref=session["sessionId"]),
            metadata=sign_metadata(stack.user, method, stack.manager), timeout=10)
    got = await client.get(f"/session/{session['sessionId']}")
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    limit = int(got.headers["x-ratelimit-limit"])
    assert 0 <= int(got.headers["x-ratelimit-remaining"]) < limit
    assert got.headers["x-ratelimit-window"] == "900"
    expected = convert.session_info(reply.session)
    assert isinstance(got.json()["age"], int)
    assert {**got.json(), "age": 0} == {**expected, "age": 0}
    # Paths the route would not match are left to the app: its problem bodies, not ours.
    nested = await client.get(f"/session/{session['sessionId']}/nope")
    assert nested.status_code == 404 and nested.json()["type"] == PROB + "generic-not-found"


_DEACTIVATE = """mutation($access_key: String!, $input: ModifyKeyPairInput!) {
    modify_keypair(access_key: $access_key, props: $input) { ok msg }
}"""


async def test_a_deactivated_keypair_is_refused_on_its_next_session_read(db_url: str) -> None:
    """The fast path caches bodies, never decisions: every read asks the manager, which
    authenticates it, so deactivation applies to the very next ``GET /session/{ref}``."""
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running, \
            serve_gateway(running.address, token) as addr:
        base = f"http://{addr}"
        as_admin = httpx.AsyncClient(base_url=base, timeout=30,
                                     auth=SignedAuth(admin.access_key, admin.secret_key))
        as_user = httpx.AsyncClient(base_url=base, timeout=30,
                                    auth=SignedAuth(user.access_key, user.secret_key))
        async with as_admin, as_user:
            async def set_active(active: bool) -> None:
                r = await as_admin.post("/admin/gql", json={"query": _DEACTIVATE, "variables": {
                    "access_key": user.access_key, "input": {"is_active": active}}})
                assert r.json()["data"]["modify_keypair"]["ok"] is True, r.text

            before = await as_user.get("/session/no-such-session")
            assert before.status_code == 404  # authenticated, then not found
            await set_active(False)
            refused = await as_user.get("/session/no-such-session")
            assert refused.status_code == 401, refused.text
            assert refused.json()["type"] == PROB + "auth-failed"
            assert refused.json()["reason"] == "INACTIVE_KEYPAIR"
            await set_active(True)
            assert (await as_user.get("/session/no-such-session")).status_code == 404


async def test_unknown_sessions_and_bad_signatures(stack: Stack, client: httpx.AsyncClient) -> None:
    missing = await client.get("/session/no-such-session")
    assert missing.status_code == 404 and missing.json()["type"] == PROB + "session-not-found"
    native = await client.get("/v1/sessions/no-such-session/logs")
    assert native.status_code == 404 and native.json()["reason"] == "SESSION_NOT_FOUND"
    wrong = SignedAuth(stack.user.access_key, "not-the-secret")
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=wrong) as c:
        denied = await c.get("/session/anything")
    assert denied.status_code == 401 and denied.json()["type"] == PROB + "auth-failed"
    unknown = SignedAuth("AKIAUNKNOWN0000000", "whatever")
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=unknown) as c:
        assert (await c.get("/v1/images")).status_code == 401


async def test_http_execute_query_batch_and_input(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    ref = session["sessionName"]
    result = (
        await client.post(f"/session/{ref}", json={"mode": "query", "code": "x = 1", "runId": None})
    ).json()["result"]
    assert result["status"] == "finished" and result["runId"]
    assert result["console"] == [["stdout", "ran x = 1\n"]]
    assert result["options"] == {} and result["files"] == []
    counted = (await client.post(f"/session/{ref}", json={"mode": "query", "code": "count"})).json()
    assert counted["result"]["console"] == [["stdout", "0\n1\n2\n"], ["stderr", "done\n"]]
    assert counted["result"]["exitCode"] == 7
    asked = (await client.post(f"/session/{ref}", json={"mode": "query", "code": "ask"})).json()
    assert asked["result"]["status"] == "waiting-input"
    assert asked["result"]["console"] == [["stdout", "before\nname? "]]
    answer = {"mode": "input", "code": "bob", "runId": asked["result"]["runId"]}
    answered = (await client.post(f"/session/{ref}", json=answer)).json()["result"]
    assert answered["status"] == "finished" and answered["console"] == [["stdout", "hello bob\n"]]
    no_run = await client.post(f"/session/{ref}", json={"mode": "continue", "code": ""})
    assert no_run.status_code == 400 and no_run.json()["type"] == PROB + "invalid-api-params"


async def test_websocket_streams_frames_as_output_arrives(
    stack: Stack, session: dict[str, Any]
) -> None:
    first = json.dumps({"code": "count", "mode": "query", "options": {}})
    frames, close_code = await _ws_run(stack, session["sessionId"], first)
    assert [f["status"] for f in frames] == ["continued"] * 4 + ["finished"]
    assert [f["console"] for f in frames] == [
        [["stdout", "0\n"]], [["stdout", "1\n"]], [["stdout", "2\n"]], [["stderr", "done\n"]], [],
    ]  # fmt: skip
    assert frames[-1]["exitCode"] == 7 and close_code == 1000
    for frame in frames:
        assert {"runId", "status", "console", "exitCode", "options", "files"} <= set(frame)


async def test_websocket_answers_input_prompts(stack: Stack, session: dict[str, Any]) -> None:
    first = json.dumps({"code": "ask", "mode": "query", "options": {}})
    frames, close_code = await _ws_run(stack, session["sessionName"], first, ("alice",))
    assert [f["status"] for f in frames] == ["continued", "waiting-input", "continued", "finished"]
    assert frames[1]["console"] == [["stdout", "name? "]]
    assert frames[2]["console"] == [["stdout", "hello alice\n"]]
    assert frames[-1]["exitCode"] == 0 and close_code == 1000


async def test_websocket_errors(stack: Stack, session: dict[str, Any]) -> None:
    frames, close_code = await _ws_run(stack, session["sessionId"], "{not json")
    assert frames[0]["status"] == "error" and frames[0]["type"] == PROB + "invalid-api-params"
    assert frames[0]["console"][0][0] == "stderr" and close_code == 1008
    path = "/stream/session/no-such-session/execute"
    with pytest.raises(websockets.InvalidStatus) as missing:
        async with websockets.connect(
            f"ws://{stack.gateway}{path}", additional_headers=_ws_headers(stack, path)
        ):
            pass
    assert missing.value.response.status_code == 404
    assert json.loads(missing.value.response.body)["type"] == PROB + "session-not-found"
    path = f"/stream/session/{session['sessionId']}/execute"
    with pytest.raises(websockets.InvalidStatus) as denied:
        async with websockets.connect(
            f"ws://{stack.gateway}{path}", additional_headers=_ws_headers(stack, path, "wrong")
        ):
            pass
    assert denied.value.response.status_code == 401


async def test_logs_interrupt_restart_destroy(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    ref = session["sessionName"]
    logs = await client.get(f"/session/{ref}/logs")
    assert logs.json() == {"result": {"logs": "line 1\nline 2\n"}}
    assert (await client.post(f"/session/{ref}/interrupt")).status_code == 204
    assert (await client.patch(f"/session/{ref}")).status_code == 204
    destroyed = await client.delete(f"/session/{ref}", params={"forced": "true"})
    assert destroyed.status_code == 200 and destroyed.json() == {"stats": {}}
    after = (await client.get(f"/session/{session['sessionId']}")).json()
    assert after["status"] in ("TERMINATING", "TERMINATED")


async def test_native_routes(
    stack: Stack, client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    name = session["sessionName"]
    got = (await client.get(f"/v1/sessions/{name}")).json()
    assert got["session"]["id"] == session["sessionId"]
    assert got["session"]["status"]["state"] == "STATE_RUNNING"
    listed = await client.get("/v1/sessions", params={"states": "STATE_RUNNING", "pageSize": 10})
    assert session["sessionId"] in [s["id"] for s in listed.json()["sessions"]]
    executed = await client.post(
        f"/v1/sessions/{name}:execute", json={"mode": "EXECUTION_MODE_QUERY", "code": "count"}
    )
    assert executed.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in executed.text.splitlines()]
    assert [line["data"] for line in lines] == ["0\n", "1\n", "2\n", "done\n", ""]
    assert lines[-1]["finished"] and lines[-1]["exitCode"] == 7
    logs = await client.get(f"/v1/sessions/{name}/logs")
    assert [json.loads(line)["data"] for line in logs.text.splitlines()] == ["line 1\n", "line 2\n"]
    images = (await client.get("/v1/images")).json()["images"]
    assert any(stack.agent_id in image["agentIds"] for image in images)
    created = await client.post(
        "/v1/sessions", json={"name": "gw-n-" + uuid.uuid4().hex[:6], "image": "python"}
    )
    assert created.status_code == 200 and created.json()["created"] is True
    deleted = await client.delete(f"/v1/sessions/{created.json()['session']['id']}")
    assert deleted.status_code == 200
    unspecified = await client.post(f"/v1/sessions/{name}:execute", json={"code": "x"})
    assert unspecified.status_code == 400
