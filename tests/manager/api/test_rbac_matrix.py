"""The RBAC matrix, asserted against real gRPC calls on a real manager, storage proxy and database.

Six callers (user A, user B, the project's admin, the domain's admin, a superadmin, a monitor) try
list / read / modify / delete on five kinds of object that belong to user A (or, for the
project, that A is a member of): A's session, A's private folder, A's keypair, A's user, and
project P. The expected table is written out below, one line per caller and kind; every cell is a
real call, and "deny" means PERMISSION_DENIED or NOT_FOUND (an object one may not see is not
found). Deletes act on a fresh object of the same shape per cell, so cells stay independent.

How each cell is exercised:

=========  ====================  ================  ===================  ======================
kind       list                  read              modify               delete
=========  ====================  ================  ===================  ======================
session    QuerySessions has it  GetSession        RestartSession (*)   DeleteSession
vfolder    ListVFolders has it   GetVFolder        RenameVFolder        DeleteVFolder
keypair    ListKeypairs has it   LookupKeypair     UpdateKeypair        DeleteKeypair
user       ListUsers has it      GetUser           UpdateUser           DeleteUser
project    ListProjects has it   GetProject        UpdateProject        DeleteProject
=========  ====================  ================  ===================  ======================

(*) the session is PENDING, so an allowed restart gets FAILED_PRECONDITION (SESSION_NOT_RUNNING)
after the permission check, and a denied one gets NOT_FOUND or PERMISSION_DENIED before it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from bai.common.rpc import error_from_rpc
from bai.manager.adapters.db.tables import SessionRow
from bai.manager.domain.model import utcnow
from bai.manager.server import run_manager
from bai.pb.manager.v1 import admin_service_pb2 as apb
from bai.pb.manager.v1 import admin_service_pb2_grpc as apb_grpc
from bai.pb.manager.v1 import session_service_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2_grpc as spb_grpc
from bai.pb.manager.v1 import tenancy_service_pb2 as tpb
from bai.pb.manager.v1 import tenancy_service_pb2_grpc as tpb_grpc
from bai.pb.manager.v1 import vfolder_service_pb2 as vpb
from bai.pb.manager.v1 import vfolder_service_pb2_grpc as vpb_grpc
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import running_proxy
from manager_harness import Harness, Keys, manager_config, prepare_db

ACTORS = ("user_a", "user_b", "project_admin", "domain_admin", "superadmin", "monitor")
OPERATIONS = ("list", "read", "modify", "delete")

# The expected table: for each caller and kind, list / read / modify / delete.
EXPECTED: dict[tuple[str, str], str] = {
    ("user_a", "session"):        "allow allow allow allow",
    ("user_a", "vfolder"):        "allow allow allow allow",
    ("user_a", "keypair"):        "allow allow deny  deny",
    ("user_a", "user"):           "allow allow allow deny",
    ("user_a", "project"):        "allow allow deny  deny",

    ("user_b", "session"):        "deny  deny  deny  deny",
    ("user_b", "vfolder"):        "deny  deny  deny  deny",
    ("user_b", "keypair"):        "deny  deny  deny  deny",
    ("user_b", "user"):           "deny  deny  deny  deny",
    ("user_b", "project"):        "allow allow deny  deny",

    ("project_admin", "session"): "allow allow allow allow",
    ("project_admin", "vfolder"): "deny  deny  deny  deny",
    ("project_admin", "keypair"): "deny  deny  deny  deny",
    ("project_admin", "user"):    "deny  deny  deny  deny",
    ("project_admin", "project"): "allow allow allow deny",

    ("domain_admin", "session"):  "allow allow allow allow",
    ("domain_admin", "vfolder"):  "deny  deny  deny  deny",
    ("domain_admin", "keypair"):  "allow allow allow allow",
    ("domain_admin", "user"):     "allow allow allow allow",
    ("domain_admin", "project"):  "allow allow allow allow",

    ("superadmin", "session"):    "allow allow allow allow",
    ("superadmin", "vfolder"):    "deny  allow allow allow",
    ("superadmin", "keypair"):    "allow allow allow allow",
    ("superadmin", "user"):       "allow allow allow allow",
    ("superadmin", "project"):    "allow allow allow allow",

    ("monitor", "session"):       "allow allow deny  deny",
    ("monitor", "vfolder"):       "deny  deny  deny  deny",
    ("monitor", "keypair"):       "allow allow deny  deny",
    ("monitor", "user"):          "allow allow deny  deny",
    ("monitor", "project"):       "allow allow deny  deny",
}
"""A superadmin's ListVFolders lists the folders it owns or can reach through projects and
shares, like Backend.AI's ``vfolder list``; it still reads and changes anyone's by id."""

DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    storage = StorageConfig(service_token=token, listen="127.0.0.1:0",
                            transfer_listen="127.0.0.1:0",
                            volumes=(VolumeConfig("local", "fs", {"path": str(tmp_path / "v")}),))
    async with running_proxy(storage) as proxy:
        config = manager_config(db_url, token, storage_addr=f"127.0.0.1:{proxy.grpc_port}",
                                scheduler_interval=30.0)
        async with run_manager(config) as running:
            harness = Harness(running=running, token=token, admin=admin, user=user,
                              db_url=db_url)
            try:
                yield harness
            finally:
                await harness.close()


class World:
    """The callers and user A's objects, created through the real admin API."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.keys: dict[str, Keys] = {"superadmin": h.admin}
        self.ids: dict[str, str] = {}
        self.project_id = ""

    def tenancy(self, actor: str) -> Any:
        return tpb_grpc.TenancyServiceStub(self.h._channel(self.keys[actor]))

    def admin(self, actor: str) -> Any:
        return apb_grpc.AdminServiceStub(self.h._channel(self.keys[actor]))

    def sessions(self, actor: str) -> Any:
        return spb_grpc.SessionServiceStub(self.h._channel(self.keys[actor]))

    def vfolders(self, actor: str) -> Any:
        return vpb_grpc.VFolderServiceStub(self.h._channel(self.keys[actor]))

    async def user(self, email: str, role: str, project_ids: list[str]) -> tuple[str, Keys]:
        made = await self.tenancy("superadmin").CreateUser(tpb.CreateUserRequest(
            email=email, role=role, project_ids=project_ids))
        return made.user.id, Keys(made.keypair.access_key, made.keypair.secret_key)

    async def project(self, name: str) -> str:
        project = (await self.tenancy("superadmin").CreateProject(tpb.CreateProjectRequest(
            name=name, domain="default", is_active=True))).project
        members = [self.ids["user_a"], self.ids["user_b"]]
        await self.tenancy("superadmin").AddProjectMembers(tpb.AddProjectMembersRequest(
            project_id=project.id, user_ids=members))
        await self.tenancy("superadmin").AddProjectMembers(tpb.AddProjectMembersRequest(
            project_id=project.id, user_ids=[self.ids["project_admin"]], role="admin"))
        return str(project.id)

    async def setup(self) -> None:
        root = self.tenancy("superadmin")
        projects = await root.ListProjects(tpb.ListProjectsRequest(domain="default"))
        default = next(p.id for p in projects.projects if p.name == "default")
        for actor, role in (("user_a", "user"), ("user_b", "user"), ("project_admin", "user"),
                            ("domain_admin", "admin"), ("monitor", "monitor")):
            self.ids[actor], self.keys[actor] = await self.user(f"{actor}@rbac.test", role, [])
        self.project_id = await self.project("p")
        # Sessions of A are started in project P.
        await root.AddProjectMembers(tpb.AddProjectMembersRequest(
            project_id=default, user_ids=[self.ids["user_a"]]))

    async def session_of_a(self) -> str:
        session_id = uuid.uuid4()
        now = utcnow()
        async with self.h.running.db.write() as s:
            s.add(SessionRow(id=session_id, name=f"s-{session_id.hex[:8]}", live_name=None,
                             access_key=self.keys["user_a"].access_key, domain_name="default",
                             project_name="p", session_type="interactive",
                             spec={"image": "python:3.11"}, state="PENDING", reason="",
                             message="", state_changed_at=now, created_at=now,
                             terminated_at=None, exit_code=None, request_id=None))
        return str(session_id)

    async def folder_of_a(self) -> str:
        made = await self.vfolders("user_a").CreateVFolder(vpb.CreateVFolderRequest(
            name=f"f-{secrets.token_hex(4)}"))
        return str(made.vfolder.id)

    async def keypair_of_a(self) -> str:
        made = await self.tenancy("superadmin").CreateKeypair(tpb.CreateKeypairRequest(
            user_ref=self.ids["user_a"], is_active=True))
        return str(made.keypair.access_key)


