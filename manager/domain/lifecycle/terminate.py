"""Termination: PENDING/SCHEDULED → CANCELLED; others → TERMINATING → (DestroyKernels) → TERMINATED.

Cancellation never calls an agent: a PENDING or SCHEDULED session has no kernel yet.

Success: CANCELLED or TERMINATED, slots released. Retry: when an agent does not answer, the
session stays TERMINATING (the engine retries while the agent is ALIVE) unless ``forced``, which
ignores agent errors. Already terminal sessions are returned unchanged (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict

from bai.manager.domain.errors import AgentUnavailable, IllegalTransition, SessionNotFound
from bai.manager.domain.lifecycle.batched_moves import BatchedMoves
from bai.manager.domain.lifecycle.destroyer import KernelDestroyer
from bai.manager.domain.model import (
    TERMINAL_STATES,
    AgentStatus,
    KernelRecord,
    SessionRecord,
    SessionState,
)
from bai.manager.domain.ports import AgentClient, AgentRepository, SessionRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["TerminateHandler"]

log = logging.getLogger(__name__)
S = SessionState
CANCELLABLE = frozenset({S.PENDING, S.SCHEDULED})
STOPPABLE = frozenset({S.PREPARING, S.PULLING, S.PREPARED, S.CREATING, S.RUNNING, S.RESTARTING})
_ATTEMPTS = 5


class TerminateHandler:
    consumes = frozenset({S.TERMINATING})

    def __init__(
        self,
        sessions: SessionRepository,
        agents: AgentRepository,
        client: AgentClient,
        moves: Transitions,
        destroyer: KernelDestroyer | None = None,
        batched: BatchedMoves | None = None,
    ) -> None:
        self._sessions = sessions
        self._agents = agents
        self._client = client
        self._moves = moves
        self._destroyer = destroyer or KernelDestroyer(client)
        self._batched = batched
        """When set, the moves of concurrent terminations are committed together."""

    async def terminate(
        self, session_id: uuid.UUID, *, forced: bool, reason: str, message: str,
        loaded: SessionRecord | None = None,
    ) -> SessionRecord:
        """Cancels or terminates the session; see the module docstring. ``loaded``: the
        session as the caller just read it (saves the first read; the state is checked by the
        transition anyway)."""
        for attempt in range(_ATTEMPTS):  # the state may change under us (scheduler, events)
            fresh = loaded is not None and attempt == 0 and loaded.id == session_id
            session = loaded if fresh else await self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound(f"session {session_id} not found")
            try:
                if session.state in TERMINAL_STATES:
                    return session
                if session.state in CANCELLABLE:
                    return await self._moves.move(session_id, CANCELLABLE, S.CANCELLED,
                                                  reason, message)
                if session.state is not S.TERMINATING:
                    session = await self._move(session_id, STOPPABLE, S.TERMINATING,
                                               reason, message)
                return await self.finish(session, forced=forced)
            except IllegalTransition:
                continue
        raise IllegalTransition(f"session {session_id} keeps changing state; try again")

    async def finish(self, session: SessionRecord, *, forced: bool) -> SessionRecord:
        """Destroys the kernels of a TERMINATING session, then marks it TERMINATED.

        The kernels are destroyed agent by agent concurrently, each agent's in one batched call
        (shared with other sessions terminating at the same time, see :class:`KernelDestroyer`).
        """
        by_agent: dict[str, list[KernelRecord]] = defaultdict(list)
        for kernel in session.kernels:
            if kernel.agent_id:
                by_agent[kernel.agent_id].append(kernel)
        reason = session.message or session.reason
        failures: list[str] = []

        async def on_agent(agent_id: str, kernels: list[KernelRecord]) -> None:
            agent = await self._agents.get(agent_id)
            if agent is None or (agent.status is not AgentStatus.ALIVE and not forced):
                state = "unknown" if agent is None else agent.status
                failures.extend(f"kernel {k.id} on agent {agent_id}: agent {agent_id} is {state}"
                                for k in kernels)
                return
            errors = await self._destroyer.destroy(
                agent.address, [(str(k.id), reason) for k in kernels])
            failures.extend(f"kernel {k.id} on agent {agent_id}: {error}"
                            for k, error in zip(kernels, errors, strict=True) if error)

        await asyncio.gather(*(on_agent(a, ks) for a, ks in by_agent.items()))
        if failures and not forced:
            raise AgentUnavailable(
                f"session {session.name} stays TERMINATING: {'; '.join(failures)}; it is retried "
                "while the agent is reachable, or terminate it with forced"
            )
        message = "kernels destroyed" if not failures else (
            "forced: agent errors ignored: " + "; ".join(failures)
        )
        return await self._move(session.id, frozenset({S.TERMINATING}), S.TERMINATED,
                                session.reason or "UserRequested", message)

    async def _move(self, session_id: uuid.UUID, sources: frozenset[SessionState],
                    target: SessionState, reason: str, message: str) -> SessionRecord:
        if self._batched is not None:
            return await self._batched.move(session_id, sources, target, reason, message)
        return await self._moves.move(session_id, sources, target, reason, message)
