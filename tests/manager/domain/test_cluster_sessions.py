"""Multi-kernel (single-node) cluster sessions on simulated agents over real gRPC.

One agent holds every kernel of a session; the subs join the main kernel's network namespace;
every kernel carries the cluster layout in its environment; placement and creation are
all-or-nothing; termination removes every kernel.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import grpc
import pytest
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from manager_harness import Harness

State = session_pb2.Session.State


async def _fleet(harness: Harness, count: int, cpu: int) -> SimulatedFleet:
    fleet = SimulatedFleet(FleetConfig(manager=harness.address, service_token=harness.token,
                                       count=count, cpu=Decimal(cpu), mem=16 << 30))
    await fleet.start()
    await fleet.wait_registered(20)
    return fleet


async def _wait_state(stub: object, session_id: str, state: int, within: float = 15) -> object:
    deadline = time.monotonic() + within
    while True:
        reply = await stub.GetSession(spb.GetSessionRequest(session_ref=session_id))  # type: ignore[attr-defined]
        if reply.session.status.state == state:
            return reply.session
        assert time.monotonic() < deadline, reply.session.status
        await asyncio.sleep(0.05)


def _create(size: int, cpu: str = "1", **kw: object) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(image="python", cluster_size=size, enqueue_only=True,
                                    resources={"cpu": cpu, "mem": "1g"}, **kw)  # type: ignore[arg-type]


async def test_three_kernels_on_one_agent_share_a_network_namespace(manager: Harness) -> None:
    fleet = await _fleet(manager, 3, cpu=4)
    try:
        stub = manager.sessions()
        created = (await stub.CreateSession(_create(3, name="clu-three"))).session
        session = await _wait_state(stub, created.id, State.STATE_RUNNING)
        kernels = sorted(session.kernels, key=lambda k: (k.cluster_role != "main", k.cluster_idx))  # type: ignore[attr-defined]
        assert [(k.cluster_role, k.cluster_idx) for k in kernels] == [
            ("main", 1), ("sub", 1), ("sub", 2)]
        assert len({k.agent_id for k in kernels}) == 1
        assert all(k.container_id for k in kernels)
        assert all(k.occupied_slots["cpu"] == "1" for k in kernels)
        agent = fleet.agents[kernels[0].agent_id]
        # The agent reserved the sum; the manager's record of the agent agrees.
        assert agent.service.occupied()["cpu"] in ("3", "3.0")
        specs = {kid: agent.runtime.specs[kid] for kid in (k.id for k in kernels)}
        main = specs[kernels[0].id]
        assert main.network_container_id == ""
        assert main.cluster_hostnames == ("main1", "sub1", "sub2")
        for kernel in kernels:
            spec = specs[kernel.id]
            env = spec.environ
            assert env["BACKENDAI_CLUSTER_SIZE"] == "3"
            assert env["BACKENDAI_CLUSTER_ROLE"] == kernel.cluster_role
            assert env["BACKENDAI_CLUSTER_IDX"] == str(kernel.cluster_idx)
            assert env["BACKENDAI_CLUSTER_HOST"] == f"{kernel.cluster_role}{kernel.cluster_idx}"
            assert env["BACKENDAI_CLUSTER_HOSTS"] == "main1,sub1,sub2"
            if kernel.cluster_role == "sub":
                assert spec.network_container_id == kernels[0].container_id
                assert spec.cluster_hostnames == ()

        with pytest.raises(grpc.aio.AioRpcError) as refused:  # subs share main's namespace
            await stub.RestartSession(spb.RestartSessionRequest(session_ref=created.id))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "CLUSTER_RESTART_UNSUPPORTED" in str(refused.value.trailing_metadata())

        done = await stub.DeleteSession(spb.DeleteSessionRequest(session_ref=created.id))
        assert done.session.status.state == State.STATE_TERMINATED
        assert agent.service.list_kernels() == []
        assert agent.service.occupied() == {}
    finally:
        await fleet.close()


async def test_placement_is_all_or_nothing(manager: Harness) -> None:
    """4 cpus free in total, but no single agent has 3: the session waits, saying why."""
    fleet = await _fleet(manager, 2, cpu=2)
    try:
        stub = manager.sessions()
        created = (await stub.CreateSession(_create(3))).session
        small = (await stub.CreateSession(_create(2))).session  # fits one agent: not blocked
        await _wait_state(stub, small.id, State.STATE_RUNNING)
        deadline = time.monotonic() + 10
        while True:
            got = (await stub.GetSession(spb.GetSessionRequest(session_ref=created.id))).session
            if got.status.reason == "InsufficientResources":
                break
            assert time.monotonic() < deadline, got.status
            await asyncio.sleep(0.05)
        assert got.status.state == State.STATE_PENDING
        assert "3 kernels on one agent" in got.status.message
        assert all(not k.agent_id for k in got.kernels)
        held = sorted(len(a.service.list_kernels()) for a in fleet.agents.values())
        assert held == [0, 2]
        cancelled = await stub.DeleteSession(spb.DeleteSessionRequest(session_ref=created.id))
        assert cancelled.session.status.state == State.STATE_CANCELLED
    finally:
        await fleet.close()


async def test_creation_is_all_or_nothing(manager: Harness) -> None:
    """A sub kernel fails to start: the main kernel that did start is destroyed too."""
    fleet = await _fleet(manager, 1, cpu=4)
    try:
        agent = next(iter(fleet.agents.values()))
        agent.runtime.fail_roles.add("sub")
        stub = manager.sessions()
        created = (await stub.CreateSession(_create(2))).session
        failed = await _wait_state(stub, created.id, State.STATE_ERROR)
        assert failed.status.reason == "KernelCreationFailed", failed.status  # type: ignore[attr-defined]
        assert "sub1" in failed.status.message  # type: ignore[attr-defined]
        assert agent.service.list_kernels() == []  # no orphaned main kernel
        assert agent.runtime.specs == {}
        # The slots came back: a fresh session fits again once the fault is gone.
        agent.runtime.fail_roles.clear()
        again = (await stub.CreateSession(_create(4, cpu="1"))).session
        await _wait_state(stub, again.id, State.STATE_RUNNING)
        assert len(agent.service.list_kernels()) == 4
    finally:
        await fleet.close()


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("cluster_size", 17, "UNSUPPORTED_CLUSTER_SIZE"),
    ("cluster_size", -1, "UNSUPPORTED_CLUSTER_SIZE"),
    ("cluster_mode", "multi-node", "UNSUPPORTED_CLUSTER_MODE"),
])
async def test_bad_cluster_requests_are_refused(
    manager: Harness, field: str, value: object, reason: str
) -> None:
    request = spb.CreateSessionRequest(image="python", enqueue_only=True, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.sessions().CreateSession(request)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason in str(caught.value.debug_error_string()) + str(caught.value.trailing_metadata())


# ---- real Docker: two kernels, one network namespace -------------------------------------

_MAIN_SERVER = """
import os, socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7777))
srv.listen()
def serve():
    while True:
        conn, _ = srv.accept()
        conn.sendall(("hello from " + os.environ["BACKENDAI_CLUSTER_HOST"]).encode())
        conn.close()
