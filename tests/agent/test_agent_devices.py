"""Accelerator devices behind accelerator slots: which physical device a kernel gets.

The pool here is built from device records (no GPU on CI machines); the same DevicePool is what
the NVML discovery fills on a GPU node (tests/agent/test_agent_cuda_nvml.py checks that half
against a real driver where one exists)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import aiodocker
import pytest
from bai.agent.domain.devices import (
    AcceleratorDevice,
    DevicePool,
    assignment_from_label,
    assignment_to_label,
    visible_devices_environ,
)
from bai.agent.domain.model import ContainerSpec, KernelRequest, SessionType
from bai.agent.domain.service import AgentService
from bai.agent.domain.slots import Capacity
from bai.agent.runtime.docker import LABEL_DEVICES, DockerKernelRuntime, DockerRuntimeConfig
from bai.agent.runtime.simulated import DEFAULT_SIM_IMAGE, SimulatedKernelRuntime
from bai.common.errors import BaiError, ResourceExhausted

GPU0 = AcceleratorDevice("GPU-00000000-aaaa", 0, "Test GPU", 80 << 30)
GPU1 = AcceleratorDevice("GPU-11111111-bbbb", 1, "Test GPU", 80 << 30)


def _pool(shares: str = "1") -> DevicePool:
    return DevicePool("cuda", (GPU0, GPU1), Decimal(shares))


def test_a_pool_offers_its_devices_as_slots() -> None:
    assert _pool("4").slots() == {"cuda.device": Decimal(2), "cuda.shares": Decimal(8)}
    assert DevicePool("cuda", ()).slots() == {}


def test_whole_devices_go_to_untouched_devices_lowest_index_first() -> None:
    pool = _pool()
    first = pool.assign({"cuda.device": "1"}, [])
    assert first == {GPU0.uuid: Decimal(1)}
    both = pool.assign({"cuda.device": "2"}, [])
    assert both == {GPU0.uuid: Decimal(1), GPU1.uuid: Decimal(1)}
    second = pool.assign({"cuda.device": "1"}, [first])
    assert second == {GPU1.uuid: Decimal(1)}
    with pytest.raises(ResourceExhausted) as exc:
        pool.assign({"cuda.device": "1"}, [first, second])
    assert exc.value.reason == "INSUFFICIENT_DEVICES"
    assert pool.assign({"cpu": "1"}, [first, second]) == {}


def test_fractions_pack_onto_the_fullest_device_that_fits() -> None:
    pool = _pool()
    a = pool.assign({"cuda.shares": "0.5"}, [])
    assert a == {GPU0.uuid: Decimal("0.5")}
    b = pool.assign({"cuda.shares": "0.3"}, [a])  # GPU0 has 0.5 free, GPU1 1: pack onto GPU0
    assert b == {GPU0.uuid: Decimal("0.3")}
    c = pool.assign({"cuda.shares": "0.6"}, [a, b])  # only GPU1 holds 0.6
    assert c == {GPU1.uuid: Decimal("0.6")}
    with pytest.raises(ResourceExhausted) as exc:  # 0.2 + 0.4 free, but on two devices
        pool.assign({"cuda.shares": "0.5"}, [a, b, c])
    assert exc.value.reason == "INSUFFICIENT_DEVICES"
    with pytest.raises(ResourceExhausted):  # a touched device is not a whole device
        pool.assign({"cuda.device": "1"}, [a, c])
    with pytest.raises(ResourceExhausted) as span:
        pool.assign({"cuda.shares": "1.5"}, [])
    assert span.value.reason == "SHARES_SPAN_DEVICES"


def test_assignments_survive_the_container_label_round_trip() -> None:
    assignment = {GPU1.uuid: Decimal("0.25"), GPU0.uuid: Decimal(1)}
    label = assignment_to_label(assignment)
    assert label == f"{GPU0.uuid}=1,{GPU1.uuid}=0.25"
    assert assignment_from_label(label) == assignment
    assert assignment_from_label(f"garbage,{GPU0.uuid}=x,{GPU1.uuid}=0.5,=1") == {
        GPU1.uuid: Decimal("0.5")}
    assert visible_devices_environ(assignment)["CUDA_VISIBLE_DEVICES"] == (
        f"{GPU0.uuid},{GPU1.uuid}")
    assert visible_devices_environ({}) == {}


def _service(pool: DevicePool) -> tuple[AgentService, SimulatedKernelRuntime]:
    runtime = SimulatedKernelRuntime()
    service = AgentService(
        agent_id="gpu-node", kernel_root=Path("/nonexistent/gpu"),
        capacity=Capacity(cpu=Decimal(8), mem=16 << 30, accelerators=pool.slots()),
        runtime=runtime, connect_runner=runtime.connect_runner, device_pools=[pool])
    return service, runtime


def _request(**slots: str) -> KernelRequest:
    return KernelRequest(kernel_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()),
                         image=DEFAULT_SIM_IMAGE, slots={"cpu": "1", "mem": str(1 << 30), **slots})


async def test_the_agent_gives_each_kernel_its_own_device_and_frees_it_on_destroy() -> None:
    service, runtime = _service(_pool())
    await service.start()
    one, two = _request(**{"cuda.device": "1"}), _request(**{"cuda.device": "1"})
    await service.create_kernel(one)
    await service.create_kernel(two)
    given = [dict(runtime.specs[r.kernel_id].devices) for r in (one, two)]
    assert given == [{GPU0.uuid: Decimal(1)}, {GPU1.uuid: Decimal(1)}]
    with pytest.raises(ResourceExhausted):  # the capacity check refuses a third device
        await service.create_kernel(_request(**{"cuda.device": "1"}))
    await service.destroy_kernel(one.kernel_id)
    three = _request(**{"cuda.device": "1"})
    await service.create_kernel(three)
    assert dict(runtime.specs[three.kernel_id].devices) == {GPU0.uuid: Decimal(1)}
    plain = _request()
    await service.create_kernel(plain)
    assert dict(runtime.specs[plain.kernel_id].devices) == {}
    await service.close()


async def test_a_fraction_that_no_single_device_holds_is_refused_and_leaves_nothing() -> None:
    service, runtime = _service(_pool())
    await service.start()
    for share in ("0.6", "0.6"):
        await service.create_kernel(_request(**{"cuda.shares": share}))
    # 0.8 shares are free in total (capacity says yes), but 0.4 on each device.
    bad = _request(**{"cuda.shares": "0.5"})
    with pytest.raises(ResourceExhausted) as exc:
        await service.create_kernel(bad)
    assert exc.value.reason == "INSUFFICIENT_DEVICES"
    assert bad.kernel_id not in runtime.specs
    assert len(service.list_kernels()) == 2
    await service.close()


def _spec(devices: dict[str, Decimal]) -> ContainerSpec:
    kernel_id = str(uuid.uuid4())
    return ContainerSpec(
        kernel_id=kernel_id, session_id=str(uuid.uuid4()), agent_id="gpu-node",
        image="bai/python:3.11-debian12", cpu="1", mem=256 << 20, slots={"cpu": "1"},
        environ={}, session_type=SessionType.INTERACTIVE, cluster_role="main", cluster_idx=0,
        scratch_dir=Path(f"/tmp/bai-test-devices-{kernel_id[:8]}"), devices=devices)


async def test_docker_attaches_devices_by_uuid_and_labels_them(
    docker: aiodocker.Docker,
) -> None:
    runtime = DockerKernelRuntime(docker, DockerRuntimeConfig(runner_dir=Path("/tmp")))
    config = runtime._container_config(_spec({GPU1.uuid: Decimal("0.5")}))
    host = config["HostConfig"]
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "DeviceIDs": [GPU1.uuid],
                                       "Capabilities": [["gpu", "compute", "utility"]]}]
    assert f"CUDA_VISIBLE_DEVICES={GPU1.uuid}" in config["Env"]
    assert config["Labels"][LABEL_DEVICES] == f"{GPU1.uuid}=0.5"
    plain = runtime._container_config(_spec({}))
    assert "DeviceRequests" not in plain["HostConfig"] and LABEL_DEVICES not in plain["Labels"]
    info = DockerKernelRuntime._info({"Id": "c1", "Config": {"Labels": config["Labels"]},
                                      "State": {"Running": True}})
    assert dict(info.devices) == {GPU1.uuid: Decimal("0.5")}


async def test_an_engine_without_the_nvidia_toolkit_refuses_and_keeps_no_container(
    docker: aiodocker.Docker,
) -> None:
    engine = await docker.system.info()
    if "nvidia" in json.dumps(engine.get("Runtimes", {})).lower():
        pytest.skip("this engine has the NVIDIA runtime")
    runtime = DockerKernelRuntime(docker, DockerRuntimeConfig(runner_dir=Path("/tmp")))
    spec = _spec({GPU0.uuid: Decimal(1)})
    with pytest.raises(BaiError):
        await runtime.create(spec)
    left = await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"ai.bai.kernel-id={spec.kernel_id}"]}))
    assert left == []
