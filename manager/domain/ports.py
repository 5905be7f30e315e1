"""Ports: what the domain needs from the outside world (repositories, agents, event bus).

Adapters implement these Protocols; tests use the real adapters.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bai.manager.domain.events import Event
from bai.manager.domain.model import (
    AgentKernel,
    AgentRecord,
    AgentRegistration,
    AgentStatus,
    CreatedKernel,
    ExecInput,
    ExecOutput,
    ExecTarget,
    ImageRecord,
    KernelCreation,
    KernelRecord,
    KeypairInfo,
    LogChunk,
    NewSession,
    SessionRecord,
    SessionState,
    Slots,
)
from bai.manager.domain.placement import Placement

__all__ = [
    "AccountRepository",
    "AgentClient",
    "AgentRepository",
    "EventBus",
    "ImageRepository",
    "PageCursor",
    "PlaceOutcome",
    "SessionRepository",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Keyset position for newest-first listing: the last item's (created_at, id)."""

    created_at: datetime
    id: uuid.UUID


class PlaceOutcome(enum.Enum):
    PLACED = "placed"
    SESSION_GONE = "session_gone"
    """The session is no longer PENDING (or another scheduler holds it)."""
    AGENT_CHANGED = "agent_changed"
    """The agent is no longer ALIVE or no longer has room."""


class SessionRepository(Protocol):
    async def create(self, new: NewSession) -> SessionRecord:
        """Inserts a session, its kernels and its first history rows, in one transaction.

        Raises SessionNameTaken when a live session of the owner has the name, or
        DuplicateRequest when the owner already used the request_id.
        """
        ...

    async def get(self, session_id: uuid.UUID) -> SessionRecord | None: ...

    async def find_by_request_id(
        self, access_key: str, request_id: str
    ) -> SessionRecord | None: ...

    async def find_by_name(self, name: str, access_key: str | None) -> SessionRecord | None:
        """The live session of that name (any owner when access_key is None), else the newest."""
        ...

    async def exec_target(
        self, session_id: uuid.UUID | None, name: str | None, access_key: str | None
    ) -> ExecTarget | None:
        """Session, main kernel and agent address in one read: by id, or by name like
        find_by_name. Used on every execute, so it must stay a single statement."""
        ...

    async def list_sessions(
        self,
        access_key: str | None,
        states: frozenset[SessionState],
        limit: int,
        after: PageCursor | None,
    ) -> list[SessionRecord]:
        """Newest first; ``access_key`` None lists every owner's."""
        ...

    async def list_in_states(
        self, states: frozenset[SessionState], limit: int
    ) -> list[SessionRecord]:
        """Oldest first (FIFO order)."""
        ...

    async def transition(
        self,
        session_id: uuid.UUID,
        sources: frozenset[SessionState],
        target: SessionState,
        reason: str,
        message: str,
        *,
        at: datetime,
        exit_code: int | None = None,
        container_ids: Mapping[uuid.UUID, str] | None = None,
    ) -> SessionRecord:
        """Moves the session from one of ``sources`` to ``target`` in one transaction.

        Writes the history row; a terminal target releases the kernels' slots on their agents
        and frees the live name. Raises SessionNotFound, or IllegalTransition (nothing changed)
        when the current state is not among ``sources``.
        """
        ...

    async def set_pending_reason(self, session_id: uuid.UUID, reason: str, message: str) -> None:
        """Updates why a PENDING session waits (no history row; no-op if not PENDING)."""
        ...

    async def place(
        self, session_id: uuid.UUID, agent_id: str, slots: Slots, at: datetime
    ) -> PlaceOutcome:
        """PENDING → SCHEDULED on ``agent_id`` with ``slots`` reserved, in one transaction."""
        ...

    async def place_many(
        self, placements: Sequence[Placement], at: datetime
    ) -> dict[uuid.UUID, PlaceOutcome]:
        """Many placements in one transaction; the outcome of each (see place_batch)."""
        ...

    async def kernels_on_agent(self, agent_id: str) -> list[tuple[KernelRecord, SessionRecord]]:
        """Kernels placed on the agent whose sessions are live."""
        ...

    async def find_kernel(
        self, kernel_id: uuid.UUID
    ) -> tuple[KernelRecord, SessionRecord] | None: ...


class AgentRepository(Protocol):
    async def register(self, reg: AgentRegistration, at: datetime) -> AgentRecord:
        """Upserts the agent as ALIVE and replaces the set of images it holds."""
        ...

    async def touch(self, agent_id: str, at: datetime) -> AgentStatus | None:
        """Records a message from the agent (LOST → ALIVE).

        Returns the status it had before (None when the agent is unknown).
        """
        ...

    async def touch_many(self, seen: Mapping[str, datetime]) -> list[str]:
        """Records the latest message time of each agent in one transaction (LOST → ALIVE);
        returns the ids of those that were LOST."""
        ...

    async def mark_lost(self, silent_since: datetime) -> list[str]:
        """Marks ALIVE agents with no message since ``silent_since`` as LOST; returns their ids."""
        ...

    async def get(self, agent_id: str) -> AgentRecord | None: ...

    async def list_alive(self) -> list[tuple[AgentRecord, frozenset[str]]]:
        """ALIVE agents with the refs of the images each holds."""
        ...


class ImageRepository(Protocol):
    async def list_images(self) -> list[ImageRecord]:
        """All known images, by ref, with the agents that hold them."""
        ...


class AccountRepository(Protocol):
    async def get_keypair(self, access_key: str) -> KeypairInfo | None: ...

    async def project_exists(self, domain: str, project: str) -> bool: ...


class AgentClient(Protocol):
    """Calls to an agent's AgentService; failures raise bai.common.errors (Unavailable, …)."""

    async def create_kernel(self, address: str, spec: KernelCreation) -> CreatedKernel: ...

    async def destroy_kernel(self, address: str, kernel_id: str, reason: str) -> int: ...

    async def destroy_kernels(
        self, address: str, kernels: Sequence[tuple[str, str]]
    ) -> list[tuple[str, int, str]]:
        """Destroys ``(kernel id, reason)``s in one call; ``(kernel id, exit code, error)``
        each, error "" when the kernel is gone."""
        ...

    async def restart_kernel(self, address: str, kernel_id: str) -> CreatedKernel: ...

    async def interrupt_kernel(self, address: str, kernel_id: str) -> None: ...

    async def list_kernels(self, address: str) -> list[AgentKernel]: ...

    def execute(self, address: str, kernel_id: str, inp: ExecInput) -> AsyncIterator[ExecOutput]:
        ...

    def stream_logs(
        self, address: str, kernel_id: str, follow: bool, tail_lines: int
    ) -> AsyncIterator[LogChunk]: ...


class Subscription(Protocol):
    async def next(self, wait: float) -> Event | None:
        """The next event, or None when ``wait`` seconds pass without one."""
        ...


class EventBus(Protocol):
    """Fan-out of domain events: every subscriber sees every event published after it joined."""

    async def publish(self, event: Event) -> None: ...

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]: ...


