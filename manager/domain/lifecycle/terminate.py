"""Termination: PENDING/SCHEDULED → CANCELLED; others → TERMINATING → (DestroyKernel) → TERMINATED.

Success: CANCELLED or TERMINATED, slots released. Retry: when an agent does not answer, the
session stays TERMINATING (the engine retries while the agent is ALIVE) unless ``forced``, which
ignores agent errors. Already terminal sessions are returned unchanged (idempotent).
"""

from __future__ import annotations

import logging
import uuid

from bai.common.errors import BaiError
from bai.manager.domain.errors import AgentUnavailable, IllegalTransition, SessionNotFound
from bai.manager.domain.model import (
    TERMINAL_STATES,
    AgentStatus,
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
    ) -> None:
        self._sessions = sessions
        self._agents = agents
        self._client = client
        self._moves = moves

    async def terminate(
        self, session_id: uuid.UUID, *, forced: bool, reason: str, message: str
    ) -> SessionRecord:
        """Cancels or terminates the session; see the module docstring."""
        for _ in range(_ATTEMPTS):  # the state may change under us (scheduler, agent events)
            session = await self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound(f"session {session_id} not found")
            try:
                if session.state in TERMINAL_STATES:
                    return session
                if session.state in CANCELLABLE:
                    return await self._moves.move(session_id, CANCELLABLE, S.CANCELLED,
                                                  reason, message)
                if session.state is not S.TERMINATING:
                    session = await self._moves.move(session_id, STOPPABLE, S.TERMINATING,
                                                      reason, message)
                return await self.finish(session, forced=forced)
            except IllegalTransition:
                continue
        raise IllegalTransition(f"session {session_id} keeps changing state; try again")

    async def finish(self, session: SessionRecord, *, forced: bool) -> SessionRecord:
        """Destroys the kernels of a TERMINATING session, then marks it TERMINATED."""
        failures = []
        for kernel in session.kernels:
            if not kernel.agent_id:
                continue
            agent = await self._agents.get(kernel.agent_id)
            try:
                if agent is None:
                    raise AgentUnavailable(f"agent {kernel.agent_id} is unknown")
                if agent.status is not AgentStatus.ALIVE and not forced:
                    raise AgentUnavailable(f"agent {agent.id} is {agent.status}")
                await self._client.destroy_kernel(agent.address, str(kernel.id),
                                                  session.message or session.reason)
            except BaiError as exc:
                failures.append(f"kernel {kernel.id} on agent {kernel.agent_id}: {exc.message}")
        if failures and not forced:
            raise AgentUnavailable(
                f"session {session.name} stays TERMINATING: {'; '.join(failures)}; it is retried "
                "while the agent is reachable, or terminate it with forced"
            )
        message = "kernels destroyed" if not failures else (
            "forced: agent errors ignored: " + "; ".join(failures)
        )
        return await self._moves.move(session.id, S.TERMINATING, S.TERMINATED,
                                      session.reason or "UserRequested", message)
