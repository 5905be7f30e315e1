"""What the domain needs from outside: somewhere to keep circuits, a way to test ports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bai.appproxy.domain.model import Circuit

__all__ = ["CircuitStore", "PortProbe"]


class CircuitStore(Protocol):
    """Durable storage of the whole circuit table (small: one row per open app)."""

    async def load(self) -> list[Circuit]:
        """All stored circuits (empty when nothing was stored yet)."""
        ...

    async def save(self, circuits: Sequence[Circuit]) -> None:
        """Replaces the stored table atomically; returns once it is durable."""
        ...


class PortProbe(Protocol):
    """Tells whether a frontend port can be bound now (Envoy binds it a moment later)."""

    def __call__(self, port: int) -> bool: ...
