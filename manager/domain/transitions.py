"""State transitions with their side effects: history (in the repository), log, event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import SessionRecord, SessionState, utcnow
from bai.manager.domain.ports import EventBus, SessionRepository

__all__ = ["Transitions"]

log = logging.getLogger(__name__)


class Transitions:
    """The only way domain code changes a session's state."""

    def __init__(self, sessions: SessionRepository, bus: EventBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def move(
        self,
        session_id: uuid.UUID,
        sources: frozenset[SessionState] | SessionState,
        target: SessionState,
        reason: str,
        message: str,
        *,
        exit_code: int | None = None,
        container_ids: Mapping[uuid.UUID, str] | None = None,
    ) -> SessionRecord:
        """Moves the session; IllegalTransition (nothing changed) if it is not in ``sources``."""
        if isinstance(sources, SessionState):
            sources = frozenset({sources})
        record = await self._sessions.transition(
            session_id, sources, target, reason, message,
            at=utcnow(), exit_code=exit_code, container_ids=container_ids,
        )
        log.info("session %s (%s) -> %s: %s: %s", record.name, session_id, target, reason, message)
        await self._bus.publish(SessionChanged(session_id, target, reason))
        return record