threading.Thread(target=serve, daemon=True).start()
print("listening")
"""

_SUB_CLIENT = """
import os, socket
for host in ("localhost", "main1"):
    with socket.create_connection((host, 7777), timeout=5) as s:
        print(host, "->", s.recv(100).decode())
print("env", *(os.environ[k] for k in ("BACKENDAI_CLUSTER_SIZE", "BACKENDAI_CLUSTER_ROLE",
      "BACKENDAI_CLUSTER_IDX", "BACKENDAI_CLUSTER_HOST", "BACKENDAI_CLUSTER_HOSTS")))
"""


async def _run(service: object, kernel_id: str, code: str) -> str:
    from bai.agent.domain.model import ExecMode, ExecRequest
    out = []
    async for event in service.execute(ExecRequest(kernel_id=kernel_id, mode=ExecMode.QUERY,  # type: ignore[attr-defined]
                                                   code=code, timeout_s=20)):
        out.append(event.data if event.stream in ("stdout", "stderr", "exception") else "")
    return "".join(out)


@pytest.mark.docker
async def test_docker_sub_kernel_reaches_main_over_localhost(
    manager: Harness, db_url: str
) -> None:
    """Docker is the point here, not the database: run once, on SQLite."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the Docker cluster test runs once (SQLite)")
    import shutil
    import tempfile
    import uuid
    from pathlib import Path

    import aiodocker
    from bai.agent.config import DEFAULT_RUNNER_DIR
    from bai.agent.domain import AgentService, Capacity
    from bai.agent.heartbeat import LinkConfig, ManagerLink
    from bai.agent.runtime import DockerKernelRuntime, DockerRuntimeConfig, connect_runner
    from bai.agent.server import start_server

    agent_id = "i-clu-" + uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bai-", dir="/tmp"))
    docker = aiodocker.Docker()
    service = AgentService(agent_id=agent_id, kernel_root=root,
                           capacity=Capacity(cpu=Decimal(2), mem=4 << 30),
                           runtime=DockerKernelRuntime(docker, DockerRuntimeConfig(
                               runner_dir=DEFAULT_RUNNER_DIR)),
                           connect_runner=connect_runner)
    await service.start()
    server = await start_server(service, listen="127.0.0.1:0", service_token=manager.token)
    link = ManagerLink(service, LinkConfig(manager=manager.address, service_token=manager.token,
                                           address=f"127.0.0.1:{server.port}"))
    link_task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.registered.wait(), 20)
        stub = manager.sessions()
        reply = await stub.CreateSession(spb.CreateSessionRequest(
            image="python", cluster_size=2, resources={"cpu": "0.5", "mem": "256m"},
            max_wait=_seconds(60)))
        session = reply.session
        assert session.status.state == State.STATE_RUNNING, session.status
        main = next(k for k in session.kernels if k.cluster_role == "main")
        sub = next(k for k in session.kernels if k.cluster_role == "sub")
        assert main.agent_id == sub.agent_id == agent_id

        assert "listening" in await _run(service, main.id, _MAIN_SERVER)
        out = await _run(service, sub.id, _SUB_CLIENT)
        assert "localhost -> hello from main1" in out, out
        assert "main1 -> hello from main1" in out, out
        assert "env 2 sub 1 sub1 main1,sub1" in out, out

        containers = await docker.containers.list(
            all=True, filters=json.dumps({"label": [f"ai.bai.session-id={session.id}"]}))
        assert len(containers) == 2
        done = await stub.DeleteSession(spb.DeleteSessionRequest(session_ref=session.id))
        assert done.session.status.state == State.STATE_TERMINATED
        containers = await docker.containers.list(
            all=True, filters=json.dumps({"label": [f"ai.bai.session-id={session.id}"]}))
        assert containers == []
    finally:
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        await server.server.stop(None)
        await service.close()
        for c in await docker.containers.list(
                all=True, filters=json.dumps({"label": [f"ai.bai.agent-id={agent_id}"]})):
            await c.delete(force=True)
        await docker.close()
        shutil.rmtree(root, ignore_errors=True)


def _seconds(value: float) -> object:
    from google.protobuf import duration_pb2
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(value * 1000))
    return d
