"""Cluster kernels on one agent (network sharing) and batched destruction, over real gRPC on
the simulated runtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from bai.agent.domain import AgentService, Capacity
from bai.agent.runtime.simulated import DEFAULT_SIM_IMAGE, SimulatedKernelRuntime
from bai.agent.server import start_server
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import agent_service_pb2_grpc as pb_grpc

TOKEN = "cluster-token"
META = ((SERVICE_TOKEN_KEY, TOKEN),)


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Any, SimulatedKernelRuntime, AgentService]]:
    runtime = SimulatedKernelRuntime()
    service = AgentService(agent_id="sim-cluster", kernel_root=Path("/nonexistent"),
                           capacity=Capacity(cpu=Decimal(8), mem=8 << 30), runtime=runtime,
                           connect_runner=runtime.connect_runner)
    server = await start_server(service, listen="127.0.0.1:0", service_token=TOKEN)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.AgentServiceStub(channel), runtime, service  # type: ignore[no-untyped-call]
    await server.server.stop(None)


def _request(**fields: Any) -> pb.CreateKernelRequest:
    return pb.CreateKernelRequest(kernel_id=fields.pop("kernel_id", str(uuid.uuid4())),
                                  session_id=fields.pop("session_id", str(uuid.uuid4())),
                                  image=DEFAULT_SIM_IMAGE, slots={"cpu": "1", "mem": "1073741824"},
                                  **fields)


async def test_sub_kernels_join_the_main_kernels_network(
    sim: tuple[Any, SimulatedKernelRuntime, AgentService],
) -> None:
    stub, runtime, service = sim
    main = await stub.CreateKernel(_request(cluster_role="main", cluster_idx=1,
                                            cluster_hostnames=["main1", "sub1"]), metadata=META)
    sub = await stub.CreateKernel(_request(cluster_role="sub", cluster_idx=1,
                                           network_kernel_id=main.kernel.kernel_id),
                                  metadata=META)
    assert runtime.specs[sub.kernel.kernel_id].network_container_id == main.kernel.container_id
    assert runtime.specs[main.kernel.kernel_id].cluster_hostnames == ("main1", "sub1")

    reply = await stub.DestroyKernels(pb.DestroyKernelsRequest(kernels=[
        pb.DestroyKernelRequest(kernel_id=main.kernel.kernel_id, reason="done"),
        pb.DestroyKernelRequest(kernel_id=sub.kernel.kernel_id, reason="done"),
        pb.DestroyKernelRequest(kernel_id=str(uuid.uuid4()), reason="unknown is fine"),
    ]), metadata=META)
    assert [r.kernel_id for r in reply.results][:2] == [main.kernel.kernel_id,
                                                       sub.kernel.kernel_id]
    assert all(r.error == "" for r in reply.results)
    assert service.list_kernels() == []


async def test_joining_a_missing_kernel_or_a_bad_hostname_is_refused(
    sim: tuple[Any, SimulatedKernelRuntime, AgentService],
) -> None:
    stub, _, service = sim
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateKernel(_request(network_kernel_id=str(uuid.uuid4())), metadata=META)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "NETWORK_KERNEL_NOT_RUNNING" in str(caught.value.trailing_metadata())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateKernel(_request(cluster_hostnames=["bad host"]), metadata=META)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert service.list_kernels() == []  # nothing half-created


async def test_destroy_kernels_is_bounded(
    sim: tuple[Any, SimulatedKernelRuntime, AgentService],
) -> None:
    stub, _, _ = sim
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DestroyKernels(pb.DestroyKernelsRequest(kernels=[
            pb.DestroyKernelRequest(kernel_id=str(uuid.uuid4())) for _ in range(1001)]),
            metadata=META)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
