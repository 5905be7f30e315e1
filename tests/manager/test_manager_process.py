"""The manager as a process: bootstrap, serve, health, graceful stop; restarts lose nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from bai.common import auth
from bai.manager.server import SERVICE_NAMES, run_manager
from bai.pb.agent.v1 import kernel_pb2
from bai.pb.manager.v1 import session_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from manager_harness import (
    Harness,
    ProtocolAgent,
    eventually,
    manager_config,
    prepare_db,
)
from postgres import free_port

State = spb.Session.State


def _manager(*args: str, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bai.manager", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_bootstrap_serve_health_and_sigterm(db_url: str, tmp_path: Path) -> None:
    access, secret = auth.generate_keypair()
    for _ in range(2):  # idempotent
        boot = _manager("bootstrap", "--db-url", db_url, "--access-key", access,
                        "--secret-key", secret, cwd=tmp_path)
        out, _ = boot.communicate(timeout=60)
        assert boot.returncode == 0, out.decode()
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "BAI_MANAGER_SERVICE_TOKEN": "env-token", "BAI_MANAGER_DB_URL": db_url}
    proc = _manager("serve", "--listen", address, env=env, cwd=tmp_path)
    try:
        statuses = asyncio.run(_health(address))
        assert set(statuses) == {"", *SERVICE_NAMES}
        assert set(statuses.values()) == {health_pb2.HealthCheckResponse.SERVING}
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out.decode()
        assert time.monotonic() - started < 15
        log = out.decode()
        assert "manager serving on" in log and "NOT_SERVING" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_without_service_token_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAI_MANAGER_")}
    proc = _manager("serve", "--db-url", f"sqlite+aiosqlite:///{tmp_path}/x.db", env=env)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and b"service-token" in out


async def _health(address: str) -> dict[str, int]:
    deadline = time.monotonic() + 30
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                statuses = {}
                for name in ("", *SERVICE_NAMES):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=name),
                                             timeout=2)
                    statuses[name] = reply.status
                return statuses
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def _get(harness: Harness, ref: str) -> spb.Session:
    return (await harness.sessions().GetSession(pb.GetSessionRequest(session_ref=ref))).session


async def test_restart_loses_no_session_and_resumes_creation(db_url: str) -> None:
    admin, user = await prepare_db(db_url)
    config = manager_config(db_url, "restart-token", listen=f"127.0.0.1:{free_port()}",
                            resume_grace=3.0)
    agent = ProtocolAgent("i-restart", config.listen, config.service_token, cpu="4")
    gone = ProtocolAgent("i-gone", config.listen, config.service_token, cpu="4",
                         images=("other/img:1",))
    try:
        async with run_manager(config) as running:
            h = Harness(running, config.service_token, admin, user, db_url)
            await agent.start()
            stub = h.sessions()
            running_one = (await stub.CreateSession(pb.CreateSessionRequest(
                name="keeps-running", image="python"))).session
            pending = (await stub.CreateSession(pb.CreateSessionRequest(
                name="stays-pending", image="python", enqueue_only=True,
                resources={"cpu": "64"}))).session
            agent.create_gate = asyncio.Event()
            redo = (await stub.CreateSession(pb.CreateSessionRequest(
                name="caught-creating", image="python", enqueue_only=True))).session
            await eventually(lambda: _is(h, redo.id, State.STATE_CREATING))
            await gone.start()
            orphan = (await stub.CreateSession(pb.CreateSessionRequest(
                name="agent-never-back", image="other/img:1", enqueue_only=True))).session
            gone.create_gate = asyncio.Event()
            await eventually(lambda: _is(h, orphan.id, State.STATE_CREATING))
            await h.close()
        # the manager is down; one agent never comes back
        await gone.stop()
        agent.create_gate.set()

        async with run_manager(config) as running:
            h = Harness(running, config.service_token, admin, user, db_url)
            assert (await _get(h, running_one.id)).status.state == State.STATE_RUNNING
            assert (await _get(h, pending.id)).status.state == State.STATE_PENDING
            await agent.connect()  # the agent's reconnect: a fresh registration snapshot
            await eventually(lambda: _is(h, redo.id, State.STATE_RUNNING))
            assert (await _get(h, running_one.id)).status.state == State.STATE_RUNNING
            got = await _get(h, pending.id)
            assert got.status.state == State.STATE_PENDING
            assert got.status.reason == "InsufficientResources"
            await eventually(lambda: _is(h, orphan.id, State.STATE_ERROR), within=15)
            failed = await _get(h, orphan.id)
            assert failed.status.reason == "AgentUnavailable"
            assert "i-gone" in failed.status.message
            await h.close()
    finally:
        await agent.stop()
        await gone.stop()


async def test_restart_adopts_a_kernel_created_while_the_manager_was_down(db_url: str) -> None:
    admin, user = await prepare_db(db_url)
    config = manager_config(db_url, "adopt-token", listen=f"127.0.0.1:{free_port()}")
    agent = ProtocolAgent("i-adopt", config.listen, config.service_token)
    try:
        async with run_manager(config) as running:
            h = Harness(running, config.service_token, admin, user, db_url)
            await agent.start()
            agent.create_gate = asyncio.Event()
            session = (await h.sessions().CreateSession(pb.CreateSessionRequest(
                name="adopt-me", image="python", enqueue_only=True))).session
            await eventually(lambda: _is(h, session.id, State.STATE_CREATING))
            await h.close()
        # the agent finished the creation on its own while the manager was away
        kernel_id = session.kernels[0].id
        agent.kernels[kernel_id] = kernel_pb2.Kernel(
            kernel_id=kernel_id, session_id=session.id, container_id="c-adopted",
            state=kernel_pb2.Kernel.STATE_RUNNING)
        calls = agent.create_calls
        async with run_manager(config) as running:
            h = Harness(running, config.service_token, admin, user, db_url)
            await agent.connect()
            await eventually(lambda: _is(h, session.id, State.STATE_RUNNING))
            got = await _get(h, session.id)
            assert got.status.reason == "KernelRecovered"
            assert got.kernels[0].container_id == "c-adopted"
            assert agent.create_calls == calls  # adopted, not created twice
            await h.close()
    finally:
        await agent.stop()


async def _is(h: Harness, ref: str, state: int) -> bool:
    return bool((await _get(h, ref)).status.state == state)
