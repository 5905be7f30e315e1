"""Facts about this host: CPU count, total memory, architecture."""

from __future__ import annotations

import os
import platform
from decimal import Decimal
from pathlib import Path

from bai.agent.domain.slots import Capacity

__all__ = ["architecture", "node_capacity", "total_memory"]


def total_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total RAM in bytes, from /proc/meminfo (or sysconf where that is missing)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def node_capacity(cpu: Decimal | None = None, mem: int | None = None) -> Capacity:
    """What the node offers: the configured values, else all of the host."""
    return Capacity(
        cpu=cpu if cpu is not None else Decimal(os.cpu_count() or 1),
        mem=mem if mem is not None else total_memory(),
    )


def architecture() -> str:
    """CPU architecture as the kernel names it, e.g. "x86_64"."""
    return platform.machine()
