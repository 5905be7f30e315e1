"""``python -m bai.agent serve``: the composition root as a real process."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import aiodocker
import grpc
import pytest
from agent_harness import IMAGE, TOKEN, containers_of, remove_agent_containers
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import agent_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_then_sigterm_keeps_kernels(docker: aiodocker.Docker) -> None:
    agent_id = "i-test-" + uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bai-", dir="/tmp"))
    listen = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "bai.agent", "serve", "--listen", listen]
    argv += ["--manager", f"127.0.0.1:{free_port()}", "--agent-id", agent_id]
    argv += ["--kernel-root", str(root), "--cpu", "2", "--mem", "4g"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAI_AGENT_")}
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**env, "BAI_AGENT_SERVICE_TOKEN": TOKEN}, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with grpc.aio.insecure_channel(listen) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="bai.agent.v1.AgentService")
            reply = await health.Check(check, wait_for_ready=True, timeout=20)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            kernel_id = str(uuid.uuid4())
            await pb_grpc.AgentServiceStub(channel).CreateKernel(
                pb.CreateKernelRequest(
                    kernel_id=kernel_id,
                    session_id=str(uuid.uuid4()),
                    image=IMAGE,
                    slots={"cpu": "1", "mem": str(256 << 20)},
                ),
                metadata=((SERVICE_TOKEN_KEY, TOKEN),),
                timeout=30,
            )
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        log = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert "shutting down; kernels keep running" in log
        (details,) = await containers_of(docker, kernel_id=kernel_id)
        assert details["State"]["Running"]  # the kernel outlives the agent
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await remove_agent_containers(docker, agent_id)
        await asyncio.to_thread(shutil.rmtree, root, True)
