"""Accelerator plugins: devices an agent offers as extra resource slots.

A plugin contributes slot names and amounts to the node's capacity; the manager derives each
slot's type from its name (``<x>.device``: whole devices, ``<x>.shares``: fractions, see
bai.manager.domain.slots). Only a mock CUDA plugin exists here (no GPU on these machines): it
offers ``cuda.device`` (whole GPUs) and ``cuda.shares`` (fractional GPU, Backend.AI's fGPU) so
scheduling of accelerator slots is exercised end to end; it does not attach devices to
containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["MockCudaPlugin", "parse_mock_accelerator"]


@dataclass(frozen=True)
class MockCudaPlugin:
    devices: int
    """Whole GPUs offered."""
    shares_per_device: Decimal = Decimal(1)
    """Fractional-GPU shares per device."""

    def slots(self) -> dict[str, Decimal]:
        if self.devices <= 0:
            return {}
        return {"cuda.device": Decimal(self.devices),
                "cuda.shares": Decimal(self.devices) * self.shares_per_device}


def parse_mock_accelerator(text: str) -> MockCudaPlugin:
    """``DEVICES[:SHARES_PER_DEVICE]``, e.g. ``2`` or ``2:4``."""
    devices, _, shares = text.strip().partition(":")
    try:
        count = int(devices)
        per = Decimal(shares) if shares else Decimal(1)
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"not DEVICES[:SHARES_PER_DEVICE]: {text!r}") from exc
    if count < 0 or not per.is_finite() or per <= 0:
        raise ValueError(f"devices must be >= 0 and shares > 0: {text!r}")
    return MockCudaPlugin(count, per)
