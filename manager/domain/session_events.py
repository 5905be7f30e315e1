"""One session's lifecycle as Backend.AI-named events, from the manager's event bus.

The bus only says "session X entered state S"; each such notice for the watched session becomes
the Backend.AI events of S (kernel events per kernel, then the session event), with the session
re-read for kernels and the exit code. The watch ends after a terminal state's events.
Subscribing happens before the session is read, so no transition falls between the two; a
periodic re-read also catches a terminal state whose notice was dropped by a full queue.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import (
    TERMINAL_STATES,
    Principal,
    SessionRecord,
    SessionState,
    SessionType,
    utcnow,
)
from bai.manager.domain.ports import EventBus, SessionRepository
from bai.manager.domain.sessions import SessionService

__all__ = ["SessionEvent", "SessionEventWatcher", "events_for"]

S = SessionState
_CREATING = frozenset({S.PREPARING, S.PULLING, S.PREPARED, S.CREATING})


@dataclass(frozen=True, slots=True)
class SessionEvent:
    name: str
    session: SessionRecord
    state: SessionState
    reason: str
    kernel_id: uuid.UUID | None
    at: datetime


def events_for(
    session: SessionRecord, state: SessionState, reason: str, previous: SessionState | None
) -> list[SessionEvent]:
    """The Backend.AI events for ``session`` entering ``state`` (after ``previous``)."""
    now = utcnow()

    def kernels(name: str) -> list[SessionEvent]:
        return [SessionEvent(name, session, state, reason, k.id, now) for k in session.kernels]

    def own(name: str) -> SessionEvent:
        return SessionEvent(name, session, state, reason, None, now)

    if state in _CREATING:
        return kernels("kernel_creating") if previous not in _CREATING else []
    if state is S.RUNNING:
        return [*kernels("kernel_started"), own("session_started")]
    if state is S.TERMINATING:
        return kernels("kernel_terminating")
    if state is S.TERMINATED:
        result: list[SessionEvent] = kernels("kernel_terminated")
        if session.spec.session_type is SessionType.BATCH:
            success = (session.exit_code or 0) == 0
            result.append(own("session_success" if success else "session_failure"))
        return [*result, own("session_terminated")]
    if state is S.CANCELLED:
        return [*kernels("kernel_cancelled"), own("session_cancelled")]
    if state is S.ERROR:
        return [own("session_failure")]
    return []


class SessionEventWatcher:
    def __init__(
        self, sessions: SessionService, repo: SessionRepository, bus: EventBus,
        *, recheck_interval: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._repo = repo
        self._bus = bus
        self._recheck = recheck_interval

    async def watch(
        self, who: Principal, ref: str
    ) -> AsyncIterator[SessionRecord | SessionEvent]:
        """Yields the session as found (raises SessionNotFound), then its events."""
        async with self._bus.subscribe() as subscription:
            session = await self._sessions.get(who, ref)
            yield session
            last = session.state
            if last in TERMINAL_STATES:
                for event in events_for(session, last, session.reason, None):
                    yield event
                return
            while True:
                notice = await subscription.next(self._recheck)
                if notice is None:
                    current = await self._repo.get(session.id)
                    if current is None or current.state not in TERMINAL_STATES:
                        continue
                    state, reason = current.state, current.reason
                elif isinstance(notice, SessionChanged) and notice.session_id == session.id:
                    state, reason = notice.state, notice.reason
                else:
                    continue
                if state is last:
                    continue
                current = await self._repo.get(session.id) or session
                for event in events_for(current, state, reason, last):
                    yield event
                last = state
                if state in TERMINAL_STATES:
                    return
