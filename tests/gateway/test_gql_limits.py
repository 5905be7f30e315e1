"""GraphQL guards at ``POST /admin/gql``: oversized, over-complex and ill-typed queries get a
precise GraphQL error (HTTP 200 with ``errors``, or 4xx for a broken body), never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from bai.gateway.admin.graphql import MAX_QUERY_BYTES
from cluster import SignedAuth
from gateway_stack import Stack


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    signer = SignedAuth(stack.user.access_key, stack.user.secret_key)
    async with httpx.AsyncClient(base_url=f"http://{stack.gateway}", auth=signer, timeout=30) as c:
        yield c


async def _errors(client: httpx.AsyncClient, query: str, **variables: Any) -> str:
    r = await client.post("/admin/gql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data"] is None or "errors" in body, body
    assert body["errors"], body
    return " | ".join(e["message"] for e in body["errors"])


async def test_complexity_limits(client: httpx.AsyncClient) -> None:
    many_tokens = "{ " + " ".join(f"a{i}: keypair {{ access_key }}" for i in range(400)) + " }"
    assert "token" in (await _errors(client, many_tokens)).lower()
    aliases = "{ " + " ".join(f"a{i}: keypair {{ access_key }}" for i in range(40)) + " }"
    assert "alias" in (await _errors(client, aliases)).lower()


async def test_type_errors_are_validation_errors(client: httpx.AsyncClient) -> None:
    wrong_literal = '{ compute_session_list(limit: "ten", offset: 0) { total_count } }'
    assert "Int" in await _errors(client, wrong_literal)
    typed = "query($limit: Int!) { compute_session_list(limit: $limit, offset: 0) { total_count } }"
    assert "limit" in await _errors(client, typed, limit="many")
    missing = typed
    assert "limit" in await _errors(client, missing)
    assert "nope" in await _errors(client, "{ nope }")
    bad_uuid = '{ compute_session(id: "not-a-uuid") { name } }'
    assert await _errors(client, bad_uuid)
    syntax = "{ keypair { access_key "
    assert "Syntax Error" in await _errors(client, syntax)


async def test_subscriptions_are_refused_over_post(client: httpx.AsyncClient) -> None:
    message = await _errors(client, 'subscription { session_events(session_name: "x") { name } }')
    assert message


async def test_oversized_and_malformed_bodies(client: httpx.AsyncClient) -> None:
    huge = "{ keypair { access_key } }" + " " * MAX_QUERY_BYTES
    r = await client.post("/admin/gql", json={"query": huge})
    assert r.status_code == 413 and r.json()["errors"][0]["message"]
    r = await client.post("/admin/gql", json={"query": "{ keypair { access_key } }",
                                              "variables": [1]})
    assert r.status_code == 400
    r = await client.post("/admin/gql", json=["not", "an", "object"])
    assert r.status_code == 400
