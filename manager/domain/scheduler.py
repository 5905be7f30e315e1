"""FIFO scheduler: PENDING sessions, oldest first, onto ALIVE agents with room.

An agent fits when it is ALIVE, in the session's resource group, holds the session's image
(no registry is reachable, so an agent cannot pull it) and its capacity minus its occupied slots
covers every requested slot. The placement itself is one state-checked transaction in the
repository (row locks on PostgreSQL), so two schedulers never double-allocate. A session that
fits nowhere stays PENDING with reason InsufficientResources and a message saying what is
missing; it does not block the sessions behind it. Among fitting agents the one with the most
free cpu, then memory, is chosen (spreads load).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from bai.manager.domain import slots
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import (
    AgentRecord,
    AgentStatus,
    SessionRecord,
    SessionState,
    Slots,
    utcnow,
)
from bai.manager.domain.ports import AgentRepository, EventBus, PlaceOutcome, SessionRepository

__all__ = ["INSUFFICIENT", "FifoScheduler"]

log = logging.getLogger(__name__)
INSUFFICIENT = "InsufficientResources"
_RETRIES = 3


@dataclass
class _Candidate:
    agent: AgentRecord
    images: frozenset[str]
    free: Slots

    def order(self) -> tuple[Decimal, Decimal, str]:
        return (-self.free.get("cpu", Decimal(0)), -self.free.get("mem", Decimal(0)), self.agent.id)


class FifoScheduler:
    def __init__(
        self,
        sessions: SessionRepository,
        agents: AgentRepository,
        bus: EventBus,
        *,
        batch_size: int = 1000,
    ) -> None:
        self._sessions = sessions
        self._agents = agents
        self._bus = bus
        self._batch_size = batch_size

    async def schedule_once(self) -> int:
        """One pass over the pending queue; returns how many sessions were placed."""
        pending = await self._sessions.list_in_states(
            frozenset({SessionState.PENDING}), self._batch_size
        )
        if not pending:
            return 0
        pool = [
            _Candidate(agent, images, slots.sub(agent.capacity, agent.occupied))
            for agent, images in await self._agents.list_alive()
        ]
        placed = 0
        for session in pending:
            placed += await self._schedule(session, pool)
        return placed

    async def _schedule(self, session: SessionRecord, pool: list[_Candidate]) -> int:
        spec = session.spec
        group = [c for c in pool if c.agent.resource_group == spec.resource_group]
        eligible = [c for c in group if spec.image in c.images]
        for _ in range(_RETRIES):
            fitting = [c for c in eligible if not slots.missing(c.free, spec.resources)]
            if not fitting:
                break
            best = min(fitting, key=_Candidate.order)
            outcome = await self._sessions.place(session.id, best.agent.id, spec.resources,
                                                 utcnow())
            if outcome is PlaceOutcome.PLACED:
                best.free = slots.sub(best.free, spec.resources)
                log.info("session %s (%s) placed on agent %s with %s", session.name,
                         session.id, best.agent.id, slots.describe(spec.resources))
                await self._bus.publish(SessionChanged(session.id, SessionState.SCHEDULED,
                                                       "Scheduled"))
                return 1
            if outcome is PlaceOutcome.SESSION_GONE:
                return 0
            await self._refresh(best, pool, eligible)
        message = self._explain(session, group, eligible)
        if (session.reason, session.message) != (INSUFFICIENT, message):
            await self._sessions.set_pending_reason(session.id, INSUFFICIENT, message)
            await self._bus.publish(SessionChanged(session.id, SessionState.PENDING, INSUFFICIENT))
        return 0

    async def _refresh(
        self, stale: _Candidate, pool: list[_Candidate], eligible: list[_Candidate]
    ) -> None:
        """Another writer changed the agent: reread it (or drop it when it is gone)."""
        agent = await self._agents.get(stale.agent.id)
        if agent is None or agent.status is not AgentStatus.ALIVE:
            for lst in (pool, eligible):
                if stale in lst:
                    lst.remove(stale)
            return
        stale.agent, stale.free = agent, slots.sub(agent.capacity, agent.occupied)

    @staticmethod
    def _explain(
        session: SessionRecord, group: list[_Candidate], eligible: list[_Candidate]
    ) -> str:
        spec = session.spec
        where = f"resource group {spec.resource_group!r}"
        if not group:
            return f"no ALIVE agent in {where}"
        if not eligible:
            return f"no ALIVE agent in {where} holds image {spec.image}"
        need = slots.describe(spec.resources)
        if all(slots.missing(c.agent.capacity, spec.resources) for c in eligible):
            return f"needs {need}, more than the total capacity of every agent in {where}"
        best = min(eligible, key=lambda c: (len(slots.missing(c.free, spec.resources)),
                                           c.order()))
        lack = slots.describe(slots.missing(best.free, spec.resources))
        return (f"needs {need}; no agent in {where} has that free "
                f"(closest: agent {best.agent.id} lacks {lack})")
