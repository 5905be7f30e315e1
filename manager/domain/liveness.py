"""Cheap in-memory bookkeeping for hot paths, flushed to the database in batches.

:class:`LatestTimes` is the one mechanism behind both the agents' last-message times (the
registry) and the sessions' last activity (idle timeout, :class:`ActivityTracker`): the hot path
records "key K was seen at T" as a dict store; a periodic flush drains the dict and writes it in
one statement, and puts it back when that write fails (newer entries win).

:class:`LiveKernel` and :class:`LivenessRepository` are what the registry needs to reconcile many
agents' kernel snapshots with one query instead of loading full session records per agent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from bai.manager.domain.model import (
    AgentRecord,
    AgentRegistration,
    SessionState,
    utcnow,
)

__all__ = ["LatestTimes", "LiveKernel", "LivenessRepository", "by_agent"]

K = TypeVar("K")


class LatestTimes(Generic[K]):
    """The latest time each key was seen since the last :meth:`drain` (a plain dict).

    Not thread-safe by design: it lives on one event loop, like everything that touches it.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[K, datetime] = {}

    def touch(self, key: K, at: datetime | None = None) -> None:
        self._seen[key] = at or utcnow()

    def drain(self) -> dict[K, datetime]:
        """Everything recorded since the last drain; the buffer starts empty again."""
        seen, self._seen = self._seen, {}
        return seen

    def restore(self, seen: Mapping[K, datetime]) -> None:
        """Puts back what a failed flush drained (entries recorded since then win)."""
        for key, at in seen.items():
            self._seen.setdefault(key, at)

    def discard(self, key: K) -> None:
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen


@dataclass(frozen=True, slots=True)
class LiveKernel:
    """A kernel placed on an agent whose session is live (what reconciliation compares)."""

    agent_id: str
    kernel_id: str
    session_id: uuid.UUID
    session_state: SessionState
    session_state_changed_at: datetime


class LivenessRepository(Protocol):
    """The agent-registry side of the agents table (implemented by SqlAgentRepository)."""

    async def register(self, reg: AgentRegistration, at: datetime) -> AgentRecord:
        """Upserts the agent as ALIVE and replaces the set of images it holds."""
        ...

    async def get(self, agent_id: str) -> AgentRecord | None: ...

    async def touch_many(self, seen: Mapping[str, datetime]) -> list[str]:
        """Writes each agent's last-message time (LOST → ALIVE); returns those that were LOST."""
        ...

    async def mark_lost(self, silent_since: datetime) -> list[str]:
        """Marks ALIVE agents silent since before ``silent_since`` LOST; returns their ids."""
        ...

    async def live_kernels(self, agent_ids: Sequence[str]) -> list[LiveKernel]:
        """Kernels placed on any of ``agent_ids`` whose sessions are live, in one query."""
        ...


def by_agent(kernels: Iterable[LiveKernel]) -> dict[str, list[LiveKernel]]:
    grouped: dict[str, list[LiveKernel]] = {}
    for kernel in kernels:
        grouped.setdefault(kernel.agent_id, []).append(kernel)
    return grouped
