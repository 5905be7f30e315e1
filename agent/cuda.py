"""The CUDA accelerator plugin: NVIDIA GPUs discovered through NVML.

Discovery reads what the driver reports (index, UUID, name, memory) and nothing else; a machine
without the NVIDIA driver (no ``libnvidia-ml``) or without GPUs offers no CUDA slots, with the
reason logged, instead of failing the agent. Which devices a kernel gets is decided by
:class:`bai.agent.domain.devices.DevicePool`; the Docker runtime attaches them by UUID
(``DeviceRequests`` for the NVIDIA container toolkit, plus ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pynvml
from bai.agent.domain.devices import AcceleratorDevice, DevicePool

__all__ = ["CudaDiscovery", "cuda_device_pool", "discover_cuda_devices"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CudaDiscovery:
    devices: tuple[AcceleratorDevice, ...]
    driver_version: str
    """Empty when NVML could not be loaded."""
    error: str
    """Why no devices were found (empty when discovery worked)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover_cuda_devices() -> CudaDiscovery:
    """Every GPU NVML reports; never raises for a missing driver or library."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return CudaDiscovery((), "", f"NVML unavailable: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            devices.append(AcceleratorDevice(
                uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                index=index,
                name=_text(pynvml.nvmlDeviceGetName(handle)),
                memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            ))
    except pynvml.NVMLError as exc:
        return CudaDiscovery((), "", f"NVML query failed: {exc}")
    finally:
        pynvml.nvmlShutdown()
    return CudaDiscovery(tuple(devices), driver, "" if devices else "NVML reports no GPUs")


def cuda_device_pool(shares_per_device: Decimal = Decimal(1)) -> DevicePool:
    """The CUDA pool of this node (empty, with the reason logged, when there are no GPUs)."""
    found = discover_cuda_devices()
    if found.error:
        log.info("no CUDA devices offered: %s", found.error)
    for device in found.devices:
        log.info("CUDA device %d: %s (%s, %d MiB, driver %s)", device.index, device.name,
                 device.uuid, device.memory_bytes >> 20, found.driver_version)
    return DevicePool("cuda", found.devices, shares_per_device)
