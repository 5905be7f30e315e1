"""``--agent-listen``: the agent registry in its own process (bai.manager.registry_worker).

A real manager (in-process) starts a real ``python -m bai.manager serve-agents`` child on
PostgreSQL and a real Redis bus; a protocol agent streams heartbeats to the child only. What the
child learns (registration, liveness, LOST and back, kernel exits) must reach the manager's
scheduler and its user RPCs; a child that dies is restarted. On SQLite the option is refused
before anything is started.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from bai.manager.adapters.db import SqlAgentRepository
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as pb
from manager_harness import Harness, ProtocolAgent, eventually, manager_config, prepare_db
from postgres import free_port
from redis_server import RedisServer, start_redis

State = session_pb2.Session.State


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


async def _status_is(harness: Harness, agent_id: str, status: str) -> bool:
    agent = await SqlAgentRepository(harness.running.db).get(agent_id)
    return agent is not None and agent.status.value == status


async def _state_is(harness: Harness, ref: str, state: int) -> bool:
    reply = await harness.sessions().GetSession(pb.GetSessionRequest(session_ref=ref))
    return bool(reply.session.status.state == state)


async def test_heartbeats_on_the_registry_process_drive_the_manager(
    db_url: str, redis_server: RedisServer
) -> None:
    token = "tok-" + secrets.token_hex(8)
    config = manager_config(db_url, token, agent_listen=f"127.0.0.1:{free_port()}",
                            redis_url=redis_server.url)
    if db_url.startswith("sqlite"):
        with pytest.raises(ValueError, match="PostgreSQL"):
            async with run_manager(config):
                pass
        return
    admin, user = await prepare_db(db_url)
    async with run_manager(config) as running:
        harness = Harness(running=running, token=token, admin=admin, user=user, db_url=db_url)
        assert running.agent_address == config.agent_listen != running.address
        agent = await ProtocolAgent("w-" + secrets.token_hex(3), running.agent_address,
                                    token).start()
        try:
            assert agent.interval_ms == 200  # acked by the child, with the manager's settings
            await eventually(lambda: _true(len(agent.acks) >= 3))
            assert running.registry.heartbeats == 0  # none went through the main process

            # placed by the main process's scheduler onto the agent the child registered
            reply = await harness.sessions().CreateSession(pb.CreateSessionRequest(
                name="via-worker", image="python", session_type="batch",
                startup_command="exit 3"))
            session = reply.session
            assert session.status.state == State.STATE_RUNNING
            # the exit reaches the child's stream; the main process's GetSession sees it
            agent.send_exit(session.kernels[0].id, 3)
            await eventually(lambda: _state_is(harness, session.id, State.STATE_TERMINATED))

            agent.heartbeats = False  # the child's LOST checker notices, then the revival
            await eventually(lambda: _status_is(harness, agent.agent_id, "LOST"), within=8)
            agent.heartbeats = True
            await eventually(lambda: _status_is(harness, agent.agent_id, "ALIVE"), within=8)

            # a registry process that dies is restarted; the agent reconnects to it
            os.kill(_registry_pid(), signal.SIGKILL)
            await eventually(lambda: _reconnected(agent), within=30)
            acks = len(agent.acks)
            await eventually(lambda: _true(len(agent.acks) > acks))
        finally:
            await agent.stop()
            await harness.close()


def _registry_pid() -> int:
    """Our child running ``serve-agents`` (started by run_manager)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == os.getpid() and b"serve-agents" in cmdline:
            return int(entry.name)
    raise AssertionError("no registry process among our children")


async def _reconnected(agent: ProtocolAgent) -> bool:
    try:
        await agent.connect()
    except (TimeoutError, grpc.aio.AioRpcError):
        return False
    return True


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
