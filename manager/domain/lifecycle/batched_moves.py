"""Concurrent state transitions with the same source and target, committed together.

When a hundred sessions are terminated at once, each needs RUNNING → TERMINATING and then
TERMINATING → TERMINATED: two transactions per session, all contending for the same pool and
agent rows. :class:`BatchedMoves` queues the moves asked for in one event-loop turn (and while
a batch of the same kind is being committed) and commits each queue in one transaction
(:meth:`BatchMoveRepository.transition_many`); every caller gets its own record or error, as
with :meth:`~bai.manager.domain.transitions.Transitions.move`. An idle system pays one loop turn.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bai.common.errors import BaiError
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import SessionRecord, SessionState, utcnow
from bai.manager.domain.ports import EventBus

__all__ = ["BatchMoveRepository", "BatchedMoves"]

log = logging.getLogger(__name__)
_Kind = tuple[frozenset[SessionState], SessionState]


class BatchMoveRepository(Protocol):
    async def transition_many(
        self,
        moves: Sequence[tuple[uuid.UUID, str, str]],
        sources: frozenset[SessionState],
        target: SessionState,
        *,
        at: datetime,
    ) -> dict[uuid.UUID, SessionRecord | BaiError]:
        """``(session id, reason, message)`` moves in one transaction; a record or the error
        (IllegalTransition, SessionNotFound) of each."""
        ...


@dataclass(slots=True)
class _Move:
    session_id: uuid.UUID
    reason: str
    message: str
    done: asyncio.Future[SessionRecord]


class BatchedMoves:
    def __init__(self, repo: BatchMoveRepository, bus: EventBus, *, max_batch: int = 200) -> None:
        self._repo = repo
        self._bus = bus
        self._max_batch = max_batch
        self._queued: dict[_Kind, list[_Move]] = {}
        self._committers: dict[_Kind, asyncio.Task[None]] = {}
        self.commits = 0
        """Transactions committed (tests, benchmarks)."""

    async def move(
        self,
        session_id: uuid.UUID,
        sources: frozenset[SessionState] | SessionState,
        target: SessionState,
        reason: str,
        message: str,
    ) -> SessionRecord:
        """Like Transitions.move (same errors), committed together with concurrent moves."""
        if isinstance(sources, SessionState):
            sources = frozenset({sources})
        kind = (sources, target)
        move = _Move(session_id, reason, message, asyncio.get_running_loop().create_future())
        self._queued.setdefault(kind, []).append(move)
        if kind not in self._committers:
            self._committers[kind] = asyncio.create_task(self._commit(kind),
                                                         name=f"moves-to-{target}")
        return await move.done

    async def _commit(self, kind: _Kind) -> None:
        try:
            await asyncio.sleep(0)  # moves asked for in this loop turn join the first batch
            while queued := self._queued.pop(kind, None):
                batch, rest = queued[:self._max_batch], queued[self._max_batch:]
                if rest:
                    self._queued.setdefault(kind, [])[:0] = rest
                await self._commit_batch(kind, batch)
        finally:
            del self._committers[kind]
            for move in self._queued.pop(kind, []):  # only after a cancellation
                if not move.done.done():
                    move.done.cancel()

    async def _commit_batch(self, kind: _Kind, batch: list[_Move]) -> None:
        sources, target = kind
        try:
            self.commits += 1
            results = await self._repo.transition_many(
                [(m.session_id, m.reason, m.message) for m in batch], sources, target,
                at=utcnow())
        except BaseException as exc:
            for move in batch:
                if not move.done.done():
                    move.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for move in batch:
            result = results[move.session_id]
            if isinstance(result, BaiError):
                move.done.set_exception(result)
                continue
            log.info("session %s (%s) -> %s: %s: %s", result.name, move.session_id, target,
                     move.reason, move.message)
            move.done.set_result(result)
            await self._bus.publish(SessionChanged(move.session_id, target, move.reason))
