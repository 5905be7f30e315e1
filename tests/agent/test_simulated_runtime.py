"""The simulated runtime behind a real AgentService: no containers, deterministic behaviour."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from bai.agent.config import parse_argv
from bai.agent.domain.model import ExecMode, ExecRequest, KernelRequest, KernelState
from bai.agent.domain.service import AgentService
from bai.agent.domain.slots import Capacity
from bai.agent.runtime.simulated import DEFAULT_SIM_IMAGE, SimulatedKernelRuntime
from bai.common.errors import NotFound, ResourceExhausted


def _service() -> AgentService:
    runtime = SimulatedKernelRuntime()
    return AgentService(agent_id="sim-00001", kernel_root=Path("/nonexistent/sim"),
                        capacity=Capacity(cpu=Decimal(2), mem=4 << 30), runtime=runtime,
                        connect_runner=runtime.connect_runner)


def _request(image: str = DEFAULT_SIM_IMAGE, cpu: str = "1") -> KernelRequest:
    return KernelRequest(kernel_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), image=image,
                         slots={"cpu": cpu, "mem": str(1 << 30)})


async def test_kernels_start_at_once_echo_and_are_destroyed() -> None:
    service = _service()
    await service.start()
    assert [i.ref for i in await service.kernel_images()] == [DEFAULT_SIM_IMAGE]
    request = _request()
    report = await service.create_kernel(request)
    assert report.state is KernelState.RUNNING
    assert report.container_id == "sim-" + request.kernel_id.replace("-", "")
    events = [e async for e in service.execute(
        ExecRequest(kernel_id=request.kernel_id, mode=ExecMode.QUERY, code="print(1)"))]
    assert [(e.stream, e.data) for e in events if e.data] == [("stdout", "print(1)")]
    assert events[-1].finished and events[-1].exit_code == 0
    assert [c async for c in service.logs(request.kernel_id, follow=False, tail=0)] == []
    assert service.occupied() == {"cpu": "1", "mem": str(1 << 30)}
    with pytest.raises(ResourceExhausted):
        await service.create_kernel(_request(cpu="2"))
    assert await service.destroy_kernel(request.kernel_id) == 0
    assert service.list_kernels() == []
    with pytest.raises(NotFound):
        await service.create_kernel(_request(image="missing:latest"))
    await service.close()


def test_cli_selects_the_simulated_runtime_and_the_fleet() -> None:
    serve = parse_argv(["serve", "--service-token", "t", "--runtime", "simulated"], env={})
    assert serve.runtime == "simulated"
    sim = parse_argv(["simulate", "--service-token", "t", "--count", "5000", "--cpu", "4"],
                     env={})
    assert (sim.count, sim.cpu, sim.prefix) == (5000, Decimal(4), "sim-")
