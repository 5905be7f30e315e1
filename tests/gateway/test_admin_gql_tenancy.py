"""Tenancy GraphQL (Backend.AI's admin mutations and queries) and ``POST /auth/authorize``,
through the real gateway to a real manager, on SQLite and PostgreSQL.

The mutation texts are the official client's (``ai.backend.client.func.*``, 26.9.6).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bai.manager.server import run_manager
from cluster import SignedAuth
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db

CREATE_USER = """mutation($email: String!, $input: UserInput!) {
    create_user(email: $email, props: $input) {
        ok msg user { domain_name email username uuid }
    }
}"""
MODIFY_USER = """mutation($email: String!, $input: ModifyUserInput!) {
    modify_user(email: $email, props: $input) { ok msg }
}"""
DELETE_USER = """mutation($email: String!) { delete_user(email: $email) { ok msg } }"""
CREATE_KEYPAIR = """mutation($user_id: String!, $input: KeyPairInput!) {
    create_keypair(user_id: $user_id, props: $input) { ok msg keypair { access_key secret_key } }
}"""
MODIFY_KEYPAIR = """mutation($access_key: String!, $input: ModifyKeyPairInput!) {
    modify_keypair(access_key: $access_key, props: $input) { ok msg }
}"""
CREATE_DOMAIN = """mutation($name: String!, $input: DomainInput!) {
    create_domain(name: $name, props: $input) { ok msg domain { name } }
}"""
CREATE_GROUP = """mutation($name: String!, $input: GroupInput!) {
    create_group(name: $name, props: $input) { ok msg group {id domain_name name} }
}"""
MODIFY_GROUP = """mutation($gid: UUID!, $input: ModifyGroupInput!) {
    modify_group(gid: $gid, props: $input) { ok msg }
}"""
GROUP = """query($gid: UUID!) { group(id: $gid) {id name description is_active domain_name
    total_resource_slots members { email role }} }"""
GROUPS = """query($domain_name: String) { groups(domain_name: $domain_name) {id name is_active} }"""
DOMAINS = "query { domains { name description is_active total_resource_slots } }"
KEYPAIR_LIST = """query($limit:Int!, $offset:Int!, $is_active: Boolean, $domain_name: String, $filter: String, $order: String) {
  keypair_list(
      limit:$limit, offset:$offset, is_active:$is_active, domain_name:$domain_name, filter:$filter, order:$order) {
    items { user_id projects user_info { full_name } access_key secret_key is_active is_admin created_at last_used resource_policy rate_limit concurrency_used }
    total_count
  }
}"""  # noqa: E501
CREATE_POLICY = """mutation($name: String!, $input: CreateKeyPairResourcePolicyInput!) {
    create_keypair_resource_policy(name: $name, props: $input) {
        ok msg resource_policy { name max_concurrent_sessions total_resource_slots }
    }
}"""
AUDIT = """query($limit: Int!, $offset: Int!, $prefix: String) {
    audit_log_list(limit: $limit, offset: $offset, action_prefix: $prefix) {
        items { action target_id success error_reason actor_role } total_count
    }
}"""


@dataclass
class Gateway:
    base: str
    admin: Keys
    user: Keys

    def client(self, keys: Keys | None) -> httpx.AsyncClient:
        auth = SignedAuth(keys.access_key, keys.secret_key) if keys else None
        return httpx.AsyncClient(base_url=self.base, auth=auth, timeout=30)

    async def gql(self, keys: Keys, query: str, **variables: Any) -> dict[str, Any]:
        async with self.client(keys) as c:
            r = await c.post("/admin/gql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
async def gw(db_url: str) -> AsyncIterator[Gateway]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        async with serve_gateway(running.address, token) as addr:
            yield Gateway(base=f"http://{addr}", admin=admin, user=user)


def ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert payload["ok"] is True, payload
    return payload


async def test_users_keypairs_and_deactivation(gw: Gateway) -> None:
    made = ok(await gw.gql(gw.admin, CREATE_USER, email="dan@example.com", input={
        "password": "dan-password", "role": "user", "status": "active",
        "need_password_change": False, "description": "", "domain_name": "default",
        "totp_activated": False, "sudo_session_enabled": False, "full_name": "Dan"}),
        "create_user")
    assert list(made["user"]) == ["domain_name", "email", "username", "uuid"]
    assert made["user"]["email"] == "dan@example.com" and made["user"]["username"] == "dan"

    # Duplicate: ok false with the manager's reason, nothing created twice.
    dup = await gw.gql(gw.admin, CREATE_USER, email="dan@example.com", input={
        "password": "dan-password", "domain_name": "default"})
    assert dup["data"]["create_user"]["ok"] is False
    assert dup["data"]["create_user"]["msg"].startswith("ALREADY_EXISTS")

    ok(await gw.gql(gw.admin, MODIFY_USER, email="dan@example.com",
                    input={"full_name": "Daniel"}), "modify_user")
    key = ok(await gw.gql(gw.admin, CREATE_KEYPAIR, user_id="dan@example.com", input={
        "is_active": True, "is_admin": False, "rate_limit": 777}), "create_keypair")["keypair"]
    dan = Keys(key["access_key"], key["secret_key"])
    listed = await gw.gql(gw.admin, KEYPAIR_LIST, limit=100, offset=0)
    item = next(i for i in listed["data"]["keypair_list"]["items"]
                if i["access_key"] == dan.access_key)
    assert (item["user_id"], item["rate_limit"], item["resource_policy"]) == (
        "dan@example.com", 777, "default")
    assert item["user_info"] == {"full_name": "Daniel"}

    mine = await gw.gql(dan, "query { keypair { access_key rate_limit is_active } }")
    assert mine["data"]["keypair"] == {"access_key": dan.access_key, "rate_limit": 777,
                                       "is_active": True}
    ok(await gw.gql(gw.admin, MODIFY_KEYPAIR, access_key=dan.access_key,
                    input={"is_active": False}), "modify_keypair")
    async with gw.client(dan) as c:
        r = await c.post("/admin/gql", json={"query": "query { keypair { access_key } }"})
    assert r.status_code == 401, r.text
    problem = r.json()
    assert problem["type"].endswith("/auth-failed") and problem["title"]
    assert problem["reason"] == "INACTIVE_KEYPAIR" and "inactive" in problem["msg"]
    ok(await gw.gql(gw.admin, MODIFY_KEYPAIR, access_key=dan.access_key,
                    input={"is_active": True}), "modify_keypair")
    assert "errors" not in await gw.gql(dan, "query { keypair { access_key } }")

    ok(await gw.gql(gw.admin, DELETE_USER, email="dan@example.com"), "delete_user")
    gone = await gw.gql(gw.admin, 'query { user(email: "dan@example.com") { status } }')
    assert gone["data"]["user"] == {"status": "deleted"}


async def test_domains_groups_policies_and_audit(gw: Gateway) -> None:
    ok(await gw.gql(gw.admin, CREATE_DOMAIN, name="research", input={
        "description": "R&D", "is_active": True, "total_resource_slots": '{"cpu": "32"}'}),
        "create_domain")
    domains = (await gw.gql(gw.admin, DOMAINS))["data"]["domains"]
    research = next(d for d in domains if d["name"] == "research")
    assert json.loads(research["total_resource_slots"]) == {"cpu": "32"}
    assert [d["name"] for d in (await gw.gql(gw.user, DOMAINS))["data"]["domains"]] == [
        "default"]

    group = ok(await gw.gql(gw.admin, CREATE_GROUP, name="ml", input={
        "description": "", "is_active": True, "domain_name": "research"}),
        "create_group")["group"]
    assert (group["domain_name"], group["name"]) == ("research", "ml")
    member = ok(await gw.gql(gw.admin, CREATE_USER, email="eve@research.example", input={
        "password": "eve-password", "domain_name": "research"}), "create_user")["user"]
    ok(await gw.gql(gw.admin, MODIFY_GROUP, gid=group["id"], input={
        "user_update_mode": "add", "user_uuids": [member["uuid"]]}), "modify_group")
    ok(await gw.gql(gw.admin, MODIFY_GROUP, gid=group["id"], input={
        "description": "machine learning", "total_resource_slots": '{"cpu": "8"}'}),
        "modify_group")
    detail = (await gw.gql(gw.admin, GROUP, gid=group["id"]))["data"]["group"]
    assert detail["description"] == "machine learning"
    assert json.loads(detail["total_resource_slots"]) == {"cpu": "8"}
    assert detail["members"] == [{"email": "eve@research.example", "role": "member"}]
    names = [g["name"] for g in (await gw.gql(gw.admin, GROUPS,
                                              domain_name="research"))["data"]["groups"]]
    assert names == ["ml"]
    # A plain user of another domain does not see the group at all.
    assert (await gw.gql(gw.user, GROUP, gid=group["id"]))["data"]["group"] is None
    # A user of another domain cannot join: a precise refusal, not a 500.
    wrong = await gw.gql(gw.admin, MODIFY_GROUP, gid=group["id"], input={
        "user_update_mode": "add", "user_uuids": [
            (await gw.gql(gw.user, "query { user { uuid } }"))["data"]["user"]["uuid"]]})
    assert wrong["data"]["modify_group"] == {
        "ok": False, "msg": "OTHER_DOMAIN: user user@localhost is not in domain 'research'"}

    policy = ok(await gw.gql(gw.admin, CREATE_POLICY, name="tiny", input={
        "max_concurrent_sessions": 1, "total_resource_slots": '{"cpu": "1"}'}),
        "create_keypair_resource_policy")["resource_policy"]
    assert policy == {"name": "tiny", "max_concurrent_sessions": 1,
                      "total_resource_slots": '{"cpu": "1"}'}
    listed = await gw.gql(gw.user, "query { keypair_resource_policies { name } }")
    assert sorted(p["name"] for p in listed["data"]["keypair_resource_policies"]) == [
        "default", "tiny"]

    audit = (await gw.gql(gw.admin, AUDIT, limit=50, offset=0, prefix="project"))
    entries = audit["data"]["audit_log_list"]["items"]
    assert {"action": "project.create", "target_id": "ml", "success": True,
            "error_reason": None, "actor_role": "superadmin"} in entries
    assert any(e["error_reason"] == "OTHER_DOMAIN" for e in entries)
    denied = await gw.gql(gw.user, AUDIT, limit=10, offset=0)
    assert denied["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"


async def test_bad_input_is_a_precise_error_never_a_500(gw: Gateway) -> None:
    unknown = await gw.gql(gw.admin, CREATE_USER, email="x@example.com", input={
        "password": "long-enough", "domain_name": "default", "shoe_size": 44})
    assert unknown["data"] is None
    assert "shoe_size" in unknown["errors"][0]["message"]
    wrong_type = await gw.gql(gw.admin, MODIFY_KEYPAIR, access_key=gw.user.access_key,
                              input={"rate_limit": "fast"})
    assert wrong_type["data"] is None and "rate_limit" in wrong_type["errors"][0]["message"]
    weak = await gw.gql(gw.admin, CREATE_USER, email="y@example.com", input={
        "password": "short", "domain_name": "default"})
    assert weak["data"]["create_user"]["ok"] is False
    assert weak["data"]["create_user"]["msg"].startswith("WEAK_PASSWORD")
    bad_slots = await gw.gql(gw.admin, CREATE_DOMAIN, name="z", input={
        "total_resource_slots": "{not json"})
    assert bad_slots["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT"
    # A plain user writing: a GraphQL error naming the permission problem.
    denied = await gw.gql(gw.user, CREATE_USER, email="z@example.com", input={
        "password": "long-enough", "domain_name": "default"})
    assert denied["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    # A monitor writing: PERMISSION_DENIED with the read-only reason.
    monitor = ok(await gw.gql(gw.admin, CREATE_USER, email="mon@example.com", input={
        "password": "monitor-pass", "domain_name": "default", "role": "monitor"}),
        "create_user")["user"]
    key = ok(await gw.gql(gw.admin, CREATE_KEYPAIR, user_id=monitor["email"], input={
        "is_active": True, "is_admin": False}), "create_keypair")["keypair"]
    mon = Keys(key["access_key"], key["secret_key"])
    refused = await gw.gql(mon, MODIFY_KEYPAIR, access_key=gw.user.access_key,
                           input={"is_active": False})
    assert refused["errors"][0]["extensions"] == {"code": "PERMISSION_DENIED",
                                                  "reason": "READ_ONLY_ROLE"}
    listed = await gw.gql(mon, KEYPAIR_LIST, limit=100, offset=0)
    assert listed["data"]["keypair_list"]["total_count"] >= 3


async def test_password_login_over_rest(gw: Gateway) -> None:
    ok(await gw.gql(gw.admin, CREATE_USER, email="fay@example.com", input={
        "password": "fay-password", "domain_name": "default"}), "create_user")
    async with gw.client(None) as c:
        r = await c.post("/auth/authorize", json={"type": "keypair", "domain": "default",
                                                  "username": "fay@example.com",
                                                  "password": "fay-password"})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["role"] == "user" and data["access_key"].startswith("AKIA")
        assert len(data["secret_key"]) == 40
        fay = Keys(data["access_key"], data["secret_key"])

        r = await c.post("/auth/authorize", json={"username": "fay@example.com",
                                                  "password": "nope"})
        assert r.status_code == 401
        assert r.json()["reason"] == "INVALID_CREDENTIALS"
        assert set(r.json()) >= {"type", "title", "msg"}
        r = await c.post("/auth/authorize", json={"username": "fay@example.com",
                                                  "password": "x", "otp": "123"})
        assert r.status_code == 400 and "otp" in r.json()["msg"]
        r = await c.post("/auth/authorize", json={"username": "fay@example.com",
                                                  "password": 12})
        assert r.status_code == 400 and "password" in r.json()["msg"]
        for _ in range(4):
            await c.post("/auth/authorize", json={"username": "fay@example.com",
                                                  "password": "wrong"})
        r = await c.post("/auth/authorize", json={"username": "fay@example.com",
                                                  "password": "fay-password"})
        assert r.status_code == 429 and r.json()["reason"] == "LOGIN_LOCKED"
    me = await gw.gql(fay, "query { keypair { access_key } }")
    assert me["data"]["keypair"]["access_key"] == fay.access_key


USER_LIST = """query($limit:Int!, $offset:Int!, $status: String, $group_id: UUID, $filter: String, $order: String) {
  user_list(
      limit:$limit, offset:$offset, status:$status, group_id:$group_id, filter:$filter, order:$order) {
    items { uuid username role email full_name need_password_change status status_info created_at domain_name groups { id name } allowed_client_ip sudo_session_enabled main_access_key }
    total_count
  }
}"""  # noqa: E501


async def test_user_list_filter_order_and_group(gw: Gateway) -> None:
    for name in ("bo", "al"):
        ok(await gw.gql(gw.admin, CREATE_USER, email=f"{name}@list.example", input={
            "password": "long-enough", "domain_name": "default", "full_name": name}),
            "create_user")
    body = await gw.gql(gw.admin, USER_LIST, limit=10, offset=0, status=None, group_id=None,
                        filter='email ilike "%@list.example"', order="+email")
    assert "errors" not in body, body
    page = body["data"]["user_list"]
    assert [u["email"] for u in page["items"]] == ["al@list.example", "bo@list.example"]
    assert page["total_count"] == 2
    groups = await gw.gql(gw.admin, GROUPS, domain_name="default")
    default = next(g["id"] for g in groups["data"]["groups"] if g["name"] == "default")
    members = await gw.gql(gw.admin, USER_LIST, limit=10, offset=0, group_id=default,
                           order="email")
    assert [u["email"] for u in members["data"]["user_list"]["items"]] == [
        "admin@localhost", "user@localhost"]
    bad = await gw.gql(gw.admin, USER_LIST, limit=10, offset=0, filter="email ==")
    assert bad["errors"][0]["extensions"] == {"code": "INVALID_ARGUMENT",
                                              "reason": "INVALID_FILTER"}


async def test_keypair_by_access_key(gw: Gateway) -> None:
    query = """query($ak: String, $domain: String) {
        keypair(access_key: $ak, domain_name: $domain) { access_key user_id secret_key } }"""
    seen = await gw.gql(gw.admin, query, ak=gw.user.access_key)
    assert seen["data"]["keypair"] == {"access_key": gw.user.access_key,
                                       "user_id": "user@localhost",
                                       "secret_key": gw.user.secret_key}
    other = await gw.gql(gw.admin, query, ak=gw.user.access_key, domain="elsewhere")
    assert other["data"]["keypair"] is None
    hidden = await gw.gql(gw.user, query, ak=gw.admin.access_key)
    assert hidden["data"]["keypair"] is None


async def test_tenancy_over_native_rest(gw: Gateway) -> None:
    """The same TenancyService through the gateway's REST routes (google.api.http)."""
    async with gw.client(gw.admin) as c:
        r = await c.post("/v1/users", json={"email": "ivy@rest.example",
                                            "password": "ivy-password", "fullName": "Ivy"})
        assert r.status_code == 200, r.text
        made = r.json()
        assert made["user"]["fullName"] == "Ivy" and made["keypair"]["accessKey"]
        access_key = made["keypair"]["accessKey"]
        r = await c.patch(f"/v1/keypairs/{access_key}", json={"isActive": False,
                                                              "rateLimit": 99})
        assert r.status_code == 200, r.text
        assert (r.json()["keypair"]["isActive"], r.json()["keypair"]["rateLimit"]) == (False, 99)
        r = await c.get("/v1/users/ivy@rest.example")
        assert r.status_code == 200 and r.json()["user"]["email"] == "ivy@rest.example"
        r = await c.post("/v1/users", json={"email": "jo@rest.example", "shoeSize": 44})
        assert r.status_code == 400 and "shoeSize" in r.json()["msg"], r.text
        r = await c.post("/v1/users", json={"email": "jo@rest.example", "skipKeypair": "yes"})
        assert r.status_code == 400 and set(r.json()) >= {"type", "title", "msg"}, r.text
        r = await c.get("/v1/audit-logs")
        assert r.status_code == 200 and r.json()["totalCount"] >= 2
    async with gw.client(gw.user) as c:
        r = await c.delete("/v1/users/ivy@rest.example")
        assert r.status_code == 404, r.text  # not visible to a plain user
        r = await c.post("/v1/domains", json={"name": "mine"})
        assert r.status_code == 403 and r.json()["reason"] == "PERMISSION_DENIED", r.text
    ivy = Keys(access_key, made["keypair"]["secretKey"])
    async with gw.client(ivy) as c:
        r = await c.get("/v1/users/ivy@rest.example")
    assert r.status_code == 401 and r.json()["reason"] == "INACTIVE_KEYPAIR", r.text
