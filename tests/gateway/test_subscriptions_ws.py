"""GraphQL subscriptions over ``graphql-transport-ws`` at ``/admin/gql`` with a real websocket
client, through the real gateway to the real manager's event stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from bai.common import auth
from cluster import SignedAuth
from gateway_stack import Stack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
EVENTS = """subscription($name: String!, $scope: String!) {
  session_events(session_name: $name, scope: $scope) {
    name session_id session_name kernel_id status reason exit_code owner_access_key created_at
  }
}"""


def _signed_headers(stack: Stack, secret_key: str | None = None) -> dict[str, str]:
    date = auth.now_date()
    signed = auth.SignedRequest("GET", "/admin/gql", date, stack.gateway,
                                "application/octet-stream", auth.API_VERSION)
    return {
        "Date": date,
        "X-BackendAI-Version": auth.API_VERSION,
        "Authorization": auth.authorization_header(
            stack.user.access_key, auth.sign(signed, secret_key or stack.user.secret_key)),
    }


async def _open(stack: Stack, headers: dict[str, str]) -> ClientConnection:
    ws = await connect(f"ws://{stack.gateway}/admin/gql", subprotocols=[PROTOCOL],  # type: ignore[list-item]
                       additional_headers=headers)
    assert ws.subprotocol == PROTOCOL
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    return ws


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return message


async def _new_session(stack: Stack) -> str:
    signer = SignedAuth(stack.user.access_key, stack.user.secret_key)
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=signer,
                                 timeout=30) as client:
        name = "ws-" + uuid.uuid4().hex[:8]
        r = await client.post("/session", json={
            "name": name, "image": "python", "config": {"resources": {"cpu": "1", "mem": "64m"}}})
        assert r.status_code == 201, r.text
    return name


async def _destroy(stack: Stack, name: str) -> None:
    signer = SignedAuth(stack.user.access_key, stack.user.secret_key)
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=signer,
                                 timeout=30) as client:
        assert (await client.delete(f"/session/{name}")).status_code in (200, 204)


async def test_session_events_subscription_streams_until_the_end(stack: Stack) -> None:
    name = await _new_session(stack)
    async with await _open(stack, _signed_headers(stack)) as ws:
        assert (await _recv(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": EVENTS, "variables": {"name": name, "scope": "*"}}}))
        await asyncio.sleep(0.3)  # the manager subscribes before the destroy below
        destroy = asyncio.create_task(_destroy(stack, name))
        events: list[dict[str, Any]] = []
        while True:
            message = await _recv(ws)
            if message["type"] == "complete":
                break
            assert message["type"] == "next" and message["id"] == "1", message
            assert "errors" not in message["payload"], message
            events.append(message["payload"]["data"]["session_events"])
        await destroy
    assert [e["name"] for e in events] == ["kernel_terminating", "kernel_terminated",
                                           "session_terminated"]
    final = events[-1]
    assert final["session_name"] == name and final["status"] == "TERMINATED"
    assert final["exit_code"] == 0 and final["kernel_id"] is None
    assert final["owner_access_key"] == stack.user.access_key
    assert events[0]["kernel_id"] and events[0]["exit_code"] is None


async def test_scope_filter_and_terminal_session(stack: Stack) -> None:
    name = await _new_session(stack)
    await _destroy(stack, name)
    async with await _open(stack, _signed_headers(stack)) as ws:
        assert (await _recv(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {
            "query": EVENTS, "variables": {"name": name, "scope": "session"}}}))
        first = await _recv(ws)
        assert first["payload"]["data"]["session_events"]["name"] == "session_terminated"
        assert (await _recv(ws))["type"] == "complete"


async def test_bad_subscriptions_get_precise_errors(stack: Stack) -> None:
    async with await _open(stack, _signed_headers(stack)) as ws:
        assert (await _recv(ws))["type"] == "connection_ack"
        cases = {
            "missing": (EVENTS, {"name": "no-such-session", "scope": "*"}, "SESSION_NOT_FOUND"),
            "scope": (EVENTS, {"name": "x", "scope": "nope"}, "INVALID_EVENT_SCOPE"),
            "field": ("subscription { session_events(session_name: \"x\") { no_such_field } }",
                      {}, "no_such_field"),
            "type": ("subscription { session_events(session_name: 5) { name } }", {}, "String"),
        }
        for op_id, (query, variables, expected) in cases.items():
            await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {
                "query": query, "variables": variables}}))
            message = await _recv(ws)
            if message["type"] == "next":  # an error raised inside the stream
                errors = message["payload"]["errors"]
                assert (await _recv(ws))["type"] == "complete"
            else:  # a validation error: the operation never started
                assert message["type"] == "error", message
                errors = message["payload"]
            assert message["id"] == op_id
            assert expected in json.dumps(errors), errors


@pytest.mark.parametrize("kind", ["unsigned", "wrong-secret"])
async def test_unauthenticated_connections_are_closed(stack: Stack, kind: str) -> None:
    headers = {} if kind == "unsigned" else _signed_headers(stack, secret_key="x" * 40)
    async with await _open(stack, headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await _recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
