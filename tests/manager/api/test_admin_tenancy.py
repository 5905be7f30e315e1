"""TenancyService and AuthService over a real gRPC server and a real database (both backends).

Domains, projects and members, users, keypairs (activate/deactivate: a deactivated key is
refused at once), resource policies, the audit trail of all of it, and password login with its
lockout.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from bai.common.rpc import SERVICE_TOKEN_KEY, error_from_rpc
from bai.pb.manager.v1 import admin_service_pb2 as apb
from bai.pb.manager.v1 import admin_service_pb2_grpc as apb_grpc
from bai.pb.manager.v1 import auth_service_pb2 as auth_pb
from bai.pb.manager.v1 import auth_service_pb2_grpc as auth_grpc
from bai.pb.manager.v1 import tenancy_service_pb2 as pb
from bai.pb.manager.v1 import tenancy_service_pb2_grpc as pb_grpc
from manager_harness import Harness, Keys

KEYPAIR_KIND = pb.RESOURCE_POLICY_KIND_KEYPAIR


def tenancy(h: Harness, keys: Keys) -> Any:
    return pb_grpc.TenancyServiceStub(h._channel(keys))


async def failure(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), error_from_rpc(caught.value).reason


async def login(h: Harness, username: str, password: str, token: str | None = None) -> Any:
    stub = auth_grpc.AuthServiceStub(h._channel(None))
    return await stub.Authorize(auth_pb.AuthorizeRequest(username=username, password=password),
                                metadata=((SERVICE_TOKEN_KEY, token or h.token),), timeout=10)


async def test_domains_projects_users_keypairs_and_their_audit_trail(manager: Harness) -> None:
    root = tenancy(manager, manager.admin)
    domain = (await root.CreateDomain(pb.CreateDomainRequest(
        name="lab", description="research", is_active=True,
        total_resource_slots={"cpu": "64"}))).domain
    assert (domain.name, dict(domain.total_resource_slots)) == ("lab", {"cpu": "64"})
    assert await failure(root.CreateDomain(pb.CreateDomainRequest(name="lab"))) == (
        grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert await failure(root.CreateDomain(pb.CreateDomainRequest(name="no spaces"))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")

    project = (await root.CreateProject(pb.CreateProjectRequest(
        name="vision", domain="lab", is_active=True))).project
    assert project.resource_policy == "default"
    created = await root.CreateUser(pb.CreateUserRequest(
        email="Ann@Lab.example", password="correct horse", role="admin", domain="lab",
        full_name="Ann", project_ids=[project.id]))
    ann = created.user
    assert (ann.email, ann.role, ann.domain, ann.full_name, ann.has_password) == (
        "ann@lab.example", "admin", "lab", "Ann", True)
    assert [p.name for p in ann.projects] == ["vision"]
    assert created.keypair.access_key.startswith("AKIA") and len(created.keypair.secret_key) == 40
    assert created.keypair.rate_limit == 30000 and created.keypair.resource_policy == "default"
    ann_keys = Keys(created.keypair.access_key, created.keypair.secret_key)

    # A duplicate e-mail leaves nothing half-created (no second keypair either).
    before = (await root.ListAuditLogs(pb.ListAuditLogsRequest())).total_count
    assert await failure(root.CreateUser(pb.CreateUserRequest(
        email="ann@lab.example", domain="lab"))) == (grpc.StatusCode.ALREADY_EXISTS,
                                                      "ALREADY_EXISTS")
    keys = await apb_grpc.AdminServiceStub(manager._channel(manager.admin)).ListKeypairs(
        apb.ListKeypairsRequest(domain="lab"))
    assert [k.access_key for k in keys.keypairs] == [ann_keys.access_key]

    # The domain admin manages its domain, but cannot mint superadmins or touch other domains.
    lab_admin = tenancy(manager, ann_keys)
    bob = (await lab_admin.CreateUser(pb.CreateUserRequest(
        email="bob@lab.example", password="bob-password", skip_keypair=True))).user
    assert (bob.domain, bob.role, bob.main_access_key) == ("lab", "user", "")
    assert await failure(lab_admin.CreateUser(pb.CreateUserRequest(
        email="eve@lab.example", role="superadmin"))) == (grpc.StatusCode.PERMISSION_DENIED,
                                                           "PERMISSION_DENIED")
    assert await failure(lab_admin.CreateUser(pb.CreateUserRequest(
        email="eve@default.example", domain="default"))) == (
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert await failure(lab_admin.CreateDomain(pb.CreateDomainRequest(name="mine"))) == (
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert await failure(lab_admin.GetUser(pb.GetUserRequest(ref="admin@localhost"))) == (
        grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")

    # Keypairs: several per user, deactivation is refused at the very next call.
    second = (await lab_admin.CreateKeypair(pb.CreateKeypairRequest(
        user_ref="bob@lab.example", is_active=True, rate_limit=500))).keypair
    assert (second.rate_limit, second.user_email) == (500, "bob@lab.example")
    bob_keys = Keys(second.access_key, second.secret_key)
    own = await apb_grpc.AdminServiceStub(manager._channel(bob_keys)).GetKeypair(
        apb.GetKeypairRequest())
    assert (own.keypair.rate_limit, own.keypair.resource_policy) == (500, "default")
    changed = (await lab_admin.UpdateKeypair(pb.UpdateKeypairRequest(
        access_key=bob_keys.access_key, is_active=False))).keypair
    assert not changed.is_active and changed.rate_limit == 500
    assert await failure(apb_grpc.AdminServiceStub(manager._channel(bob_keys)).GetKeypair(
        apb.GetKeypairRequest())) == (grpc.StatusCode.UNAUTHENTICATED, "INACTIVE_KEYPAIR")
    await lab_admin.UpdateKeypair(pb.UpdateKeypairRequest(access_key=bob_keys.access_key,
                                                          is_active=True))
    await apb_grpc.AdminServiceStub(manager._channel(bob_keys)).GetKeypair(
        apb.GetKeypairRequest())
    assert await failure(lab_admin.UpdateKeypair(pb.UpdateKeypairRequest(
        access_key=bob_keys.access_key, rate_limit=0))) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                            "INVALID_RATE_LIMIT")

    # Membership: Bob becomes admin of the project; the project lists him with that role.
    after = (await lab_admin.AddProjectMembers(pb.AddProjectMembersRequest(
        project_id=project.id, user_ids=[bob.id], role="admin"))).project
    assert sorted((m.email, m.role) for m in after.members) == [
        ("ann@lab.example", "member"), ("bob@lab.example", "admin")]
    assert await failure(lab_admin.AddProjectMembers(pb.AddProjectMembersRequest(
        project_id=project.id, user_ids=[ann.id], role="owner"))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ROLE")

    # Users: modify, then delete (marked deleted, keys deactivated).
    bob = (await lab_admin.UpdateUser(pb.UpdateUserRequest(
        ref=bob.id, full_name="Robert", status="active"))).user
    assert bob.full_name == "Robert"
    await lab_admin.DeleteUser(pb.DeleteUserRequest(ref="bob@lab.example"))
    gone = (await root.GetUser(pb.GetUserRequest(ref="bob@lab.example"))).user
    assert gone.status == "deleted" and gone.main_access_key == ""
    assert await failure(lab_admin.DeleteUser(pb.DeleteUserRequest(ref=ann.id))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "SELF_DELETE")

    # Domains: listing by role; a domain with users cannot be deleted.
    listed = await lab_admin.ListDomains(pb.ListDomainsRequest())
    assert [d.name for d in listed.domains] == ["lab"]
    assert [d.name for d in (await root.ListDomains(pb.ListDomainsRequest())).domains] == [
        "default", "lab"]
    assert await failure(root.DeleteDomain(pb.DeleteDomainRequest(name="lab"))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "DOMAIN_NOT_EMPTY")

    # The audit log holds every change, denied ones included, newest first.
    log = await root.ListAuditLogs(pb.ListAuditLogsRequest(page=apb.PageRequest(limit=100)))
    assert log.total_count > before
    actions = [(e.action, e.target_id, e.success, e.error_reason) for e in log.entries]
    assert ("user.create", "ann@lab.example", False, "ALREADY_EXISTS") in actions
    assert ("user.create", "eve@lab.example", False, "PERMISSION_DENIED") in actions
    assert ("keypair.update", bob_keys.access_key, True, "") in actions
    assert ("user.delete", "bob@lab.example", True, "") in actions
    created_entry = next(e for e in log.entries
                         if e.action == "user.create" and e.target_id == "Ann@Lab.example")
    assert created_entry.actor_access_key == manager.admin.access_key
    assert ann_keys.access_key in created_entry.detail_json
    assert ann_keys.secret_key not in created_entry.detail_json
    # The domain admin sees its domain's actors only; a plain user sees nothing.
    mine = await lab_admin.ListAuditLogs(pb.ListAuditLogsRequest(action_prefix="keypair."))
    assert {e.actor_access_key for e in mine.entries} == {ann_keys.access_key}
    assert await failure(tenancy(manager, manager.user).ListAuditLogs(
        pb.ListAuditLogsRequest())) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_resource_policies_crud(manager: Harness) -> None:
    root = tenancy(manager, manager.admin)
    made = (await root.CreateResourcePolicy(pb.CreateResourcePolicyRequest(
        resource_policy=pb.ResourcePolicy(
            kind=KEYPAIR_KIND, name="small", limits={"max_concurrent_sessions": 2,
                                                     "max_session_lifetime": 3600},
            total_resource_slots={"cpu": "4", "mem": "8g"})))).resource_policy
    assert dict(made.limits) == {"max_concurrent_sessions": 2, "max_session_lifetime": 3600,
                                 "max_concurrent_sftp_sessions": 1,
                                 "max_containers_per_session": 1, "idle_timeout": 0}
    assert dict(made.total_resource_slots) == {"cpu": "4", "mem": "8589934592"}
    assert made.default_for_unspecified == "UNLIMITED"
    assert await failure(root.CreateResourcePolicy(pb.CreateResourcePolicyRequest(
        resource_policy=pb.ResourcePolicy(kind=KEYPAIR_KIND, name="bad",
                                          limits={"max_vfolder_count": 1})))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_LIMIT")
    assert await failure(root.CreateResourcePolicy(pb.CreateResourcePolicyRequest(
        resource_policy=pb.ResourcePolicy(name="nokind")))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_POLICY_KIND")
    denied = await failure(tenancy(manager, manager.user).CreateResourcePolicy(
        pb.CreateResourcePolicyRequest(resource_policy=pb.ResourcePolicy(
            kind=KEYPAIR_KIND, name="mine"))))
    assert denied == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")

    changed = (await root.UpdateResourcePolicy(pb.UpdateResourcePolicyRequest(
        kind=KEYPAIR_KIND, name="small", limits={"max_concurrent_sessions": 3},
        default_for_unspecified="limited"))).resource_policy
    assert changed.limits["max_concurrent_sessions"] == 3
    assert changed.limits["max_session_lifetime"] == 3600
    assert changed.default_for_unspecified == "LIMITED"

    user_key = manager.user.access_key
    await root.UpdateKeypair(pb.UpdateKeypairRequest(access_key=user_key,
                                                     resource_policy="small"))
    assert await failure(root.DeleteResourcePolicy(pb.DeleteResourcePolicyRequest(
        kind=KEYPAIR_KIND, name="small"))) == (grpc.StatusCode.FAILED_PRECONDITION,
                                               "RESOURCE_POLICY_IN_USE")
    assert await failure(root.UpdateKeypair(pb.UpdateKeypairRequest(
        access_key=user_key, resource_policy="nope"))) == (grpc.StatusCode.NOT_FOUND,
                                                           "REFERENCE_NOT_FOUND")
    await root.UpdateKeypair(pb.UpdateKeypairRequest(access_key=user_key,
                                                     resource_policy="default"))
    await root.DeleteResourcePolicy(pb.DeleteResourcePolicyRequest(kind=KEYPAIR_KIND,
                                                                   name="small"))
    names = [p.name for p in (await tenancy(manager, manager.user).ListResourcePolicies(
        pb.ListResourcePoliciesRequest(kind=KEYPAIR_KIND))).resource_policies]
    assert names == ["default"]
    user_policies = await root.ListResourcePolicies(pb.ListResourcePoliciesRequest(
        kind=pb.RESOURCE_POLICY_KIND_PROJECT))
    assert [(p.name, p.limits["max_network_count"]) for p in
            user_policies.resource_policies] == [("default", 3)]


async def test_password_login_and_lockout(manager: Harness) -> None:
    root = tenancy(manager, manager.admin)
    created = await root.CreateUser(pb.CreateUserRequest(email="carol@localhost",
                                                         password="s3cret-pass"))
    reply = await login(manager, "Carol@localhost", "s3cret-pass")
    assert reply.keypair.access_key == created.keypair.access_key
    assert reply.keypair.secret_key == created.keypair.secret_key
    assert (reply.user.email, reply.user.role) == ("carol@localhost", "user")

    bad = (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    assert await failure(login(manager, "nobody@localhost", "whatever1")) == bad
    assert await failure(login(manager, "admin@localhost", "no password set")) == bad
    assert await failure(login(manager, "carol@localhost", "")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "MISSING_CREDENTIALS")
    assert (await failure(login(manager, "carol@localhost", "s3cret-pass", token="wrong")))[0] \
        == grpc.StatusCode.UNAUTHENTICATED
    for _ in range(5):
        assert await failure(login(manager, "carol@localhost", "guess")) == bad
    # Locked: even the right password is refused, with a precise reason.
    assert await failure(login(manager, "carol@localhost", "s3cret-pass")) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_LOCKED")
    # An admin's password reset lifts the lock.
    await root.UpdateUser(pb.UpdateUserRequest(ref="carol@localhost", password="n3w-password"))
    assert (await login(manager, "carol@localhost", "n3w-password")).user.email == \
        "carol@localhost"
    attempts = await root.ListAuditLogs(pb.ListAuditLogsRequest(action_prefix="auth.",
                                                                page=apb.PageRequest(limit=50)))
    outcomes = [(e.target_id, e.success, e.error_reason) for e in attempts.entries]
    assert outcomes[0] == ("carol@localhost", True, "")
    assert ("carol@localhost", False, "LOGIN_LOCKED") in outcomes
    assert ("nobody@localhost", False, "INVALID_CREDENTIALS") in outcomes
    # A deactivated user cannot log in; its keypair is refused too.
    await root.UpdateUser(pb.UpdateUserRequest(ref="carol@localhost", status="inactive"))
    assert await failure(login(manager, "carol@localhost", "n3w-password")) == bad


async def test_bootstrap_gives_the_superadmin_a_password_once(manager: Harness) -> None:
    from bai.manager.adapters.db import bootstrap_admin

    await bootstrap_admin(manager.running.db, manager.admin.access_key,
                          manager.admin.secret_key, "first-password")
    assert (await login(manager, "admin@localhost", "first-password")).user.role == "superadmin"
    # A rerun (make up again) never resets a password that is already set.
    await bootstrap_admin(manager.running.db, manager.admin.access_key,
                          manager.admin.secret_key, "second-password")
    assert await failure(login(manager, "admin@localhost", "second-password")) == (
        grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    reply = await login(manager, "admin@localhost", "first-password")
    assert reply.keypair.access_key == manager.admin.access_key


async def test_lists_cost_the_same_few_queries_for_any_page_size(manager: Harness) -> None:
    """No N+1: a page's related rows (projects, keys, members) come in one query each."""
    from sqlalchemy import event

    root = tenancy(manager, manager.admin)
    admin_stub = apb_grpc.AdminServiceStub(manager._channel(manager.admin))
    project = (await root.CreateProject(pb.CreateProjectRequest(name="crowd"))).project
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The manager's own loops (scheduler, lost-agent checker) query the same engine in the
        # background; they touch sessions, kernels and agents, which these lists do not.
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", statement, re.IGNORECASE))
        if tables and not tables & {"sessions", "kernels", "agents", "session_status_history"}:
            statements.append(statement)

    async def cost(call: Any) -> int:
        await call()  # authenticates (the key is cached for the measured call)
        statements.clear()
        await call()
        return len(statements)

    async def costs() -> tuple[int, int, int]:
        page = apb.PageRequest(limit=1000)
        return (await cost(lambda: admin_stub.ListUsers(apb.ListUsersRequest(page=page))),
                await cost(lambda: admin_stub.ListKeypairs(apb.ListKeypairsRequest(page=page))),
                await cost(lambda: root.ListProjects(pb.ListProjectsRequest(page=page))))

    engine = manager.running.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        few = await costs()
        event.remove(engine, "before_cursor_execute", count)
        for i in range(25):
            await root.CreateUser(pb.CreateUserRequest(email=f"u{i}@crowd.example",
                                                       project_ids=[project.id]))
        event.listen(engine, "before_cursor_execute", count)
        many = await costs()
    finally:
        if event.contains(engine, "before_cursor_execute", count):
            event.remove(engine, "before_cursor_execute", count)
    assert many == few
    assert max(many) <= 5


