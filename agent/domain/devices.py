"""Which accelerator devices a kernel gets, derived from the kernels already running.

The manager schedules accelerator *amounts* (``cuda.device``: whole devices, ``cuda.shares``:
fractions of one, Backend.AI's fGPU); the agent decides *which* physical devices back them. An
assignment is a map device UUID → share of that device (1 for a whole device, in
``shares_per_device`` units). Nothing is kept beside the live kernels: what is free is what the
running kernels' assignments leave, so a restarted agent that re-adopts its kernels (their
assignment travels in a container label) knows exactly what is taken.

Placement rules: whole devices go to untouched devices, lowest index first; a fractional request
goes to the single device with the least free share that still fits (packing fractions together
keeps whole devices free for whole-device requests). A fractional request larger than one
device's shares is refused: Backend.AI's fGPU likewise never spans devices for one fraction.
Simplification: shares attach the device to the container; the compute/memory split between
kernels sharing a device is not enforced (that needs Backend.AI's CUDA hook library).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bai.common.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "AcceleratorDevice",
    "DevicePool",
    "assignment_from_label",
    "assignment_to_label",
    "visible_devices_environ",
]

Assignment = Mapping[str, Decimal]
"""Device UUID → share of it (``shares_per_device`` = the whole device)."""


@dataclass(frozen=True)
class AcceleratorDevice:
    """One physical device as its plugin discovered it."""

    uuid: str
    """Stable identity (NVML's ``GPU-…`` UUID); what containers are given."""
    index: int
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class DevicePool:
    """The devices of one plugin (slot prefix ``kind``, e.g. ``cuda``) on this node."""

    kind: str
    devices: Sequence[AcceleratorDevice]
    shares_per_device: Decimal = Decimal(1)

    def slots(self) -> dict[str, Decimal]:
        """What this node offers the scheduler for these devices."""
        if not self.devices:
            return {}
        count = Decimal(len(self.devices))
        return {f"{self.kind}.device": count, f"{self.kind}.shares": count * self.shares_per_device}

    def assign(self, slots: Mapping[str, str], taken: Iterable[Assignment]) -> dict[str, Decimal]:
        """Devices for a kernel asking for ``slots`` next to the ``taken`` assignments.

        Raises ResourceExhausted when the amounts cannot be backed by actual devices (e.g. the
        free shares are spread over devices so that no single one holds the fraction)."""
        whole = _amount(slots, f"{self.kind}.device")
        shares = _amount(slots, f"{self.kind}.shares")
        if whole != whole.to_integral_value():
            raise InvalidArgument(f"{self.kind}.device must be a whole number, got {whole}",
                                  reason="INVALID_SLOTS")
        used = self._used(taken)
        assignment: dict[str, Decimal] = {}
        free_whole = [d for d in self.devices if used[d.uuid] == 0]
        if whole > len(free_whole):
            raise ResourceExhausted(
                f"{whole} whole {self.kind} device(s) requested, {len(free_whole)} untouched",
                reason="INSUFFICIENT_DEVICES")
        for device in free_whole[: int(whole)]:
            assignment[device.uuid] = self.shares_per_device
            used[device.uuid] = self.shares_per_device
        if shares > 0:
            if shares > self.shares_per_device:
                raise ResourceExhausted(
                    f"{shares} {self.kind} shares exceed one device ({self.shares_per_device}); "
                    f"ask for whole devices ({self.kind}.device) instead",
                    reason="SHARES_SPAN_DEVICES")
            fits = [d for d in self.devices if self.shares_per_device - used[d.uuid] >= shares]
            if not fits:
                raise ResourceExhausted(
                    f"no single {self.kind} device has {shares} shares free",
                    reason="INSUFFICIENT_DEVICES")
            best = min(fits, key=lambda d: (self.shares_per_device - used[d.uuid], d.index))
            assignment[best.uuid] = assignment.get(best.uuid, Decimal(0)) + shares
        return assignment

    def _used(self, taken: Iterable[Assignment]) -> dict[str, Decimal]:
        used = {d.uuid: Decimal(0) for d in self.devices}
        for assignment in taken:
            for uuid, share in assignment.items():
                if uuid in used:  # a device that vanished since: nothing to account against
                    used[uuid] += share
        return used


def _amount(slots: Mapping[str, str], key: str) -> Decimal:
    try:
        return Decimal(slots.get(key, "0"))
    except InvalidOperation as exc:
        raise InvalidArgument(f"slot {key!r} is not a number", reason="INVALID_SLOTS") from exc


def assignment_to_label(assignment: Assignment) -> str:
    """``uuid=share,…`` for a container label (sorted, so equal assignments compare equal)."""
    return ",".join(f"{uuid}={format(share.normalize(), 'f')}"
                    for uuid, share in sorted(assignment.items()))


def assignment_from_label(text: str) -> dict[str, Decimal]:
    """The inverse of :func:`assignment_to_label`; malformed entries are skipped (a label written
    by an older agent must not stop re-adoption)."""
    assignment: dict[str, Decimal] = {}
    for item in filter(None, text.split(",")):
        uuid, _, share = item.partition("=")
        try:
            value = Decimal(share)
        except InvalidOperation:
            continue
        if uuid and value.is_finite() and value > 0:
            assignment[uuid] = value
    return assignment


def visible_devices_environ(assignment: Assignment) -> dict[str, str]:
    """The environment that limits CUDA programs to the assigned devices. CUDA accepts device
    UUIDs in CUDA_VISIBLE_DEVICES, so the value is right whether the container sees every GPU
    or (NVIDIA container toolkit) only the attached ones."""
    if not assignment:
        return {}
    uuids = ",".join(sorted(assignment))
    return {"CUDA_VISIBLE_DEVICES": uuids, "NVIDIA_VISIBLE_DEVICES": uuids}
