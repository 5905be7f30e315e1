"""Resource slots: parsing decimal-string slot maps, node capacity and occupancy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from bai.common.errors import InvalidArgument, ResourceExhausted

__all__ = ["DEFAULT_SLOTS", "Capacity", "parse_mem", "resolve_slots", "sum_slots"]

DEFAULT_SLOTS: Mapping[str, str] = {"cpu": "1", "mem": str(1 << 30)}
"""Slots a request gets when it names none (one core, 1 GiB)."""

_MEM_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_mem(text: str) -> int:
    """Bytes from ``123``, ``512m``, ``4g``, ``4GiB`` (binary suffixes k/m/g/t)."""
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = _MEM_UNITS.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in _MEM_UNITS else raw
    try:
        value = Decimal(number) * scale
    except InvalidOperation as exc:
        raise ValueError(f"not a memory size: {text!r}") from exc
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise ValueError(f"not a positive whole number of bytes: {text!r}")
    return int(value)


def _decimal(key: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidArgument(f"slot {key!r}: not a decimal number: {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise InvalidArgument(f"slot {key!r}: must be a finite non-negative number: {text!r}")
    return value


def _format(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


@dataclass(frozen=True)
class Capacity:
    """What the node offers."""

    cpu: Decimal
    """CPU cores."""
    mem: int
    """Memory bytes."""
    accelerators: Mapping[str, Decimal] = field(default_factory=dict)
    """Slots contributed by accelerator plugins (e.g. cuda.device, cuda.shares)."""

    def as_slots(self) -> dict[str, str]:
        extra = {k: _format(v) for k, v in sorted(self.accelerators.items())}
        return {"cpu": _format(self.cpu), "mem": str(self.mem), **extra}

    def check_fits(self, occupied: Mapping[str, str], requested: Mapping[str, str]) -> None:
        """Raises ResourceExhausted when ``requested`` does not fit next to ``occupied``."""
        offered = {k: Decimal(v) for k, v in self.as_slots().items()}
        for key, text in requested.items():
            want = Decimal(text)
            if want == 0:
                continue
            if key not in offered:
                raise ResourceExhausted(
                    f"this node offers no {key!r} slots", reason="SLOT_UNAVAILABLE"
                )
            used = Decimal(occupied.get(key, "0"))
            if used + want > offered[key]:
                raise ResourceExhausted(
                    f"not enough {key}: {_format(offered[key] - used)} free, {text} requested",
                    reason="INSUFFICIENT_RESOURCES",
                )


def resolve_slots(requested: Mapping[str, str]) -> dict[str, str]:
    """Validated, normalized slots (decimal strings; "mem" in bytes), defaults filled in."""
    slots = {**DEFAULT_SLOTS, **requested}
    resolved: dict[str, str] = {}
    for key, text in slots.items():
        if key == "mem":
            try:
                resolved[key] = str(parse_mem(text))
            except ValueError as exc:
                raise InvalidArgument(f"slot 'mem': {exc}") from exc
        else:
            resolved[key] = _format(_decimal(key, text))
    if Decimal(resolved["cpu"]) <= 0:
        raise InvalidArgument("slot 'cpu' must be positive")
    return resolved


def sum_slots(slot_maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Key-wise sum of slot maps."""
    total: dict[str, Decimal] = {}
    for slots in slot_maps:
        for key, text in slots.items():
            total[key] = total.get(key, Decimal(0)) + Decimal(text)
    return {key: _format(value) for key, value in total.items()}