Call = Callable[[World, str], Awaitable[Any]]


async def outcome(call: Awaitable[Any], *, allowed_preconditions: tuple[str, ...] = ()) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() in DENIED:
            return "deny"
        reason = error_from_rpc(exc).reason
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and reason in allowed_preconditions:
            return "allow"
        raise AssertionError(f"unexpected {exc.code().name} {reason}: {exc.details()}") from exc
    return "allow"


async def listed(found: Awaitable[Any], field: str, key: str, wanted: str) -> str:
    reply = await found
    return "allow" if any(getattr(x, key) == wanted for x in getattr(reply, field)) else "deny"


async def cell(w: World, actor: str, kind: str, op: str, a: dict[str, str]) -> str:
    if kind == "session":
        ref = a["session"] if op != "delete" else await w.session_of_a()
        if op == "list":
            return await listed(w.admin(actor).QuerySessions(apb.QuerySessionsRequest()),
                                "sessions", "id", ref)
        stub = w.sessions(actor)
        calls = {"read": lambda: stub.GetSession(spb.GetSessionRequest(session_ref=ref)),
                 "modify": lambda: stub.RestartSession(spb.RestartSessionRequest(
                     session_ref=ref)),
                 "delete": lambda: stub.DeleteSession(spb.DeleteSessionRequest(
                     session_ref=ref))}
        return await outcome(calls[op](), allowed_preconditions=("SESSION_NOT_RUNNING",))
    if kind == "vfolder":
        ref = a["vfolder"] if op != "delete" else await w.folder_of_a()
        vstub = w.vfolders(actor)
        if op == "list":
            return await listed(vstub.ListVFolders(vpb.ListVFoldersRequest()), "vfolders",
                                "id", ref)
        calls = {"read": lambda: vstub.GetVFolder(vpb.GetVFolderRequest(vfolder_ref=ref)),
                 "modify": lambda: vstub.RenameVFolder(vpb.RenameVFolderRequest(
                     vfolder_ref=ref, new_name=f"r-{secrets.token_hex(4)}")),
                 "delete": lambda: vstub.DeleteVFolder(vpb.DeleteVFolderRequest(
                     vfolder_ref=ref))}
        return await outcome(calls[op]())
    if kind == "keypair":
        ref = a["keypair"] if op != "delete" else await w.keypair_of_a()
        if op == "list":
            return await listed(w.admin(actor).ListKeypairs(apb.ListKeypairsRequest(
                page=apb.PageRequest(limit=1000))), "keypairs", "access_key", ref)
        t = w.tenancy(actor)
        calls = {"read": lambda: t.LookupKeypair(tpb.LookupKeypairRequest(access_key=ref)),
                 "modify": lambda: t.UpdateKeypair(tpb.UpdateKeypairRequest(
                     access_key=ref, rate_limit=1234)),
                 "delete": lambda: t.DeleteKeypair(tpb.DeleteKeypairRequest(access_key=ref))}
        return await outcome(calls[op]())
    if kind == "user":
        ref = a["user"]
        if op == "delete":
            ref, _ = await w.user(f"victim-{secrets.token_hex(3)}@rbac.test", "user",
                                  [w.project_id])
        if op == "list":
            return await listed(w.admin(actor).ListUsers(apb.ListUsersRequest(
                page=apb.PageRequest(limit=1000))), "users", "id", ref)
        t = w.tenancy(actor)
        calls = {"read": lambda: t.GetUser(tpb.GetUserRequest(ref=ref)),
                 "modify": lambda: t.UpdateUser(tpb.UpdateUserRequest(
                     ref=ref, full_name=f"by {actor}")),
                 "delete": lambda: t.DeleteUser(tpb.DeleteUserRequest(ref=ref))}
        return await outcome(calls[op]())
    ref = a["project"] if op != "delete" else await w.project(f"q-{secrets.token_hex(3)}")
    t = w.tenancy(actor)
    if op == "list":
        return await listed(t.ListProjects(tpb.ListProjectsRequest(
            page=apb.PageRequest(limit=1000))), "projects", "id", ref)
    calls = {"read": lambda: t.GetProject(tpb.GetProjectRequest(id=ref)),
             "modify": lambda: t.UpdateProject(tpb.UpdateProjectRequest(
                 id=ref, description=f"by {actor}")),
             "delete": lambda: t.DeleteProject(tpb.DeleteProjectRequest(id=ref))}
    return await outcome(calls[op]())


