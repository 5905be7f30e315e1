"""A kernel's container exited on its own (an agent's KernelEvent or registration snapshot).

Batch sessions, main kernel: → TERMINATED with the exit code, reason BatchFinished (0) or
BatchFailed. Other sessions, and a sub kernel of a cluster batch session: → ERROR, reason
KernelTerminated (the agent's reason in the message).
The exited kernel and its siblings are then destroyed on the agent (by the registry).
Sessions being terminated, restarted or already terminal are left to their own handlers.
"""

from __future__ import annotations

import logging
import uuid

from bai.manager.domain.errors import IllegalTransition
from bai.manager.domain.model import SessionRecord, SessionState, SessionType
from bai.manager.domain.ports import SessionRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["KernelExitHandler"]

log = logging.getLogger(__name__)
S = SessionState
_BATCH_SOURCES = frozenset({S.CREATING, S.RUNNING})
_OTHER_SOURCES = frozenset({S.RUNNING})


class KernelExitHandler:
    def __init__(self, sessions: SessionRepository, moves: Transitions) -> None:
        self._sessions = sessions
        self._moves = moves

    async def on_exit(
        self, agent_id: str, kernel_id: str, exit_code: int, agent_reason: str
    ) -> SessionRecord | None:
        """Records the exit; returns the updated session, or None if nothing changed."""
        try:
            found = await self._sessions.find_kernel(uuid.UUID(kernel_id))
        except ValueError:
            return None
        if found is None:
            return None
        kernel, session = found
        if kernel.agent_id != agent_id:
            return None
        detail = f" ({agent_reason})" if agent_reason else ""
        if session.spec.session_type is SessionType.BATCH and kernel.cluster_role == "main":
            sources = _BATCH_SOURCES
            target = S.TERMINATED
            reason = "BatchFinished" if exit_code == 0 else "BatchFailed"
            message = f"startup command exited with code {exit_code}{detail}"
        else:
            sources, target, reason = _OTHER_SOURCES, S.ERROR, "KernelTerminated"
            message = f"kernel {kernel_id} exited with code {exit_code}{detail}"
        if session.state not in sources:
            return None
        try:
            return await self._moves.move(session.id, sources, target, reason, message,
                                          exit_code=exit_code)
        except IllegalTransition:
            return None
