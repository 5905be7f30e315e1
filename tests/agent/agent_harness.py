"""Agent test helpers: a real AgentService over real Docker behind a real grpc.aio server."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiodocker
import grpc
from bai.agent.config import DEFAULT_RUNNER_DIR
from bai.agent.domain import AgentService, Capacity
from bai.agent.runtime import DockerKernelRuntime, DockerRuntimeConfig, connect_runner
from bai.agent.server import AgentServer, start_server
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import agent_service_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2

IMAGE = "bai/python:3.11-debian12"
TOKEN = "agent-test-token"


async def remove_agent_containers(docker: aiodocker.Docker, agent_id: str) -> None:
    """Finalizer: every container of this agent id goes, whatever the test did."""
    filters = json.dumps({"label": [f"ai.bai.agent-id={agent_id}"]})
    for container in await docker.containers.list(all=True, filters=filters):
        await container.delete(force=True)


async def containers_of(docker: aiodocker.Docker, **labels: str) -> list[dict[str, Any]]:
    wanted = [f"ai.bai.{key.replace('_', '-')}={value}" for key, value in labels.items()]
    found = await docker.containers.list(all=True, filters=json.dumps({"label": wanted}))
    return [await c.show() for c in found]


@dataclass
class Agent:
    """One agent (domain + server) and a client stub that carries the service token."""

    agent_id: str
    kernel_root: Path
    service: AgentService
    server: AgentServer
    channel: grpc.aio.Channel
    stub: Any
    kernels: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def metadata(self, token: str = TOKEN) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN_KEY, token),)

    async def create(self, *, mem: str = str(256 << 20), **fields: Any) -> pb.CreateKernelResponse:
        kernel_id = fields.pop("kernel_id", str(uuid.uuid4()))
        self.kernels.append(kernel_id)
        request = pb.CreateKernelRequest(
            kernel_id=kernel_id,
            session_id=fields.pop("session_id", str(uuid.uuid4())),
            image=fields.pop("image", IMAGE),
            slots=fields.pop("slots", {"cpu": "1", "mem": mem}),
            session_type=fields.pop("session_type", "interactive"),
            cluster_role=fields.pop("cluster_role", "main"),
            **fields,
        )
        response: pb.CreateKernelResponse = await self.stub.CreateKernel(
            request, metadata=self.metadata(), timeout=30
        )
        return response

    async def execute(
        self,
        kernel_id: str,
        code: str = "",
        *,
        mode: int = pb.EXECUTION_MODE_QUERY,
        run_id: str = "",
        max_wait: float | None = None,
        limit: float | None = None,
    ) -> list[pb.ExecuteResponse]:
        request = pb.ExecuteRequest(kernel_id=kernel_id, mode=mode, code=code, run_id=run_id)
        if max_wait is not None:
            request.max_wait.CopyFrom(duration(max_wait))
        if limit is not None:
            request.timeout.CopyFrom(duration(limit))
        call = self.stub.Execute(request, metadata=self.metadata(), timeout=30)
        return [response async for response in call]

    async def destroy(self, kernel_id: str) -> pb.DestroyKernelResponse:
        response: pb.DestroyKernelResponse = await self.stub.DestroyKernel(
            pb.DestroyKernelRequest(kernel_id=kernel_id, reason="test"),
            metadata=self.metadata(),
            timeout=30,
        )
        return response

    async def stop(self) -> None:
        """Stops serving and watching; kernels keep running (like an agent restart)."""
        if self.stopped:
            return
        self.stopped = True
        await self.channel.close()
        await self.server.server.stop(None)
        await self.service.close()


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(timedelta(seconds=seconds))
    return value


def text(responses: list[pb.ExecuteResponse], stream: str) -> str:
    return "".join(r.data for r in responses if r.stream == stream)


async def start_agent(
    agent_id: str,
    kernel_root: Path,
    docker: aiodocker.Docker,
    *,
    cpu: str = "4",
    runner_dir: Path = DEFAULT_RUNNER_DIR,
    ready_within: float = 20.0,
) -> Agent:
    runtime = DockerKernelRuntime(docker, DockerRuntimeConfig(runner_dir=runner_dir))
    service = AgentService(
        agent_id=agent_id,
        kernel_root=kernel_root,
        capacity=Capacity(cpu=Decimal(cpu), mem=8 << 30),
        runtime=runtime,
        connect_runner=connect_runner,
        runner_ready_timeout_s=ready_within,
    )
    await service.start()
    server = await start_server(service, listen="127.0.0.1:0", service_token=TOKEN)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    return Agent(
        agent_id=agent_id,
        kernel_root=kernel_root,
        service=service,
        server=server,
        channel=channel,
        stub=pb_grpc.AgentServiceStub(channel),
    )


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