async def test_user_and_keypair_lists_filter_and_order(manager: Harness) -> None:
    root = tenancy(manager, manager.admin)
    admin_stub = apb_grpc.AdminServiceStub(manager._channel(manager.admin))
    project = (await root.CreateProject(pb.CreateProjectRequest(name="sorted"))).project
    for name, role in (("zed", "user"), ("amy", "admin"), ("kim", "user")):
        await root.CreateUser(pb.CreateUserRequest(
            email=f"{name}@filter.example", role=role, full_name=name.title(),
            project_ids=[project.id] if name != "kim" else []))

    async def users(**kw: Any) -> list[str]:
        reply = await admin_stub.ListUsers(apb.ListUsersRequest(**kw))
        return [u.email for u in reply.users]

    assert await users(filter='email ilike "%@FILTER.example"', order="-email") == [
        "zed@filter.example", "kim@filter.example", "amy@filter.example"]
    assert await users(filter='email like "%@filter.example" & !(role == "admin")',
                       order="+full_name") == ["kim@filter.example", "zed@filter.example"]
    assert await users(filter='role == "admin" | full_name == "Kim"', order="email") == [
        "amy@filter.example", "kim@filter.example"]
    assert await users(project_id=project.id, order="email") == [
        "amy@filter.example", "zed@filter.example"]
    assert await users(filter='need_password_change == true') == []
    for bad, reason in (('shoe == "x"', "INVALID_FILTER"), ('email ~ "x"', "INVALID_FILTER"),
                        ('email == 3', "INVALID_FILTER"), ('(email == "x"', "INVALID_FILTER"),
                        ('email == "x" &', "INVALID_FILTER")):
        assert await failure(admin_stub.ListUsers(apb.ListUsersRequest(filter=bad))) == (
            grpc.StatusCode.INVALID_ARGUMENT, reason), bad
    assert await failure(admin_stub.ListUsers(apb.ListUsersRequest(order="-password"))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ORDER")

    amy = (await root.GetUser(pb.GetUserRequest(ref="amy@filter.example"))).user
    await root.CreateKeypair(pb.CreateKeypairRequest(user_ref=amy.id, rate_limit=10))
    keys = await admin_stub.ListKeypairs(apb.ListKeypairsRequest(
        filter='user_id == "amy@filter.example" & rate_limit < 100'))
    assert [(k.user_email, k.rate_limit) for k in keys.keypairs] == [("amy@filter.example", 10)]
    ordered = await admin_stub.ListKeypairs(apb.ListKeypairsRequest(
        filter='user_id ilike "%@filter.example"', order="-rate_limit,user_id"))
    assert [k.rate_limit for k in ordered.keypairs] == [30000, 30000, 30000, 10]


async def test_domain_admin_sees_but_never_changes_a_superadmin(manager: Harness) -> None:
    root = tenancy(manager, manager.admin)
    made = await root.CreateUser(pb.CreateUserRequest(email="da@localhost", role="admin"))
    da = tenancy(manager, Keys(made.keypair.access_key, made.keypair.secret_key))
    assert (await da.GetUser(pb.GetUserRequest(ref="admin@localhost"))).user.role == "superadmin"
    seen = (await da.LookupKeypair(pb.LookupKeypairRequest(
        access_key=manager.admin.access_key))).keypair
    assert seen.secret_key == ""  # not the domain admin's to see
    denied = (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert await failure(da.UpdateUser(pb.UpdateUserRequest(
        ref="admin@localhost", full_name="x"))) == denied
    assert await failure(da.UpdateKeypair(pb.UpdateKeypairRequest(
        access_key=manager.admin.access_key, is_active=False))) == denied
    assert await failure(da.UpdateUser(pb.UpdateUserRequest(
        ref="user@localhost", role="superadmin"))) == denied
    assert await failure(da.UpdateUser(pb.UpdateUserRequest(
        ref="da@localhost", role="superadmin"))) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                      "SELF_PRIVILEGE_CHANGE")
    promoted = await da.UpdateUser(pb.UpdateUserRequest(ref="user@localhost", role="monitor"))
    assert promoted.user.role == "monitor"


async def test_lockout_expires_and_counts_across_replicas(manager: Harness) -> None:
    """Two PasswordLogin instances (two manager replicas) share one count in the database."""
    import asyncio

    from bai.common.errors import BaiError
    from bai.manager.adapters.db.tenancy import SqlTenancyRepository
    from bai.manager.domain.auth import LoginConfig, PasswordLogin

    await tenancy(manager, manager.admin).CreateUser(pb.CreateUserRequest(
        email="hal@localhost", password="hal-password"))
    config = LoginConfig(lockout_threshold=3, lockout_seconds=1.0)
    replicas = [PasswordLogin(SqlTenancyRepository(manager.running.db), config)
                for _ in range(2)]

    async def reason(replica: PasswordLogin, password: str) -> str:
        try:
            await replica.authorize("", "hal@localhost", password)
        except BaiError as exc:
            return exc.reason
        return "OK"

    assert [await reason(replicas[i % 2], "bad") for i in range(3)] == [
        "INVALID_CREDENTIALS"] * 3
    assert await reason(replicas[0], "hal-password") == "LOGIN_LOCKED"
    assert await reason(replicas[1], "hal-password") == "LOGIN_LOCKED"
    await asyncio.sleep(1.2)  # the lock's end, not a timing assertion
    assert await reason(replicas[1], "hal-password") == "OK"
    # A success resets the count: two more failures do not lock.
    assert [await reason(replicas[0], "bad") for _ in range(2)] == ["INVALID_CREDENTIALS"] * 2
    assert await reason(replicas[0], "hal-password") == "OK"