async def test_rbac_matrix(stack: Harness) -> None:
    w = World(stack)
    await w.setup()
    objects = {"session": await w.session_of_a(), "vfolder": await w.folder_of_a(),
               "keypair": w.keys["user_a"].access_key, "user": w.ids["user_a"],
               "project": w.project_id}
    actual: dict[tuple[str, str], str] = {}
    for (actor, kind) in EXPECTED:
        results = [await cell(w, actor, kind, op, objects) for op in OPERATIONS]
        actual[(actor, kind)] = " ".join(results)
    expected = {key: " ".join(value.split()) for key, value in EXPECTED.items()}
    mismatches = {key: (expected[key], actual[key]) for key in expected
                  if expected[key] != actual[key]}
    assert mismatches == {}

    # Session actions are in the audit log too, the refused ones with their reason.
    log = await w.tenancy("superadmin").ListAuditLogs(tpb.ListAuditLogsRequest(
        action_prefix="session.delete", page=apb.PageRequest(limit=100)))
    outcomes = {(e.actor_access_key, e.success, e.error_reason) for e in log.entries}
    assert (w.keys["user_a"].access_key, True, "") in outcomes
    assert (w.keys["user_b"].access_key, False, "SESSION_NOT_FOUND") in outcomes
    assert (w.keys["monitor"].access_key, False, "PERMISSION_DENIED") in outcomes


