"""NVML discovery against whatever this machine really has.

Without the NVIDIA driver (CI) discovery must report no devices and why, and the agent offers no
CUDA slots. With a driver (run on a GPU machine: ``PYTHONPATH=.typecheck pytest --noconftest
tests/agent/test_agent_cuda_nvml.py``) the devices must match ``nvidia-smi``, and the environment
the agent gives a kernel must make CUDA see exactly the assigned device."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal

import pytest
from bai.agent.config import AgentConfig
from bai.agent.cuda import cuda_device_pool, discover_cuda_devices
from bai.agent.domain.devices import visible_devices_environ
from bai.common.errors import ResourceExhausted

HAS_GPU = shutil.which("nvidia-smi") is not None


def _smi() -> list[tuple[int, str, str, int]]:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total",
         "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True).stdout
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line]
    return [(int(i), u, n, int(m)) for i, u, n, m in rows]


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA driver")
def test_without_a_driver_discovery_finds_nothing_and_says_why() -> None:
    found = discover_cuda_devices()
    assert found.devices == () and "NVML" in found.error
    assert cuda_device_pool().slots() == {}
    from bai.agent.__main__ import _device_pools
    assert _device_pools(AgentConfig(service_token="t")) == []


@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU and driver")
def test_discovery_matches_nvidia_smi() -> None:
    found = discover_cuda_devices()
    assert found.error == "" and found.driver_version
    expected = _smi()
    assert [(d.index, d.uuid, d.name) for d in found.devices] == [
        (i, u, n) for i, u, n, _ in expected]
    for device, (_, _, _, mib) in zip(found.devices, expected, strict=True):
        assert device.memory_bytes >> 20 == mib
    pool = cuda_device_pool(Decimal(4))
    assert pool.slots() == {"cuda.device": Decimal(len(expected)),
                            "cuda.shares": Decimal(4 * len(expected))}


_PROBE = """
import json, torch
n = torch.cuda.device_count()
uuids = [str(torch.cuda.get_device_properties(i).uuid).lower().removeprefix("gpu-")
         for i in range(n)]
print(json.dumps({"count": n, "uuids": ["GPU-" + u for u in uuids]}))
"""


def _norm(nvml_uuid: str) -> str:
    return "GPU-" + nvml_uuid.lower().removeprefix("gpu-")


def _cuda_sees(environ: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"} | environ
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU and driver")
def test_the_assigned_device_is_the_one_cuda_sees() -> None:
    pytest.importorskip("torch")
    pool = cuda_device_pool(Decimal(2))
    last = pool.devices[-1]
    others = [{d.uuid: pool.shares_per_device} for d in pool.devices[:-1]]
    whole = pool.assign({"cuda.device": "1"}, others)
    assert whole == {last.uuid: Decimal(2)}
    seen = _cuda_sees(visible_devices_environ(whole))
    assert seen == {"count": 1, "uuids": [_norm(last.uuid)]}
    with pytest.raises(ResourceExhausted):
        pool.assign({"cuda.device": "1"}, [*others, whole])
    # Two half-device kernels share the last device; a third fraction finds no room.
    half_a = pool.assign({"cuda.shares": "1"}, others)
    half_b = pool.assign({"cuda.shares": "1"}, [*others, half_a])
    assert half_a == half_b == {last.uuid: Decimal(1)}
    assert _cuda_sees(visible_devices_environ(half_b))["uuids"] == [_norm(last.uuid)]
    with pytest.raises(ResourceExhausted):
        pool.assign({"cuda.shares": "1"}, [*others, half_a, half_b])
