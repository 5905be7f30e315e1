"""User and project resource policies and ``purge_user`` over GraphQL, through the real gateway
to a real manager, on SQLite and PostgreSQL.

The mutation and query texts are the official client's (``ai.backend.client.func.
user_resource_policy`` and ``func.user.purge``, 26.9.6). Sessions and folders that a purge must
refuse or hand over are written straight into the manager's database (no agent or storage proxy
is needed to own them), then the purge runs through GraphQL.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import (
    KernelRow,
    KeypairRow,
    SessionRow,
    StatusHistoryRow,
    UserRow,
    VFolderRow,
    VFolderShareRow,
)
from bai.manager.domain.model import utcnow
from bai.manager.server import run_manager
from cluster import SignedAuth
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db
from sqlalchemy import func, select, update

CREATE_USER_POLICY = """mutation($name: String!, $input: CreateUserResourcePolicyInput!) {
    create_user_resource_policy(name: $name, props: $input) {
            ok
            msg
        }
}"""
MODIFY_USER_POLICY = """mutation($name: String!, $input: ModifyUserResourcePolicyInput!) {
    modify_user_resource_policy(name: $name, props: $input) {
        ok
    }
}"""
DELETE_USER_POLICY = """mutation($name: String!) {
    delete_user_resource_policy(name: $name) {
        ok
        msg
    }
}"""
USER_POLICY_FIELDS = ("name max_vfolder_count max_quota_scope_size "
                      "max_session_count_per_model_session max_customized_image_count")
USER_POLICIES = f"query {{ user_resource_policies {{ {USER_POLICY_FIELDS} }} }}"
USER_POLICY = f"query($name: String!) {{ user_resource_policy(name: $name) {{ {USER_POLICY_FIELDS} }} }}"  # noqa: E501
CREATE_PROJECT_POLICY = """mutation($name: String!, $input: CreateProjectResourcePolicyInput!) {
    create_project_resource_policy(name: $name, props: $input) {
        ok msg resource_policy { id name max_vfolder_count max_quota_scope_size max_vfolder_size
                                 max_network_count created_at }
    }
}"""
MODIFY_PROJECT_POLICY = """mutation($name: String!, $input: ModifyProjectResourcePolicyInput!) {
    modify_project_resource_policy(name: $name, props: $input) { ok msg }
}"""
DELETE_PROJECT_POLICY = """mutation($name: String!) {
    delete_project_resource_policy(name: $name) { ok msg }
}"""
PROJECT_POLICY = """query($name: String!) { project_resource_policy(name: $name) {
    name max_vfolder_count max_quota_scope_size max_network_count } }"""
CREATE_USER = """mutation($email: String!, $input: UserInput!) {
    create_user(email: $email, props: $input) { ok msg user { uuid email } }
}"""
MODIFY_USER = """mutation($email: String!, $input: ModifyUserInput!) {
    modify_user(email: $email, props: $input) { ok msg }
}"""
CREATE_KEYPAIR = """mutation($user_id: String!, $input: KeyPairInput!) {
    create_keypair(user_id: $user_id, props: $input) { ok msg keypair { access_key secret_key } }
}"""
CREATE_GROUP = """mutation($name: String!, $input: GroupInput!) {
    create_group(name: $name, props: $input) { ok msg group { id } }
}"""
PURGE_GROUP = """mutation($gid: UUID!) { purge_group(gid: $gid) { ok msg } }"""
CREATE_DOMAIN = """mutation($name: String!, $input: DomainInput!) {
    create_domain(name: $name, props: $input) { ok msg }
}"""
PURGE_USER = """mutation($email: String!, $input: PurgeUserInput!) {
    purge_user(email: $email, props: $input) {
        ok msg
    }
}"""
AUDIT = """query($prefix: String) { audit_log_list(limit: 50, offset: 0, action_prefix: $prefix) {
    items { action target_id success error_reason } } }"""
GIB = 1 << 30


@dataclass
class Stack:
    base: str
    admin: Keys
    user: Keys
    db: Database

    async def gql(self, keys: Keys, query: str, **variables: Any) -> dict[str, Any]:
        auth = SignedAuth(keys.access_key, keys.secret_key)
        async with httpx.AsyncClient(base_url=self.base, auth=auth, timeout=30) as c:
            r = await c.post("/admin/gql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def new_user(self, email: str, domain: str = "default", role: str = "user") -> tuple[
            uuid.UUID, Keys]:
        made = ok(await self.gql(self.admin, CREATE_USER, email=email, input={
            "password": "long-enough", "domain_name": domain, "role": role}), "create_user")
        key = ok(await self.gql(self.admin, CREATE_KEYPAIR, user_id=email, input={
            "is_active": True, "is_admin": role != "user"}), "create_keypair")["keypair"]
        return uuid.UUID(made["user"]["uuid"]), Keys(key["access_key"], key["secret_key"])


@pytest.fixture
async def stack(db_url: str) -> AsyncIterator[Stack]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        async with serve_gateway(running.address, token) as addr:
            yield Stack(base=f"http://{addr}", admin=admin, user=user, db=running.db)


def ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert payload["ok"] is True, payload
    return payload


def refused(body: dict[str, Any], field: str, reason: str) -> str:
    """The payload's ``ok: false`` message, which must start with the manager's reason."""
    assert "errors" not in body, body
    payload = body["data"][field]
    assert payload["ok"] is False and payload["msg"].startswith(reason + ":"), payload
    msg: str = payload["msg"]
    return msg


def denied(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None or all(v is None for v in body["data"].values()), body
    extensions: dict[str, Any] = body["errors"][0]["extensions"]
    return extensions


async def test_user_resource_policies(stack: Stack) -> None:
    ok(await stack.gql(stack.admin, CREATE_USER_POLICY, name="gold", input={
        "max_vfolder_count": 7, "max_quota_scope_size": 10 * GIB,
        "max_session_count_per_model_session": 4, "max_customized_image_count": 2}),
        "create_user_resource_policy")
    gold = {"name": "gold", "max_vfolder_count": 7, "max_quota_scope_size": 10 * GIB,
            "max_session_count_per_model_session": 4, "max_customized_image_count": 2}
    listed = (await stack.gql(stack.admin, USER_POLICIES))["data"]["user_resource_policies"]
    assert [p["name"] for p in listed] == ["default", "gold"] and listed[1] == gold

    ok(await stack.gql(stack.admin, MODIFY_USER_POLICY, name="gold",
                       input={"max_vfolder_count": 20}), "modify_user_resource_policy")
    seen = (await stack.gql(stack.admin, USER_POLICY, name="gold"))["data"]
    assert seen["user_resource_policy"] == gold | {"max_vfolder_count": 20}
    # Omitted limits take the defaults; the caller's own policy when no name is given.
    ok(await stack.gql(stack.admin, CREATE_USER_POLICY, name="plain", input={}),
       "create_user_resource_policy")
    plain = (await stack.gql(stack.admin, USER_POLICY, name="plain"))["data"]
    assert plain["user_resource_policy"] == {
        "name": "plain", "max_vfolder_count": 0, "max_quota_scope_size": -1,
        "max_session_count_per_model_session": 10, "max_customized_image_count": 3}
    own = await stack.gql(stack.user, "query { user_resource_policy { name } }")
    assert own["data"]["user_resource_policy"] == {"name": "default"}
    assert (await stack.gql(stack.admin, USER_POLICY, name="nope"))["data"] == {
        "user_resource_policy": None}

    # Bad input: precise refusals, nothing created or changed.
    refused(await stack.gql(stack.admin, CREATE_USER_POLICY, name="gold", input={}),
            "create_user_resource_policy", "ALREADY_EXISTS")
    refused(await stack.gql(stack.admin, CREATE_USER_POLICY, name="neg", input={
        "max_vfolder_count": -2}), "create_user_resource_policy", "INVALID_LIMIT")
    refused(await stack.gql(stack.admin, CREATE_USER_POLICY, name="bad name!", input={}),
            "create_user_resource_policy", "INVALID_NAME")
    bad_type = await stack.gql(stack.admin, CREATE_USER_POLICY, name="x", input={
        "max_vfolder_count": "many"})
    assert bad_type["data"] is None and "max_vfolder_count" in bad_type["errors"][0]["message"]
    unknown = await stack.gql(stack.admin, MODIFY_USER_POLICY, name="x", input={"shoe": 1})
    assert unknown["data"] is None and "shoe" in unknown["errors"][0]["message"]
    msg = refused(await stack.gql(stack.admin, DELETE_USER_POLICY, name="ghost"),
                  "delete_user_resource_policy", "RESOURCE_POLICY_NOT_FOUND")
    assert "'ghost'" in msg
    modify_ghost = await stack.gql(stack.admin, MODIFY_USER_POLICY, name="ghost",
                                   input={"max_vfolder_count": 1})
    assert modify_ghost["data"]["modify_user_resource_policy"] == {"ok": False}
    listed = (await stack.gql(stack.admin, USER_POLICIES))["data"]["user_resource_policies"]
    assert [p["name"] for p in listed] == ["default", "gold", "plain"]

    # Still referenced by a user: refused until the user moves off it.
    ok(await stack.gql(stack.admin, MODIFY_USER, email="user@localhost",
                       input={"resource_policy": "gold"}), "modify_user")
    msg = refused(await stack.gql(stack.admin, DELETE_USER_POLICY, name="gold"),
                  "delete_user_resource_policy", "RESOURCE_POLICY_IN_USE")
    assert "used by 1 user" in msg
    own = await stack.gql(stack.user, "query { user_resource_policy { name } }")
    assert own["data"]["user_resource_policy"] == {"name": "gold"}
    ok(await stack.gql(stack.admin, MODIFY_USER, email="user@localhost",
                       input={"resource_policy": "default"}), "modify_user")
    ok(await stack.gql(stack.admin, DELETE_USER_POLICY, name="gold"),
       "delete_user_resource_policy")
    assert (await stack.gql(stack.admin, USER_POLICY, name="gold"))["data"] == {
        "user_resource_policy": None}

    # RBAC: only superadmins change policies; everyone reads them.
    _, dom_admin = await stack.new_user("da@example.com", role="admin")
    _, monitor = await stack.new_user("mo@example.com", role="monitor")
    for keys, reason in ((stack.user, "PERMISSION_DENIED"), (dom_admin, "PERMISSION_DENIED"),
                         (monitor, "READ_ONLY_ROLE")):
        body = await stack.gql(keys, CREATE_USER_POLICY, name="mine", input={})
        assert denied(body) == {"code": "PERMISSION_DENIED", "reason": reason}
        body = await stack.gql(keys, DELETE_USER_POLICY, name="plain")
        assert denied(body)["code"] == "PERMISSION_DENIED"
        readable = await stack.gql(keys, USER_POLICIES)
        assert len(readable["data"]["user_resource_policies"]) == 2, readable
    audit = (await stack.gql(stack.admin, AUDIT, prefix="resource_policy."))["data"]
    outcomes = {(e["action"], e["success"], e["error_reason"])
                for e in audit["audit_log_list"]["items"]}
    assert {("resource_policy.create", True, None),
            ("resource_policy.delete", False, "RESOURCE_POLICY_IN_USE"),
            ("resource_policy.create", False, "PERMISSION_DENIED")} <= outcomes


async def test_project_resource_policies(stack: Stack) -> None:
    made = ok(await stack.gql(stack.admin, CREATE_PROJECT_POLICY, name="lab", input={
        "max_vfolder_count": 5, "max_vfolder_size": 3 * GIB, "max_network_count": 2}),
        "create_project_resource_policy")["resource_policy"]
    assert made.pop("created_at")
    # The deprecated max_vfolder_size is the quota scope size.
    assert made == {"id": "lab", "name": "lab", "max_vfolder_count": 5,
                    "max_quota_scope_size": 3 * GIB, "max_vfolder_size": 3 * GIB,
                    "max_network_count": 2}
    ok(await stack.gql(stack.admin, MODIFY_PROJECT_POLICY, name="lab",
                       input={"max_network_count": 9, "max_quota_scope_size": -1}),
       "modify_project_resource_policy")
    seen = (await stack.gql(stack.user, PROJECT_POLICY, name="lab"))["data"]
    assert seen["project_resource_policy"] == {"name": "lab", "max_vfolder_count": 5,
                                               "max_quota_scope_size": -1,
                                               "max_network_count": 9}
    listed = await stack.gql(stack.admin, "query { project_resource_policies { name } }")
    assert listed["data"]["project_resource_policies"] == [{"name": "default"}, {"name": "lab"}]

    refused(await stack.gql(stack.admin, MODIFY_PROJECT_POLICY, name="ghost",
                            input={"max_network_count": 1}),
            "modify_project_resource_policy", "RESOURCE_POLICY_NOT_FOUND")
    refused(await stack.gql(stack.admin, MODIFY_PROJECT_POLICY, name="lab",
                            input={"max_quota_scope_size": -5}),
            "modify_project_resource_policy", "INVALID_LIMIT")
    group = ok(await stack.gql(stack.admin, CREATE_GROUP, name="team", input={
        "domain_name": "default", "resource_policy": "lab"}), "create_group")["group"]
    msg = refused(await stack.gql(stack.admin, DELETE_PROJECT_POLICY, name="lab"),
                  "delete_project_resource_policy", "RESOURCE_POLICY_IN_USE")
    assert "used by 1 project" in msg
    _, dom_admin = await stack.new_user("pa@example.com", role="admin")
    body = await stack.gql(dom_admin, MODIFY_PROJECT_POLICY, name="lab",
                           input={"max_network_count": 1})
    assert denied(body) == {"code": "PERMISSION_DENIED", "reason": "PERMISSION_DENIED"}
    ok(await stack.gql(stack.admin, PURGE_GROUP, gid=group["id"]), "purge_group")
    ok(await stack.gql(stack.admin, DELETE_PROJECT_POLICY, name="lab"),
       "delete_project_resource_policy")
    gone = await stack.gql(stack.admin, PROJECT_POLICY, name="lab")
    assert gone["data"] == {"project_resource_policy": None}


async def _session(db: Database, access_key: str, state: str) -> uuid.UUID:
    """A session row of ``access_key`` (with one kernel and its status history)."""
    session_id, now = uuid.uuid4(), utcnow()
    async with db.write() as s:
        s.add(SessionRow(id=session_id, name=f"s-{session_id.hex[:8]}", live_name=None,
                         access_key=access_key, domain_name="default", project_name="default",
                         session_type="interactive", spec={"image": "python:3.11"},
                         state=state, reason="", message="", state_changed_at=now,
                         created_at=now, terminated_at=None, exit_code=None, request_id=None))
        await s.flush()
        s.add(KernelRow(id=uuid.uuid4(), session_id=session_id, agent_id=None,
                        container_id=None, state=state, occupied_slots={}, created_at=now))
        s.add(StatusHistoryRow(session_id=session_id, state=state, reason="", message="",
                               at=now))
    return session_id


async def _folder(db: Database, owner: uuid.UUID, name: str, status: str = "ready",
                  shared_with: uuid.UUID | None = None) -> uuid.UUID:
    folder_id, now = uuid.uuid4(), utcnow()
    async with db.write() as s:
        s.add(VFolderRow(id=folder_id, name=name,
                         live_name=name if status == "ready" else None, volume="local",
                         owner_user_id=owner, owner_project_id=None, permission="rw",
                         usage_mode="general", status=status, created_at=now, deleted_at=None,
                         creator_user_id=owner))
        await s.flush()
        if shared_with is not None:
            s.add(VFolderShareRow(vfolder_id=folder_id, user_id=shared_with, permission="ro",
                                  created_at=now))
    return folder_id


async def _count(db: Database, query: Any) -> int:
    async with db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(query.subquery())) or 0)


async def test_purge_user(stack: Stack) -> None:
    pam_id, pam = await stack.new_user("pam@example.com")
    da_id, dom_admin = await stack.new_user("da@example.com", role="admin")
    ok(await stack.gql(stack.admin, CREATE_DOMAIN, name="far", input={}), "create_domain")
    await stack.new_user("oli@far.example", domain="far")
    user_id = uuid.UUID((await stack.gql(stack.user, "query { user { uuid } }"))[
        "data"]["user"]["uuid"])
    finished = await _session(stack.db, pam.access_key, "TERMINATED")
    live = await _session(stack.db, pam.access_key, "PENDING")
    purge = {"purge_shared_vfolders": False, "delegate_endpoint_ownership": False}

    # Live sessions: refused, nothing changed.
    msg = refused(await stack.gql(dom_admin, PURGE_USER, email="pam@example.com", input=purge),
                  "purge_user", "USER_HAS_LIVE_SESSIONS")
    assert "1 live session" in msg
    async with stack.db.write() as s:
        await s.execute(update(SessionRow).where(SessionRow.id == live)
                        .values(state="CANCELLED"))
    # Folders still holding contents: refused unless shared (those pass to the purger).
    shared = await _folder(stack.db, pam_id, "data", shared_with=user_id)
    notes = await _folder(stack.db, pam_id, "notes")
    await _folder(stack.db, pam_id, "old", status="delete-complete")
    msg = refused(await stack.gql(dom_admin, PURGE_USER, email="pam@example.com", input=purge),
                  "purge_user", "USER_HAS_VFOLDERS")
    assert "(notes)" in msg and "data" not in msg
    async with stack.db.write() as s:
        await s.execute(update(VFolderRow).where(VFolderRow.id == notes)
                        .values(status="delete-complete", live_name=None))
    msg = refused(await stack.gql(dom_admin, PURGE_USER, email="pam@example.com",
                                  input=purge | {"purge_shared_vfolders": True}),
                  "purge_user", "USER_HAS_VFOLDERS")
    assert "(data)" in msg

    # Who may purge whom.
    refused(await stack.gql(dom_admin, PURGE_USER, email="oli@far.example", input=purge),
            "purge_user", "USER_NOT_FOUND")  # another domain's user is invisible
    refused(await stack.gql(stack.user, PURGE_USER, email="pam@example.com", input=purge),
            "purge_user", "USER_NOT_FOUND")
    body = await stack.gql(dom_admin, PURGE_USER, email="admin@localhost", input=purge)
    assert denied(body) == {"code": "PERMISSION_DENIED", "reason": "PERMISSION_DENIED"}
    refused(await stack.gql(dom_admin, PURGE_USER, email="da@example.com", input=purge),
            "purge_user", "SELF_DELETE")
    refused(await stack.gql(stack.admin, PURGE_USER, email="nobody@example.com", input=purge),
            "purge_user", "USER_NOT_FOUND")
    assert await _count(stack.db, select(UserRow).where(UserRow.id == pam_id)) == 1

    # The purger already owns a folder named like the one that would pass to it.
    own = await _folder(stack.db, da_id, "data")
    msg = refused(await stack.gql(dom_admin, PURGE_USER, email="pam@example.com", input=purge),
                  "purge_user", "VFOLDER_NAME_TAKEN")
    assert "named data" in msg
    async with stack.db.write() as s:
        await s.execute(update(VFolderRow).where(VFolderRow.id == own)
                        .values(status="delete-complete", live_name=None))
    assert await _count(stack.db, select(UserRow).where(UserRow.id == pam_id)) == 1

    ok(await stack.gql(dom_admin, PURGE_USER, email="pam@example.com", input=purge),
       "purge_user")
    assert (await stack.gql(stack.admin, 'query { user(email: "pam@example.com") { email } }')
            )["data"] == {"user": None}
    assert await _count(stack.db, select(UserRow).where(UserRow.id == pam_id)) == 0
    assert await _count(stack.db, select(KeypairRow).where(KeypairRow.user_id == pam_id)) == 0
    assert await _count(stack.db, select(SessionRow).where(
        SessionRow.id.in_([finished, live]))) == 0
    assert await _count(stack.db, select(KernelRow).where(
        KernelRow.session_id.in_([finished, live]))) == 0
    async with stack.db.read() as s:
        folders = list(await s.scalars(select(VFolderRow)))
        shares = list(await s.scalars(select(VFolderShareRow)))
    assert [f.owner_user_id for f in folders] == [da_id, da_id]  # its own, purged
    passed = next(f for f in folders if f.id == shared)
    assert passed.name == "data" and passed.live_name == "data"
    assert [(x.vfolder_id, x.user_id) for x in shares] == [(shared, user_id)]
    # Its keys are gone: the purged user can no longer sign.
    async with httpx.AsyncClient(base_url=stack.base, timeout=30,
                                 auth=SignedAuth(pam.access_key, pam.secret_key)) as c:
        r = await c.post("/admin/gql", json={"query": "query { user { email } }"})
    assert r.status_code == 401, r.text
    # The e-mail is free again.
    await stack.new_user("pam@example.com")
    audit = (await stack.gql(stack.admin, AUDIT, prefix="user.purge"))["data"]
    outcomes = [(e["target_id"], e["success"], e["error_reason"])
                for e in audit["audit_log_list"]["items"]]
    assert ("pam@example.com", True, None) in outcomes
    assert ("pam@example.com", False, "USER_HAS_LIVE_SESSIONS") in outcomes


async def test_purge_user_over_native_rest(stack: Stack) -> None:
    """The same PurgeUser through the gateway's REST route (google.api.http)."""
    _, rex = await stack.new_user("rex@example.com")
    await _session(stack.db, rex.access_key, "RUNNING")
    auth = SignedAuth(stack.admin.access_key, stack.admin.secret_key)
    async with httpx.AsyncClient(base_url=stack.base, auth=auth, timeout=30) as c:
        r = await c.post("/v1/users/rex@example.com:purge", json={})
        assert r.status_code == 409, r.text
        assert r.json()["reason"] == "USER_HAS_LIVE_SESSIONS" and "1 live session" in (
            r.json()["msg"])
        async with stack.db.write() as s:
            await s.execute(update(SessionRow).where(SessionRow.access_key == rex.access_key)
                            .values(state="TERMINATED"))
        r = await c.post("/v1/users/rex@example.com:purge", json={"purgeSharedVfolders": True})
        assert r.status_code == 200, r.text
        # create_user's first keypair and new_user's second one.
        assert r.json() == {"deletedKeypairCount": 2, "deletedSessionCount": 1,
                            "transferredVfolderIds": []}
        r = await c.post("/v1/users/rex@example.com:purge", json={})
        assert r.status_code == 404 and r.json()["reason"] == "USER_NOT_FOUND", r.text


