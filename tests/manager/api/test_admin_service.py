"""AdminService and EventService over a real gRPC server and real database (both backends).

Visibility: superadmin and monitor see everything; a domain admin its domain; a user itself.
Agents: superadmin and monitor only. Secrets only for one's own keypairs or to a superadmin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from bai.common import auth
from bai.manager.adapters.db.accounts import create_user
from bai.manager.domain.model import Role
from bai.pb.manager.v1 import admin_service_pb2 as pb
from bai.pb.manager.v1 import admin_service_pb2_grpc as pb_grpc
from bai.pb.manager.v1 import event_service_pb2 as ev_pb
from bai.pb.manager.v1 import event_service_pb2_grpc as ev_grpc
from bai.pb.manager.v1 import session_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2 as spb_svc
from manager_harness import Harness, Keys, ProtocolAgent

State = spb.Session.State
StartAgent = Callable[..., Awaitable[ProtocolAgent]]


def admin(h: Harness, keys: Keys) -> Any:
    return pb_grpc.AdminServiceStub(h._channel(keys))


def events(h: Harness, keys: Keys) -> Any:
    return ev_grpc.EventServiceStub(h._channel(keys))


async def add_user(h: Harness, email: str, role: Role, domain: str = "default") -> Keys:
    keys = Keys(*auth.generate_keypair())
    await create_user(h.running.db, email=email, access_key=keys.access_key,
                      secret_key=keys.secret_key, role=role, domain=domain)
    return keys


def page(offset: int = 0, limit: int = 0) -> pb.PageRequest:
    return pb.PageRequest(offset=offset, limit=limit)


async def emails(stub: Any, **kw: Any) -> tuple[list[str], int]:
    reply = await stub.ListUsers(pb.ListUsersRequest(**kw), timeout=10)
    return [u.email for u in reply.users], reply.total_count


async def test_users_and_keypairs_by_role(manager: Harness) -> None:
    monitor = await add_user(manager, "mon@localhost", Role.MONITOR)
    other_admin = await add_user(manager, "oadmin@other", Role.ADMIN, domain="other")
    other_user = await add_user(manager, "ouser@other", Role.USER, domain="other")
    everyone = ["admin@localhost", "user@localhost", "mon@localhost", "oadmin@other",
                "ouser@other"]

    assert await emails(admin(manager, manager.admin)) == (everyone, 5)
    assert await emails(admin(manager, monitor)) == (everyone, 5)
    assert await emails(admin(manager, other_admin)) == (["oadmin@other", "ouser@other"], 2)
    assert await emails(admin(manager, manager.user)) == (["user@localhost"], 1)
    # Offset paging keeps the total.
    assert await emails(admin(manager, manager.admin), page=page(1, 2)) == (
        ["user@localhost", "mon@localhost"], 5)
    superadmin_view = await admin(manager, manager.admin).ListUsers(pb.ListUsersRequest())
    first = superadmin_view.users[0]
    assert first.role == "superadmin" and first.main_access_key == manager.admin.access_key
    assert [p.name for p in first.projects] == ["default"]

    reply = await admin(manager, manager.user).ListKeypairs(pb.ListKeypairsRequest())
    assert [(k.access_key, k.secret_key) for k in reply.keypairs] == [
        (manager.user.access_key, manager.user.secret_key)]
    reply = await admin(manager, monitor).ListKeypairs(pb.ListKeypairsRequest())
    assert reply.total_count == 5
    secrets = {k.access_key: k.secret_key for k in reply.keypairs}
    assert secrets[monitor.access_key] == monitor.secret_key
    assert secrets[manager.admin.access_key] == ""  # not the monitor's to see
    reply = await admin(manager, manager.admin).ListKeypairs(pb.ListKeypairsRequest())
    assert {k.access_key: k.secret_key for k in reply.keypairs}[other_user.access_key] == (
        other_user.secret_key)
    reply = await admin(manager, manager.admin).ListKeypairs(
        pb.ListKeypairsRequest(domain="other"))
    assert {k.user_email for k in reply.keypairs} == {"oadmin@other", "ouser@other"}
    reply = await admin(manager, manager.admin).ListKeypairs(
        pb.ListKeypairsRequest(is_active=False))
    assert reply.total_count == 0

    own = await admin(manager, manager.user).GetKeypair(pb.GetKeypairRequest())
    assert own.keypair.access_key == manager.user.access_key
    assert own.keypair.user_email == "user@localhost" and not own.keypair.is_admin


async def test_agents_need_superadmin_or_monitor(manager: Harness, agents: StartAgent) -> None:
    agent = await agents()
    monitor = await add_user(manager, "mon@localhost", Role.MONITOR)
    for keys in (manager.admin, monitor):
        reply = await admin(manager, keys).ListAgents(pb.ListAgentsRequest(status="ALIVE"))
        assert reply.total_count == 1
        found = reply.agents[0]
        assert found.id == agent.agent_id and found.status == "ALIVE"
        assert found.capacity == agent.capacity
        assert all(float(v) == 0 for v in found.occupied.values())  # nothing placed
        assert found.first_contact.seconds > 0
    reply = await admin(manager, manager.admin).ListAgents(pb.ListAgentsRequest(status="LOST"))
    assert reply.total_count == 0 and not reply.agents
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin(manager, manager.user).ListAgents(pb.ListAgentsRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_query_sessions_by_offset(manager: Harness, agents: StartAgent) -> None:
    await agents()
    monitor = await add_user(manager, "mon@localhost", Role.MONITOR)
    for keys, name in ((manager.user, "us-1"), (manager.user, "us-2"), (manager.admin, "ad-1")):
        await manager.sessions(keys).CreateSession(spb_svc.CreateSessionRequest(
            name=name, image="python", resources={"cpu": "1", "mem": "64m"}), timeout=30)

    async def names(keys: Keys, **kw: Any) -> tuple[list[str], int]:
        reply = await admin(manager, keys).QuerySessions(pb.QuerySessionsRequest(**kw))
        return [s.name for s in reply.sessions], reply.total_count

    assert await names(manager.user) == (["us-2", "us-1"], 2)
    assert await names(manager.admin) == (["ad-1", "us-2", "us-1"], 3)
    assert await names(monitor) == (["ad-1", "us-2", "us-1"], 3)
    assert await names(manager.admin, page=page(1, 1)) == (["us-2"], 3)
    assert await names(manager.admin, access_key=manager.user.access_key) == (["us-2", "us-1"], 2)
    assert await names(manager.user, access_key=manager.admin.access_key) == ([], 0)
    assert await names(manager.admin, states=[State.STATE_TERMINATED]) == ([], 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin(manager, manager.admin).QuerySessions(
            pb.QuerySessionsRequest(page=page(0, 5000)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.AdminServiceStub(manager._channel(None)).ListUsers(pb.ListUsersRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_watch_session_events(manager: Harness, agents: StartAgent) -> None:
    await agents()
    stub = manager.sessions(manager.user)
    created = await stub.CreateSession(spb_svc.CreateSessionRequest(
        name="watched", image="python", resources={"cpu": "1", "mem": "64m"}), timeout=30)
    call = events(manager, manager.user).WatchSessionEvents(
        ev_pb.WatchSessionEventsRequest(session_ref="watched"))
    first = await call.read()
    assert first.subscribed.id == created.session.id
    await stub.DeleteSession(spb_svc.DeleteSessionRequest(session_ref="watched"), timeout=30)
    names = []
    async with asyncio.timeout(15):
        async for message in call:
            assert message.event.session_id == created.session.id
            names.append(message.event.name)
    assert names == ["kernel_terminating", "kernel_terminated", "session_terminated"]

    # Already terminal: its events at once, then the end.
    replay = events(manager, manager.user).WatchSessionEvents(
        ev_pb.WatchSessionEventsRequest(session_ref=created.session.id))
    got = [m async for m in replay]
    assert got[0].HasField("subscribed")
    assert [m.event.name for m in got[1:]] == ["kernel_terminated", "session_terminated"]

    # Another user may not watch it.
    other = await add_user(manager, "other@localhost", Role.USER)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in events(manager, other).WatchSessionEvents(
                ev_pb.WatchSessionEventsRequest(session_ref=created.session.id)):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