async def test_monitor_writes_are_permission_denied_with_a_reason(stack: Harness) -> None:
    w = World(stack)
    await w.setup()
    t = w.tenancy("monitor")
    for call in (t.UpdateUser(tpb.UpdateUserRequest(ref=w.ids["user_a"], full_name="x")),
                 t.UpdateKeypair(tpb.UpdateKeypairRequest(
                     access_key=w.keys["user_a"].access_key, is_active=False)),
                 t.CreateUser(tpb.CreateUserRequest(email="m@rbac.test")),
                 t.UpdateProject(tpb.UpdateProjectRequest(id=w.project_id, description="x"))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_from_rpc(caught.value).reason == "READ_ONLY_ROLE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await w.sessions("monitor").DeleteSession(spb.DeleteSessionRequest(
            session_ref=await w.session_of_a()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_sessions_start_only_in_ones_own_projects(
    manager: Harness, agents: Callable[..., Awaitable[Any]]
) -> None:
    await agents()
    root = tpb_grpc.TenancyServiceStub(manager._channel(manager.admin))
    project = (await root.CreateProject(tpb.CreateProjectRequest(name="closed"))).project
    user_id = (await root.GetUser(tpb.GetUserRequest(ref="user@localhost"))).user.id
    stub = spb_grpc.SessionServiceStub(manager._channel(manager.user))
    request = spb.CreateSessionRequest(name="in-closed", image="python", project="closed",
                                       resources={"cpu": "1", "mem": "64m"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateSession(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_from_rpc(caught.value).reason == "NOT_A_PROJECT_MEMBER"
    await root.AddProjectMembers(tpb.AddProjectMembersRequest(project_id=project.id,
                                                              user_ids=[user_id]))
    created = await stub.CreateSession(request, timeout=30)
    assert created.session.project == "closed"
