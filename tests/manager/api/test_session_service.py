"""SessionService over a real gRPC server, real database and a protocol-speaking agent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from bai.manager.adapters.db import SqlAgentRepository
from bai.pb.manager.v1 import session_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2 as pb
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from manager_harness import IMAGE, Harness, ProtocolAgent, eventually

State = spb.Session.State
StartAgent = Callable[..., Awaitable[ProtocolAgent]]


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.domain == "bai.manager"
    return info.reason


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromMilliseconds(int(value * 1000))
    return d


async def create(stub: Any, **kw: Any) -> pb.CreateSessionResponse:
    kw.setdefault("image", "python")
    kw.setdefault("resources", {"cpu": "1", "mem": "256m"})
    return await stub.CreateSession(pb.CreateSessionRequest(**kw), timeout=30)


async def test_create_waits_until_running_and_records_history(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents()
    stub = manager.sessions()
    reply = await create(stub, name="first-one", environ={"A": "1"})
    session = reply.session
    assert reply.created
    assert session.status.state == State.STATE_RUNNING, session.status
    assert session.spec.image == IMAGE  # the alias resolved to the canonical ref
    assert session.spec.resources == {"cpu": "1", "mem": str(256 << 20)}
    kernel = session.kernels[0]
    assert kernel.agent_id == agent.agent_id and kernel.container_id.startswith("c")
    assert kernel.occupied_slots == {"cpu": "1", "mem": str(256 << 20)}
    # a PENDING row per change of why it waits (scheduling history) may precede SCHEDULED
    states = [h.state for h in session.status.history if h.reason != "InsufficientResources"]
    assert states == [
        State.STATE_PENDING,
        State.STATE_SCHEDULED,
        State.STATE_PREPARING,
        State.STATE_CREATING,
        State.STATE_RUNNING,
    ]
    assert all(h.reason for h in session.status.history)
    assert session.status.conditions[0].type == "Ready"
    assert session.status.conditions[0].status == "True"
    created = agent.last_create
    assert created.image == IMAGE and created.slots == {"cpu": "1", "mem": str(256 << 20)}
    assert created.environ["A"] == "1"
    assert created.environ["BACKENDAI_SESSION_ID"] == session.id
    assert created.session_type == "interactive" and created.cluster_role == "main"

    got = await stub.GetSession(pb.GetSessionRequest(session_ref="first-one"))
    assert got.session.id == session.id
    got = await stub.GetSession(pb.GetSessionRequest(session_ref=session.id))
    assert got.session.name == "first-one"


async def test_defaults_come_from_image_minimum_or_one_core_one_gib(
    manager: Harness, agents: StartAgent
) -> None:
    await agents()
    reply = await create(manager.sessions(), resources={}, enqueue_only=True)
    assert reply.session.name.startswith("bai-")
    assert reply.session.spec.resources == {"cpu": "1", "mem": str(1 << 30)}


async def test_bad_requests_are_invalid_argument(manager: Harness) -> None:
    stub = manager.sessions()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "ab"}, "INVALID_SESSION_NAME"),
        ({"name": "bad name!"}, "INVALID_SESSION_NAME"),
        ({"session_type": "weird"}, "INVALID_SESSION_TYPE"),
        ({"session_type": "batch"}, "MISSING_STARTUP_COMMAND"),
        ({"cluster_size": 17}, "UNSUPPORTED_CLUSTER_SIZE"),
        ({"cluster_size": 2, "cluster_mode": "multi-node"}, "UNSUPPORTED_CLUSTER_MODE"),
        ({"resources": {"cpu": "0"}}, "INVALID_RESOURCE_SLOTS"),
        ({"resources": {"mem": "lots"}}, "INVALID_RESOURCE_SLOTS"),
        ({"resources": {"cpu": "-1"}}, "INVALID_RESOURCE_SLOTS"),
        ({"project": "nope"}, "PROJECT_NOT_FOUND"),
    ]
    for fields, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await create(stub, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert reason_of(err.value) == reason, fields


async def test_unknown_image_is_recorded_as_error_not_rejected(
    manager: Harness, agents: StartAgent
) -> None:
    await agents()
    reply = await create(manager.sessions(), image="no-such-image:0.0", name="img-missing")
    status = reply.session.status
    assert reply.created and status.state == State.STATE_ERROR
    assert status.reason == "ImageNotFound" and "no-such-image:0.0" in status.message
    assert "python" in status.message  # says what exists
    assert [h.state for h in status.history] == [State.STATE_PENDING, State.STATE_ERROR]
    # the name is free again: the session is not live
    again = await create(manager.sessions(), name="img-missing", enqueue_only=True)
    assert again.created and again.session.id != reply.session.id


async def test_agent_without_image_fails_creation_with_image_not_found(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents()
    agent.images = ()  # it reported the image, but no longer has it
    reply = await create(manager.sessions())
    assert reply.session.status.state == State.STATE_ERROR
    assert reply.session.status.reason == "ImageNotFound"
    assert agent.agent_id in reply.session.status.message


async def test_agent_error_fails_session_with_its_message_and_releases_slots(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents(cpu="1")
    agent.create_error = (grpc.StatusCode.INTERNAL, "container failed to start: boom")
    reply = await create(manager.sessions())
    assert reply.session.status.state == State.STATE_ERROR
    assert reply.session.status.reason == "KernelCreationFailed"
    assert "boom" in reply.session.status.message
    agent.create_error = None
    assert (await create(manager.sessions())).session.status.state == State.STATE_RUNNING


async def test_name_taken_reuse_and_request_id(manager: Harness, agents: StartAgent) -> None:
    await agents()
    stub = manager.sessions()
    first = await create(stub, name="dup-name", enqueue_only=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub, name="dup-name")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(err.value) == "SESSION_ALREADY_EXISTS"
    reused = await create(stub, name="dup-name", reuse_if_exists=True)
    assert not reused.created and reused.session.id == first.session.id
    # another user may use the same name
    other = await create(manager.sessions(manager.admin), name="dup-name", enqueue_only=True)
    assert other.created

    once = await create(stub, name="req-1", request_id="r-123", enqueue_only=True)
    retry = await create(stub, name="req-1", request_id="r-123", enqueue_only=True)
    assert once.created and not retry.created and retry.session.id == once.session.id


async def test_insufficient_resources_waits_pending_without_blocking_others(
    manager: Harness, agents: StartAgent
) -> None:
    await agents(cpu="2", mem=str(2 << 30))
    stub = manager.sessions()
    big = await create(stub, name="too-big", resources={"cpu": "8"}, max_wait=seconds(0.6))
    assert big.session.status.state == State.STATE_PENDING
    assert big.session.status.reason == "InsufficientResources"
    assert "cpu" in big.session.status.message
    small = await create(stub, name="fits-fine", resources={"cpu": "1", "mem": "1g"})
    assert small.session.status.state == State.STATE_RUNNING


async def test_list_pages_newest_first_and_filters_states(
    manager: Harness, agents: StartAgent
) -> None:
    await agents(cpu="0.5")  # knows the image; too small to run anything
    stub = manager.sessions()
    ids = [(await create(stub, name=f"list-{i}", enqueue_only=True)).session.id for i in range(5)]
    page = await stub.ListSessions(pb.ListSessionsRequest(page_size=2))
    seen = [s.id for s in page.sessions]
    while page.next_page_token:
        page = await stub.ListSessions(
            pb.ListSessionsRequest(page_size=2, page_token=page.next_page_token)
        )
        seen += [s.id for s in page.sessions]
    assert seen == ids[::-1]
    running = await stub.ListSessions(pb.ListSessionsRequest(states=[State.STATE_RUNNING]))
    assert list(running.sessions) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListSessions(pb.ListSessionsRequest(page_token="garbage!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_users_see_only_their_own_sessions_superadmin_sees_all(
    manager: Harness, agents: StartAgent
) -> None:
    await agents(cpu="0.5")
    mine = await create(manager.sessions(), name="private-1", enqueue_only=True)
    admin_stub = manager.sessions(manager.admin)
    theirs = await create(admin_stub, name="admins-1", enqueue_only=True)
    user_list = await manager.sessions().ListSessions(pb.ListSessionsRequest())
    assert [s.id for s in user_list.sessions] == [mine.session.id]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await manager.sessions().GetSession(pb.GetSessionRequest(session_ref=theirs.session.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    all_list = await admin_stub.ListSessions(pb.ListSessionsRequest())
    assert {s.id for s in all_list.sessions} == {mine.session.id, theirs.session.id}
    got = await admin_stub.GetSession(pb.GetSessionRequest(session_ref="private-1"))
    assert got.session.id == mine.session.id


async def test_delete_running_pending_unknown_and_again(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents(cpu="1")
    stub = manager.sessions()
    running = (await create(stub, name="to-delete")).session
    pending = (await create(stub, name="waits-1", enqueue_only=True)).session
    kernel_id = running.kernels[0].id

    done = await stub.DeleteSession(pb.DeleteSessionRequest(session_ref="to-delete"))
    assert done.session.status.state == State.STATE_TERMINATED
    assert [h.state for h in done.session.status.history][-2:] == [
        State.STATE_TERMINATING,
        State.STATE_TERMINATED,
    ]
    assert kernel_id in agent.destroyed and kernel_id not in agent.kernels
    # the released core lets the pending one run
    await eventually(lambda: _state_is(stub, pending.id, State.STATE_RUNNING))

    again = await stub.DeleteSession(pb.DeleteSessionRequest(session_ref=running.id))
    assert again.session.status.state == State.STATE_TERMINATED
    queued = (
        await create(stub, name="waits-2", enqueue_only=True, resources={"cpu": "64"})
    ).session
    cancelled = await stub.DeleteSession(pb.DeleteSessionRequest(session_ref=queued.id))
    assert cancelled.session.status.state == State.STATE_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeleteSession(pb.DeleteSessionRequest(session_ref="never-was"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def _state_is(stub: Any, session_id: str, state: int) -> bool:
    got = await stub.GetSession(pb.GetSessionRequest(session_ref=session_id))
    return bool(got.session.status.state == state)


async def test_delete_with_unreachable_agent_needs_forced(
    manager: Harness, agents: StartAgent
) -> None:
    agent = await agents()
    stub = manager.sessions()
    session = (await create(stub, name="agent-gone")).session
    await agent.stop()  # the agent process dies; the manager will mark it LOST
    await eventually(lambda: _agent_lost(manager, agent.agent_id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeleteSession(pb.DeleteSessionRequest(session_ref=session.id))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(err.value) == "AGENT_UNAVAILABLE"
    got = await stub.GetSession(pb.GetSessionRequest(session_ref=session.id))
    assert got.session.status.state == State.STATE_TERMINATING
    forced = await stub.DeleteSession(pb.DeleteSessionRequest(session_ref=session.id, forced=True))
    assert forced.session.status.state == State.STATE_TERMINATED
    assert "forced" in forced.session.status.message


async def _agent_lost(manager: Harness, agent_id: str) -> bool:
    agent = await SqlAgentRepository(manager.running.db).get(agent_id)
    return agent is not None and agent.status.value == "LOST"


async def test_execute_interrupt_logs_restart(manager: Harness, agents: StartAgent) -> None:
    agent = await agents()
    stub = manager.sessions()
    session = (await create(stub, name="exec-me")).session
    outputs = [
        o
        async for o in stub.ExecuteSession(
            pb.ExecuteSessionRequest(
                session_ref="exec-me", mode=pb.EXECUTION_MODE_BATCH, code="echo hi"
            )
        )
    ]
    assert outputs[0].stream == "stdout" and outputs[0].data == "ran echo hi\n"
    assert outputs[-1].finished and outputs[-1].exit_code == pb.EXECUTION_MODE_BATCH
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [
            o
            async for o in stub.ExecuteSession(
                pb.ExecuteSessionRequest(session_ref="exec-me", mode=pb.EXECUTION_MODE_CONTINUE)
            )
        ]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [o async for o in stub.ExecuteSession(pb.ExecuteSessionRequest(session_ref="exec-me"))]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    await stub.InterruptSession(pb.InterruptSessionRequest(session_ref=session.id))
    logs = [
        c.data
        async for c in stub.StreamSessionLogs(pb.StreamSessionLogsRequest(session_ref=session.id))
    ]
    assert logs == ["line 1\n", "line 2\n"]

    old = agent.kernels[session.kernels[0].id].container_id
    restarted = await stub.RestartSession(pb.RestartSessionRequest(session_ref=session.id))
    assert restarted.session.status.state == State.STATE_RUNNING
    assert restarted.session.status.reason == "Restarted"
    assert restarted.session.kernels[0].container_id not in ("", old)

    pending = (
        await create(stub, name="not-yet", enqueue_only=True, resources={"cpu": "64"})
    ).session
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [
            o
            async for o in stub.ExecuteSession(
                pb.ExecuteSessionRequest(
                    session_ref=pending.id, mode=pb.EXECUTION_MODE_QUERY, code="1"
                )
            )
        ]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [
            c
            async for c in stub.StreamSessionLogs(
                pb.StreamSessionLogsRequest(session_ref=pending.id)
            )
        ]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_batch_session_finishes_with_exit_code(manager: Harness, agents: StartAgent) -> None:
    agent = await agents(cpu="1")
    stub = manager.sessions()
    ok = (
        await create(
            stub,
            name="batch-ok",
            session_type="batch",
            startup_command="true",
            batch_timeout=seconds(30),
        )
    ).session
    assert agent.last_create.startup_command == "true"
    assert agent.last_create.batch_timeout.ToTimedelta().total_seconds() == 30
    agent.send_exit(ok.kernels[0].id, 0)
    await eventually(lambda: _state_is(stub, ok.id, State.STATE_TERMINATED))
    got = (await stub.GetSession(pb.GetSessionRequest(session_ref=ok.id))).session
    assert got.status.reason == "BatchFinished" and got.status.exit_code == 0
    assert got.status.conditions[0].type == "Succeeded"
    assert got.status.conditions[0].status == "True"
    await eventually(lambda: _true(ok.kernels[0].id in agent.destroyed))

    bad = (
        await create(stub, name="batch-bad", session_type="batch", startup_command="false")
    ).session  # the core was released
    assert bad.status.state == State.STATE_RUNNING
    agent.send_exit(bad.kernels[0].id, 3)
    await eventually(lambda: _state_is(stub, bad.id, State.STATE_TERMINATED))
    got = (await stub.GetSession(pb.GetSessionRequest(session_ref=bad.id))).session
    assert got.status.reason == "BatchFailed" and got.status.exit_code == 3
    assert got.status.conditions[0].status == "False"


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


async def test_monitor_is_read_only(manager: Harness) -> None:
    from bai.common import auth
    from bai.manager.adapters.db import Database
    from bai.manager.adapters.db.accounts import create_user
    from bai.manager.domain.model import Role
    from manager_harness import Keys

    keys = Keys(*auth.generate_keypair())
    db = Database(manager.db_url)
    await create_user(
        db,
        email="mon@localhost",
        access_key=keys.access_key,
        secret_key=keys.secret_key,
        role=Role.MONITOR,
    )
    await db.close()
    stub = manager.sessions(keys)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert list((await stub.ListSessions(pb.ListSessionsRequest())).sessions) == []
