"""ResourceGroupService over a real gRPC server and a real database (SQLite and PostgreSQL).

Resource-group CRUD and access lists, fair-share weights, who may do what (RBAC), precise
errors for bad input that leave nothing behind, the audit trail, and that a change takes
effect on the scheduler's next pass (real scheduling with protocol agents).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import grpc
import pytest
from bai.common.rpc import error_from_rpc
from bai.manager.adapters.db.scheduling import SqlSchedulingRepository
from bai.pb.manager.v1 import admin_service_pb2 as apb
from bai.pb.manager.v1 import resource_group_service_pb2 as pb
from bai.pb.manager.v1 import resource_group_service_pb2_grpc as pb_grpc
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from bai.pb.manager.v1 import tenancy_service_pb2 as tpb
from bai.pb.manager.v1 import tenancy_service_pb2_grpc as tpb_grpc
from google.protobuf.struct_pb2 import Struct
from manager_harness import Harness, Keys, ProtocolAgent

State = session_pb2.Session.State
StartAgent = Callable[..., Awaitable[ProtocolAgent]]
PROJECT = pb.FAIR_SHARE_SCOPE_PROJECT
USER = pb.FAIR_SHARE_SCOPE_USER


def groups(h: Harness, keys: Keys) -> Any:
    return pb_grpc.ResourceGroupServiceStub(h._channel(keys))


def tenancy(h: Harness, keys: Keys) -> Any:
    return tpb_grpc.TenancyServiceStub(h._channel(keys))


def options(**values: Any) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct


async def failure(call: Any) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    err = error_from_rpc(caught.value)
    return caught.value.code(), err.reason, caught.value.details() or ""


async def user_keys(h: Harness, email: str, role: str, domain: str,
                    project_ids: tuple[str, ...] = ()) -> Keys:
    made = await tenancy(h, h.admin).CreateUser(tpb.CreateUserRequest(
        email=email, password="a-long-password", role=role, domain=domain,
        project_ids=list(project_ids)))
    return Keys(made.keypair.access_key, made.keypair.secret_key)


async def test_crud_access_lists_and_audit(manager: Harness) -> None:
    root = groups(manager, manager.admin)
    made = (await root.CreateResourceGroup(pb.CreateResourceGroupRequest(
        name="gpu", description="A100 nodes", is_active=True, scheduler="fair-share",
        agent_selector="concentrated", scheduler_options=options(window_seconds=3600),
        allowed_domains=["default"]))).resource_group
    assert (made.name, made.scheduler, made.agent_selector, list(made.allowed_domains)) == (
        "gpu", "fair-share", "concentrated", ["default"])
    assert dict(made.scheduler_options) == {"window_seconds": 3600}
    assert made.create_time.seconds > 0 and made.agent_count == 0

    # Defaults: active, fifo and dispersed, open to everyone.
    plain = (await root.CreateResourceGroup(pb.CreateResourceGroupRequest(
        name="cpu-only"))).resource_group
    assert (plain.is_active, plain.scheduler, plain.agent_selector, list(plain.allowed_domains),
            list(plain.allowed_projects)) == (True, "fifo", "dispersed", [], [])

    listed = await root.ListResourceGroups(pb.ListResourceGroupsRequest())
    assert [g.name for g in listed.resource_groups] == ["cpu-only", "default", "gpu"]
    assert listed.total_count == 3
    page = await root.ListResourceGroups(pb.ListResourceGroupsRequest(
        page=apb.PageRequest(offset=1, limit=1)))
    assert ([g.name for g in page.resource_groups], page.total_count) == (["default"], 3)

    changed = (await root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="gpu", description="H100 nodes", scheduler="drf",
        replace_allowed_projects=True, allowed_projects=["default/default"]))).resource_group
    assert (changed.description, changed.scheduler, changed.agent_selector) == (
        "H100 nodes", "drf", "concentrated")
    assert list(changed.allowed_projects) == ["default/default"]
    assert dict(changed.scheduler_options) == {"window_seconds": 3600}  # unset: unchanged

    # Access lists: by project id too; removing what is absent is a no-op.
    project = (await tenancy(manager, manager.admin).ListProjects(
        tpb.ListProjectsRequest(domain="default"))).projects[0]
    await tenancy(manager, manager.admin).CreateDomain(tpb.CreateDomainRequest(
        name="lab", is_active=True))
    added = (await root.AddResourceGroupAccess(pb.AddResourceGroupAccessRequest(
        name="cpu-only", domains=["lab"], projects=[project.id]))).resource_group
    assert (list(added.allowed_domains), list(added.allowed_projects)) == (
        ["lab"], ["default/default"])
    removed = (await root.RemoveResourceGroupAccess(pb.RemoveResourceGroupAccessRequest(
        name="cpu-only", domains=["lab", "nowhere"], projects=["default/default"]))).resource_group
    assert (list(removed.allowed_domains), list(removed.allowed_projects)) == ([], [])

    assert await failure(root.CreateResourceGroup(pb.CreateResourceGroupRequest(
        name="gpu"))) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS",
                          "resource group 'gpu' already exists")
    await root.DeleteResourceGroup(pb.DeleteResourceGroupRequest(name="gpu"))
    code, reason, _ = await failure(root.GetResourceGroup(pb.GetResourceGroupRequest(
        name="gpu")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RESOURCE_GROUP_NOT_FOUND")
    code, reason, _ = await failure(root.DeleteResourceGroup(pb.DeleteResourceGroupRequest(
        name="gpu")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RESOURCE_GROUP_NOT_FOUND")

    audit = await tenancy(manager, manager.admin).ListAuditLogs(tpb.ListAuditLogsRequest(
        action_prefix="resource_group", page=apb.PageRequest(limit=50)))
    trail = [(e.action, e.target_id, e.success, e.error_reason)
             for e in reversed(audit.entries)]
    assert trail == [
        ("resource_group.create", "gpu", True, ""),
        ("resource_group.create", "cpu-only", True, ""),
        ("resource_group.update", "gpu", True, ""),
        ("resource_group_access.add", "cpu-only", True, ""),
        ("resource_group_access.remove", "cpu-only", True, ""),
        ("resource_group.create", "gpu", False, "ALREADY_EXISTS"),
        ("resource_group.delete", "gpu", True, ""),
        ("resource_group.delete", "gpu", False, "RESOURCE_GROUP_NOT_FOUND"),
    ]


async def test_bad_input_is_precise_and_leaves_nothing(manager: Harness) -> None:
    root = groups(manager, manager.admin)
    code, reason, message = await failure(root.CreateResourceGroup(
        pb.CreateResourceGroupRequest(name="x1", scheduler="round-robin-ish")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_SCHEDULER")
    assert message == ("unknown scheduler 'round-robin-ish'; installed (backendai_scheduler_v10): "
                       "drf, fair-share, fifo, lifo")
    code, reason, message = await failure(root.CreateResourceGroup(
        pb.CreateResourceGroupRequest(name="x1", agent_selector="random")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_AGENT_SELECTOR")
    assert "concentrated, dispersed, round-robin" in message
    cases: list[tuple[pb.CreateResourceGroupRequest, grpc.StatusCode, str]] = [
        (pb.CreateResourceGroupRequest(name="bad name"), grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_NAME"),
        (pb.CreateResourceGroupRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_NAME"),
        (pb.CreateResourceGroupRequest(name="x1", allowed_domains=["nowhere"]),
         grpc.StatusCode.NOT_FOUND, "DOMAIN_NOT_FOUND"),
        (pb.CreateResourceGroupRequest(name="x1", allowed_projects=["default/nope"]),
         grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND"),
        (pb.CreateResourceGroupRequest(name="x1", allowed_projects=["just-a-name"]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PROJECT_REF"),
    ]
    for request, want_code, want_reason in cases:
        code, reason, _ = await failure(root.CreateResourceGroup(request))
        assert (code, reason) == (want_code, want_reason), request
    names = [g.name for g in (await root.ListResourceGroups(
        pb.ListResourceGroupsRequest())).resource_groups]
    assert names == ["default"]  # nothing half-created

    # An update with a bad plugin changes nothing, not even the valid fields beside it.
    code, reason, _ = await failure(root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="default", description="changed", agent_selector="nope")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_AGENT_SELECTOR")
    code, reason, _ = await failure(root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="default", description="changed", replace_allowed_domains=True,
        allowed_domains=["nowhere"])))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "DOMAIN_NOT_FOUND")
    default = (await root.GetResourceGroup(pb.GetResourceGroupRequest(
        name="default"))).resource_group
    assert (default.description, default.agent_selector, list(default.allowed_domains)) == (
        "the default resource group", "dispersed", [])
    code, reason, _ = await failure(root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="ghost", description="x")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RESOURCE_GROUP_NOT_FOUND")
    code, reason, _ = await failure(root.AddResourceGroupAccess(
        pb.AddResourceGroupAccessRequest(name="default")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NOTHING_TO_CHANGE")

    weight_cases = [
        (pb.SetFairShareWeightRequest(scope=USER, subject="user@localhost", weight="0"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
        (pb.SetFairShareWeightRequest(scope=USER, subject="user@localhost", weight="-2"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
        (pb.SetFairShareWeightRequest(scope=USER, subject="user@localhost", weight="lots"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
        (pb.SetFairShareWeightRequest(scope=USER, subject="user@localhost", weight="NaN"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WEIGHT"),
        (pb.SetFairShareWeightRequest(subject="user@localhost", weight="2"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCOPE"),
        (pb.SetFairShareWeightRequest(scope=USER, subject="ghost@localhost", weight="2"),
         grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"),
        (pb.SetFairShareWeightRequest(scope=PROJECT, subject="default/ghost", weight="2"),
         grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND"),
    ]
    for weight_request, want_code, want_reason in weight_cases:
        code, reason, _ = await failure(root.SetFairShareWeight(weight_request))
        assert (code, reason) == (want_code, want_reason), weight_request
    assert (await root.ListFairShareWeights(pb.ListFairShareWeightsRequest())).total_count == 0
    code, reason, message = await failure(root.ListFairShareWeights(
        pb.ListFairShareWeightsRequest(scope=9)))  # type: ignore[arg-type]
    assert (code, reason, message) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCOPE",
                                       "unknown scope '#9'; one of project, user")


async def test_who_may_read_and_change(manager: Harness) -> None:
    root = groups(manager, manager.admin)
    t_root = tenancy(manager, manager.admin)
    await t_root.CreateDomain(tpb.CreateDomainRequest(name="lab", is_active=True))
    vision = (await t_root.CreateProject(tpb.CreateProjectRequest(
        name="vision", domain="lab", is_active=True))).project
    await t_root.CreateProject(tpb.CreateProjectRequest(name="audio", domain="lab",
                                                        is_active=True))
    for name, domains, projects in (("lab-all", ["lab"], []), ("lab-vision", [],
                                    ["lab/vision"]), ("lab-audio", [], ["lab/audio"]),
                                    ("default-only", ["default"], [])):
        await root.CreateResourceGroup(pb.CreateResourceGroupRequest(
            name=name, is_active=True, allowed_domains=domains, allowed_projects=projects))
    lab_admin = await user_keys(manager, "ann@lab.example", "admin", "lab")
    lab_user = await user_keys(manager, "bob@lab.example", "user", "lab", (vision.id,))
    monitor = await user_keys(manager, "mon@default.example", "monitor", "default")

    async def visible(keys: Keys) -> list[str]:
        reply = await groups(manager, keys).ListResourceGroups(pb.ListResourceGroupsRequest())
        return [g.name for g in reply.resource_groups]

    everything = ["default", "default-only", "lab-all", "lab-audio", "lab-vision"]
    assert await visible(manager.admin) == everything
    assert await visible(monitor) == everything
    assert await visible(lab_admin) == ["default", "lab-all", "lab-audio", "lab-vision"]
    assert await visible(lab_user) == ["default", "lab-all", "lab-vision"]
    assert await visible(manager.user) == ["default", "default-only"]
    code, reason, _ = await failure(groups(manager, lab_user).GetResourceGroup(
        pb.GetResourceGroupRequest(name="lab-audio")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RESOURCE_GROUP_NOT_FOUND")

    writes: list[tuple[str, Any]] = [
        ("CreateResourceGroup", pb.CreateResourceGroupRequest(name="mine")),
        ("UpdateResourceGroup", pb.UpdateResourceGroupRequest(name="lab-all", is_active=False)),
        ("DeleteResourceGroup", pb.DeleteResourceGroupRequest(name="lab-all")),
        ("AddResourceGroupAccess", pb.AddResourceGroupAccessRequest(name="lab-all",
                                                                    domains=["default"])),
        ("SetFairShareWeight", pb.SetFairShareWeightRequest(
            scope=USER, subject="bob@lab.example", weight="3")),
    ]
    for keys, want in ((lab_admin, "PERMISSION_DENIED"), (lab_user, "PERMISSION_DENIED"),
                       (monitor, "READ_ONLY_ROLE")):
        stub = groups(manager, keys)
        for method, request in writes:
            code, reason, _ = await failure(getattr(stub, method)(request))
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, want), method
    assert await visible(manager.admin) == everything
    lab_all = (await root.GetResourceGroup(pb.GetResourceGroupRequest(
        name="lab-all"))).resource_group
    assert lab_all.is_active and list(lab_all.allowed_domains) == ["lab"]

    # Agents: superadmins and monitors only.
    for keys in (lab_admin, lab_user):
        code, reason, _ = await failure(groups(manager, keys).ListResourceGroupAgents(
            pb.ListResourceGroupAgentsRequest(name="default")))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    await groups(manager, monitor).ListResourceGroupAgents(
        pb.ListResourceGroupAgentsRequest(name="default"))

    # Weights: a domain admin sees its domain's subjects only; users see none.
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=USER, subject="Bob@Lab.example", weight="3.50"))
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=PROJECT, subject=vision.id, weight="2"))
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=USER, subject="user@localhost", weight="0.5"))
    everyone = await root.ListFairShareWeights(pb.ListFairShareWeightsRequest())
    assert [(w.scope, w.subject, w.weight) for w in everyone.weights] == [
        (PROJECT, "lab/vision", "2"), (USER, "bob@lab.example", "3.5"),
        (USER, "user@localhost", "0.5")]
    ours = await groups(manager, lab_admin).ListFairShareWeights(
        pb.ListFairShareWeightsRequest())
    assert [w.subject for w in ours.weights] == ["lab/vision", "bob@lab.example"]
    users_only = await groups(manager, lab_admin).ListFairShareWeights(
        pb.ListFairShareWeightsRequest(scope=USER))
    assert [w.subject for w in users_only.weights] == ["bob@lab.example"]
    code, reason, _ = await failure(groups(manager, lab_user).ListFairShareWeights(
        pb.ListFairShareWeightsRequest()))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")

    audit = await t_root.ListAuditLogs(tpb.ListAuditLogsRequest(
        action_prefix="fair_share_weight", page=apb.PageRequest(limit=50)))
    denied = [(e.actor_role, e.target_id, e.error_reason) for e in reversed(audit.entries)
              if not e.success]
    assert denied == [("admin", "bob@lab.example", "PERMISSION_DENIED"),
                      ("user", "bob@lab.example", "PERMISSION_DENIED"),
                      ("monitor", "bob@lab.example", "READ_ONLY_ROLE")]


async def _session(manager: Harness, name: str, group: str) -> session_pb2.Session:
    reply = await manager.sessions().CreateSession(spb.CreateSessionRequest(
        name=name, image="python", resources={"cpu": "1", "mem": "256m"},
        resource_group=group, enqueue_only=True), timeout=30)
    return reply.session


async def _until(manager: Harness, name: str, check: Callable[[session_pb2.Session], bool],
                 within: float = 20.0) -> session_pb2.Session:
    stub = manager.sessions()
    deadline = asyncio.get_running_loop().time() + within
    while True:
        session = (await stub.GetSession(spb.GetSessionRequest(session_ref=name))).session
        if check(session):
            return session
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name}: {session.status.state} {session.status.reason}")
        await asyncio.sleep(0.1)


def _running(s: session_pb2.Session) -> bool:
    return s.status.state == State.STATE_RUNNING


async def test_changes_take_effect_on_the_next_pass_and_delete_guards(
    manager: Harness, agents: StartAgent
) -> None:
    root = groups(manager, manager.admin)
    await root.CreateResourceGroup(pb.CreateResourceGroupRequest(
        name="rg-pack", is_active=False, agent_selector="concentrated"))

    # A pending session alone keeps a group from being deleted.
    await root.CreateResourceGroup(pb.CreateResourceGroupRequest(name="rg-empty"))
    await agents(resource_group="default")  # knows the image, so the session may wait
    await _session(manager, "queued", "rg-empty")
    code, reason, message = await failure(root.DeleteResourceGroup(
        pb.DeleteResourceGroupRequest(name="rg-empty")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESOURCE_GROUP_IN_USE")
    assert message == "resource group 'rg-empty' still has 0 agent(s) and 1 pending session(s)"

    # Inactive: the session waits with the group's reason; activating it lets it go.
    first = await agents(resource_group="rg-pack", cpu="8")
    second = await agents(resource_group="rg-pack", cpu="8")
    await _session(manager, "waits", "rg-pack")
    waiting = await _until(manager, "waits",
                           lambda s: s.status.reason == "ResourceGroupInactive")
    assert waiting.status.state == State.STATE_PENDING
    listed = await root.ListResourceGroupAgents(pb.ListResourceGroupAgentsRequest(
        name="rg-pack"))
    assert sorted(a.id for a in listed.agents) == sorted([first.agent_id, second.agent_id])
    group = (await root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="rg-pack", is_active=True))).resource_group
    assert (group.agent_count, group.pending_session_count) == (2, 1)
    placed = (await _until(manager, "waits", _running)).kernels[0].agent_id

    # Concentrated: the next session packs onto the same (busier) agent.
    await _session(manager, "packed", "rg-pack")
    assert (await _until(manager, "packed", _running)).kernels[0].agent_id == placed
    # Switch to dispersed: the next pass spreads to the emptier agent.
    await root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="rg-pack", agent_selector="dispersed"))
    await _session(manager, "spread", "rg-pack")
    assert (await _until(manager, "spread", _running)).kernels[0].agent_id != placed

    # Access lists apply to the next pass too.
    await tenancy(manager, manager.admin).CreateDomain(tpb.CreateDomainRequest(
        name="lab", is_active=True))
    await root.AddResourceGroupAccess(pb.AddResourceGroupAccessRequest(
        name="rg-pack", domains=["lab"]))
    await _session(manager, "barred", "rg-pack")
    barred = await _until(manager, "barred",
                          lambda s: s.status.reason == "ResourceGroupNotAllowed")
    assert barred.status.state == State.STATE_PENDING
    await root.RemoveResourceGroupAccess(pb.RemoveResourceGroupAccessRequest(
        name="rg-pack", domains=["lab"]))
    await _until(manager, "barred", _running)

    code, reason, message = await failure(root.DeleteResourceGroup(
        pb.DeleteResourceGroupRequest(name="rg-pack")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESOURCE_GROUP_IN_USE")
    assert "2 agent(s)" in message

    # Weights: what the scheduler reads on its next pass.
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=PROJECT, subject="default/default", weight="4"))
    rules = SqlSchedulingRepository(manager.running.db)
    assert await rules.weights() == {("project", "default/default"): Decimal(4)}
    reset = await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=PROJECT, subject="default/default", weight="1.000"))
    assert reset.weight.weight == "1"
    assert await rules.weights() == {}


async def test_a_weight_reorders_the_fair_share_queue(
    manager: Harness, agents: StartAgent
) -> None:
    """The queue position GetSession reports is the order the next pass would use: a changed
    scheduler reorders the queue, and a weight set through the API moves a user's second
    session ahead of another user's."""
    root = groups(manager, manager.admin)
    await root.CreateResourceGroup(pb.CreateResourceGroupRequest(
        name="rg-fair", is_active=False, scheduler="lifo"))  # inactive: nothing places
    await agents(resource_group="rg-fair", cpu="8")
    for name, keys in (("fs-a1", manager.admin), ("fs-u1", manager.user), ("fs-a2", manager.admin),
                       ("fs-u2", manager.user)):
        await manager.sessions(keys).CreateSession(spb.CreateSessionRequest(
            name=name, image="python", resources={"cpu": "1", "mem": "256m"},
            resource_group="rg-fair", enqueue_only=True), timeout=30)

    async def order() -> list[str]:
        positions = {}
        for name, keys in (("fs-a1", manager.admin), ("fs-u1", manager.user),
                           ("fs-a2", manager.admin), ("fs-u2", manager.user)):
            session = (await manager.sessions(keys).GetSession(
                spb.GetSessionRequest(session_ref=name))).session
            positions[name] = session.status.queue_position
        return sorted(positions, key=positions.__getitem__)

    assert await order() == ["fs-u2", "fs-a2", "fs-u1", "fs-a1"]  # lifo: newest first
    await root.UpdateResourceGroup(pb.UpdateResourceGroupRequest(
        name="rg-fair", scheduler="fair-share"))
    assert await order() == ["fs-a1", "fs-u1", "fs-a2", "fs-u2"]  # equal weights: turns alternate
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=USER, subject="user@localhost", weight="4"))
    # Four times the share: the user's two go in a row.
    assert await order() == ["fs-a1", "fs-u1", "fs-u2", "fs-a2"]
    await root.SetFairShareWeight(pb.SetFairShareWeightRequest(
        scope=USER, subject="user@localhost", weight="1"))
    assert await order() == ["fs-a1", "fs-u1", "fs-a2", "fs-u2"]
