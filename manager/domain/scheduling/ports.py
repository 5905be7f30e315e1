"""What the scheduler reads and writes beyond sessions and agents (SQL adapter:
:mod:`bai.manager.adapters.db.scheduling`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bai.manager.domain.model import AgentRecord
from bai.manager.domain.scheduling.types import (
    Allocation,
    DependencyState,
    PendingSession,
    PolicyLimits,
    ResourceGroup,
    UsageSample,
)

__all__ = ["PendingNote", "SchedulingRepository"]


@dataclass(frozen=True, slots=True)
class PendingNote:
    """Why a PENDING session still waits."""

    session_id: uuid.UUID
    reason: str
    message: str
    new_reason: bool
    """True: the reason changed, so a history row is written too (scheduling history)."""


class SchedulingRepository(Protocol):
    async def pending(self, limit: int, group: str | None = None) -> list[PendingSession]:
        """PENDING sessions (of one resource group when given), highest priority first, then
        oldest first."""
        ...

    async def resource_groups(self) -> dict[str, ResourceGroup]: ...

    async def alive_agents(self) -> list[tuple[AgentRecord, frozenset[str]]]:
        """Every ALIVE agent with the image refs it holds (a pass's snapshot; the commit
        re-checks each placement against the agent's committed row)."""
        ...

    async def dependency_states(
        self, ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DependencyState]: ...

    async def limits(
        self, access_keys: Collection[str], users: Collection[str], projects: Collection[str]
    ) -> PolicyLimits:
        """The resource policies of these keys, users and ``domain/project`` names."""
        ...

    async def allocations(self) -> list[Allocation]:
        """What every placed, live session occupies (from its kernels' reserved slots)."""
        ...

    async def usage(self, since: datetime) -> list[UsageSample]:
        """Sessions that occupied slots at some time after ``since``."""
        ...

    async def weights(self) -> dict[tuple[str, str], Decimal]: ...

    async def pending_of(self, access_key: str) -> int:
        """How many PENDING sessions the access key has."""
        ...

    async def note_pending(self, notes: Sequence[PendingNote], at: datetime) -> list[uuid.UUID]:
        """Writes why each session waits (a history row when the reason changed), in one
        transaction; skips sessions no longer PENDING; returns the ids written."""
        ...