async def test_users_and_user_from_uuid(stack: Stack) -> None:
    """Backend.AI's unpaged ``users`` and ``user_from_uuid`` (the client's User.list and
    User.detail_by_uuid)."""
    ok(await stack.gql(stack.admin, CREATE_DOMAIN, name="far", input={}), "create_domain")
    far_id, _ = await stack.new_user("ula@far.example", domain="far")
    ok(await stack.gql(stack.admin, MODIFY_USER, email="ula@far.example",
                       input={"is_active": False}), "modify_user")
    users = """query($domain: String, $active: Boolean, $status: String) {
        users(domain_name: $domain, is_active: $active, status: $status) { email status } }"""
    every = (await stack.gql(stack.admin, users))["data"]["users"]
    assert [u["email"] for u in every] == ["admin@localhost", "user@localhost",
                                           "ula@far.example"]
    far = await stack.gql(stack.admin, users, domain="far")
    assert far["data"]["users"] == [{"email": "ula@far.example", "status": "inactive"}]
    active = await stack.gql(stack.admin, users, active=True)
    assert [u["email"] for u in active["data"]["users"]] == ["admin@localhost",
                                                            "user@localhost"]
    inactive = await stack.gql(stack.admin, users, status="inactive")
    assert [u["email"] for u in inactive["data"]["users"]] == ["ula@far.example"]
    # A plain user sees itself only.
    own = await stack.gql(stack.user, users)
    assert own["data"]["users"] == [{"email": "user@localhost", "status": "active"}]

    by_id = """query($id: ID) { user_from_uuid(user_id: $id) { email domain_name } }"""
    found = await stack.gql(stack.admin, by_id, id=str(far_id))
    assert found["data"]["user_from_uuid"] == {"email": "ula@far.example", "domain_name": "far"}
    me = await stack.gql(stack.user, by_id)
    assert me["data"]["user_from_uuid"]["email"] == "user@localhost"
    hidden = await stack.gql(stack.user, by_id, id=str(far_id))
    assert hidden["data"]["user_from_uuid"] is None
    bad = await stack.gql(stack.admin, by_id, id="not-a-uuid")
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT"
