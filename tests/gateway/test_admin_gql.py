"""``POST /admin/gql`` and ``GET /events/session`` through the gateway to the real manager."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cluster import SignedAuth
from gateway_stack import Stack

SESSION_LIST = """query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String, $order: String) {
  compute_session_list(
      limit:$limit, offset:$offset, status:$status, access_key:$access_key, filter:$filter, order:$order) {
    items { name priority id group_name type image status status_info status_changed result }
    total_count
  }
}"""  # noqa: E501
SESSION_INFO = "query($id: UUID!) {  compute_session(id: $id) {    name priority id main_kernel_id image tag created_at terminated_at status status_info status_data occupying_slots idle_checks containers { id cluster_role cluster_idx cluster_hostname session_id image registry status status_info status_data status_changed agent container_id resource_opts occupied_slots preopen_ports live_stat last_stat id } dependencies { name id }  }}"  # noqa: E501


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    signer = SignedAuth(stack.user.access_key, stack.user.secret_key)
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=signer, timeout=30) as c:
        yield c


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    r = await client.post("/admin/gql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def new_session(client: httpx.AsyncClient) -> dict[str, Any]:
    name = "gq-" + uuid.uuid4().hex[:8]
    r = await client.post("/session", json={"name": name, "image": "python",
                                            "config": {"resources": {"cpu": "1", "mem": "64m"}}})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_keypair_fields_in_selection_order(client: httpx.AsyncClient, stack: Stack) -> None:
    body = await gql(client, "query { keypair { is_admin access_key user_id secret_key } }")
    assert "errors" not in body, body
    keypair = body["data"]["keypair"]
    assert list(keypair) == ["is_admin", "access_key", "user_id", "secret_key"]
    assert keypair == {"is_admin": False, "access_key": stack.user.access_key,
                       "user_id": "user@localhost", "secret_key": stack.user.secret_key}


async def test_session_list_and_info(client: httpx.AsyncClient) -> None:
    created = [await new_session(client) for _ in range(3)]
    body = await gql(client, SESSION_LIST, limit=2, offset=0, status="RUNNING,RUNNING_DEGRADED",
                     access_key=None, filter=None, order=None)
    assert "errors" not in body, body
    page = body["data"]["compute_session_list"]
    assert page["total_count"] >= 3 and len(page["items"]) == 2
    item = page["items"][0]
    assert list(item) == ["name", "priority", "id", "group_name", "type", "image", "status",
                          "status_info", "status_changed", "result"]
    assert item["name"] == created[-1]["sessionName"] and item["status"] == "RUNNING"
    assert item["type"] == "INTERACTIVE" and item["group_name"] == "default"
    rest = await gql(client, SESSION_LIST, limit=20, offset=2, status="RUNNING")
    assert len(rest["data"]["compute_session_list"]["items"]) == page["total_count"] - 2
    none = await gql(client, SESSION_LIST, limit=20, offset=0, status="CANCELLED")
    names = {i["name"] for i in none["data"]["compute_session_list"]["items"]}
    assert not names & {c["sessionName"] for c in created}

    body = await gql(client, SESSION_INFO, id=created[0]["sessionId"])
    assert "errors" not in body, body
    info = body["data"]["compute_session"]
    assert info["name"] == created[0]["sessionName"] and info["status"] == "RUNNING"
    assert json.loads(info["occupying_slots"]) == {"cpu": "1", "mem": str(64 << 20)}
    container = info["containers"][0]
    assert next(iter(container)) == "id" and list(container).count("id") == 1
    assert json.loads(container["live_stat"]) == {} and container["cluster_role"] == "main"
    assert info["dependencies"] == []
    missing = await gql(client, SESSION_INFO, id=str(uuid.uuid4()))
    assert missing == {"data": {"compute_session": None}}
    for c in created:
        await client.delete(f"/session/{c['sessionName']}")


async def test_user_lists_and_agents(client: httpx.AsyncClient) -> None:
    body = await gql(client, "query($l:Int!,$o:Int!){ user_list(limit:$l, offset:$o) "
                     "{ items { email role groups { name } main_access_key } total_count } }",
                     l=20, o=0)
    assert body["data"]["user_list"]["total_count"] == 1  # a user sees itself only
    assert body["data"]["user_list"]["items"][0]["groups"] == [{"name": "default"}]
    body = await gql(client, "{ agent_list(limit: 20, offset: 0) { total_count } }")
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"


async def test_bad_queries_get_precise_errors(client: httpx.AsyncClient, stack: Stack) -> None:
    body = await gql(client, "{ keypair { no_such_field } }")
    assert "no_such_field" in body["errors"][0]["message"]
    nested = "{ compute_session_list(limit: 1, offset: 0) { items { containers { id } } } }"
    assert "errors" not in await gql(client, nested)
    too_deep = "query { keypair { " + "user_info { " * 8 + "full_name" + " }" * 9 + " }"
    body = await gql(client, too_deep)
    assert body["data"] is None and "depth" in body["errors"][0]["message"].lower()
    body = await gql(client, "{ keypair_list(limit: 0, offset: 0) { total_count } }")
    assert "limit" in body["errors"][0]["message"]
    body = await gql(client, "{ keypair_list(limit: 10, offset: 0, filter: \"x\") "
                             "{ total_count } }")
    assert "filter" in body["errors"][0]["message"]
    body = await gql(client, "mutation { x }")
    assert body["errors"]
    r = await client.post("/admin/gql", content=b"not json",
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["message"]
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}") as anonymous:
        r = await anonymous.post("/admin/gql", json={"query": "{ keypair { access_key } }"})
    assert r.status_code == 401


async def test_session_events_stream(client: httpx.AsyncClient) -> None:
    created = await new_session(client)
    name = created["sessionName"]
    r = await client.get("/events/session", params={"sessionName": "no-such-session"})
    assert r.status_code == 404
    frames: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", "/events/session",
                             params={"sessionName": name, "scope": "*"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        destroy = asyncio.create_task(client.delete(f"/session/{name}"))
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                frames.append((event, json.loads(line.removeprefix("data: "))))
        await destroy
    assert [f[0] for f in frames] == ["kernel_terminating", "kernel_terminated",
                                      "session_terminated", "server_close"]
    assert frames[2][1]["sessionId"] == created["sessionId"]
    assert frames[2][1]["sessionName"] == name and frames[2][1]["exitCode"] == 0
    r = await client.get("/events/session", params={"sessionId": created["sessionId"],
                                                      "scope": "session"})
    assert "event: session_terminated" in r.text and "kernel_" not in r.text
    assert r.text.rstrip().endswith("data: {}")
