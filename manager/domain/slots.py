"""Resource slot arithmetic in Decimal, and parsing of user-supplied amounts.

Slots travel as ``map<string,string>`` of decimal strings and live in the domain as
``dict[str, Decimal]``. Every slot has a type (Backend.AI's ``SlotTypes``), derived from its name
so that agent plugins can contribute new slots without a manager change:

* ``bytes``: ``mem`` and ``<device>.mem`` (e.g. ``cuda.mem``): whole bytes, takes the binary
  suffixes ``k``/``m``/``g``/``t`` ("512m");
* ``unique``: ``<device>.device`` (e.g. ``cuda.device``): whole devices that cannot be shared,
  so a request must be an integer;
* ``count``: everything else (``cpu``, ``cuda.shares``): any non-negative decimal amount.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from bai.manager.domain.errors import InvalidSlots
from bai.manager.domain.model import Slots

__all__ = [
    "SlotType",
    "add",
    "describe",
    "format_amount",
    "from_strings",
    "missing",
    "parse_amount",
    "parse_request",
    "scale",
    "slot_type",
    "sub",
    "to_strings",
]

_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_BYTES_RE = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[kmgtp]?)(?:i?b)?\s*$", re.I)
_SLOT_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[a-z0-9_:-]+)?$")


class SlotType(enum.StrEnum):
    """How a slot's amounts are counted (Backend.AI's slot types)."""

    COUNT = "count"
    BYTES = "bytes"
    UNIQUE = "unique"


def slot_type(slot: str) -> SlotType:
    """The type of a slot, by its name (see the module docstring)."""
    if slot == "mem" or slot.endswith(".mem"):
        return SlotType.BYTES
    if slot.endswith(".device"):
        return SlotType.UNIQUE
    return SlotType.COUNT


def parse_amount(slot: str, value: str) -> Decimal:
    """Parses one requested amount; a bytes slot takes a binary suffix, a unique slot must be
    a whole number of devices."""
    text = value.strip()
    kind = slot_type(slot)
    if kind is SlotType.BYTES:
        match = _BYTES_RE.match(text)
        if match is None:
            raise InvalidSlots(f"{slot}={value!r} is not a byte size (e.g. 536870912, 512m, 1g)")
        amount = Decimal(match["num"]) * _SUFFIX[match["unit"].lower()]
        return amount.to_integral_value(rounding="ROUND_FLOOR")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidSlots(f"{slot}={value!r} is not a decimal number") from exc
    if not amount.is_finite():
        raise InvalidSlots(f"{slot}={value!r} is not a finite number")
    if kind is SlotType.UNIQUE and amount != amount.to_integral_value():
        raise InvalidSlots(f"{slot}={value!r}: {slot} is a whole-device slot (unique), "
                           "it cannot be split", reason="FRACTIONAL_UNIQUE_SLOT")
    return amount


def parse_request(raw: Mapping[str, str]) -> Slots:
    """Parses a user's resource request; every amount must be > 0 (cpu, mem) or >= 0."""
    parsed: Slots = {}
    for slot, value in raw.items():
        name = slot.strip().lower()
        if not _SLOT_NAME_RE.match(name):
            raise InvalidSlots(f"unknown slot name {slot!r}")
        amount = parse_amount(name, value)
        if amount < 0 or (name in ("cpu", "mem") and amount <= 0):
            raise InvalidSlots(f"{name} must be greater than 0, got {value!r}")
        if amount > 0:
            parsed[name] = amount
    return parsed


def from_strings(raw: Mapping[str, str]) -> Slots:
    """Reads stored/reported decimal strings (no suffixes, no validation beyond Decimal)."""
    result: Slots = {}
    for key, value in raw.items():
        try:
            result[key] = Decimal(str(value))
        except InvalidOperation:
            continue
    return result


def format_amount(value: Decimal) -> str:
    """A canonical decimal string: no exponent, no trailing zeros ("2", "0.5", "1073741824")."""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def to_strings(slots: Mapping[str, Decimal]) -> dict[str, str]:
    return {key: format_amount(value) for key, value in sorted(slots.items())}


def add(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Slots:
    result = dict(a)
    for key, value in b.items():
        result[key] = result.get(key, Decimal(0)) + value
    return {k: v for k, v in result.items() if v != 0}


def sub(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Slots:
    """``a - b``, never below zero per slot (a release never makes occupancy negative)."""
    result = dict(a)
    for key, value in b.items():
        result[key] = max(Decimal(0), result.get(key, Decimal(0)) - value)
    return {k: v for k, v in result.items() if v != 0}


def scale(a: Mapping[str, Decimal], factor: int) -> Slots:
    """Every amount of ``a`` times ``factor`` (the kernels of a cluster session together)."""
    return {k: v * factor for k, v in a.items()}


def missing(free: Mapping[str, Decimal], request: Mapping[str, Decimal]) -> Slots:
    """Per slot, how much ``request`` exceeds ``free`` (empty when it fits)."""
    return {
        key: amount - free.get(key, Decimal(0))
        for key, amount in request.items()
        if amount > free.get(key, Decimal(0))
    }


def describe(request: Mapping[str, Decimal]) -> str:
    """``cpu=2, mem=1g`` (memory in the largest exact binary unit)."""
    return ", ".join(f"{k}={_human(k, v)}" for k, v in sorted(request.items()))


def _human(slot: str, value: Decimal) -> str:
    if slot_type(slot) is SlotType.BYTES and value > 0:
        for unit in ("t", "g", "m", "k"):
            size = _SUFFIX[unit]
            if value % size == 0:
                return f"{value // size}{unit}"
    return format_amount(value)
