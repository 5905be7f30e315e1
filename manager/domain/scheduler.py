"""FIFO scheduler: PENDING sessions, oldest first, onto ALIVE agents with room.

An agent fits when it is ALIVE, in the session's resource group, holds the session's image
(no registry is reachable, so an agent cannot pull it) and its capacity minus its occupied slots
covers every requested slot. Among fitting agents the one with the most free cpu, then memory,
then the smallest id is chosen (spreads load).

One pass: the oldest ``batch_size`` PENDING sessions are matched in memory against an index of
free capacity loaded once (per resource group and image, a heap ordered by free cpu/mem); the
decisions are then committed ``chunk_size`` at a time, each chunk one state-checked transaction
(:meth:`SessionRepository.place_many`: session rows SKIP LOCKED, agent rows locked and
re-checked), so two schedulers never over-allocate. A placement refused because the agent
changed meanwhile is retried against the agent's fresh state. A session that fits nowhere stays
PENDING with reason InsufficientResources and a message saying what is missing; it does not
block the sessions behind it.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
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
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import AgentRepository, EventBus, PlaceOutcome, SessionRepository

__all__ = ["INSUFFICIENT", "FifoScheduler"]

log = logging.getLogger(__name__)
INSUFFICIENT = "InsufficientResources"
_RETRIES = 3
_Key = tuple[str, str]  # (resource group, image)


@dataclass(eq=False)
class _Candidate:
    agent: AgentRecord
    images: frozenset[str]
    free: Slots
    version: int = 0
    keys: list[_Key] = field(default_factory=list)

    def order(self) -> tuple[Decimal, Decimal, str]:
        return (-self.free.get("cpu", Decimal(0)), -self.free.get("mem", Decimal(0)), self.agent.id)


_Entry = tuple[tuple[Decimal, Decimal, str], int, _Candidate]


class _Index:
    """Free capacity of the ALIVE agents, loaded once per pass, updated as placements are made."""

    def __init__(self, agents: Iterable[tuple[AgentRecord, frozenset[str]]]) -> None:
        self.pool = [_Candidate(a, images, slots.sub(a.capacity, a.occupied))
                     for a, images in agents]
        self._heaps: dict[_Key, list[_Entry]] = {}
        self._failed: dict[_Key, list[Slots]] = {}

    def _heap(self, key: _Key) -> list[_Entry]:
        heap = self._heaps.get(key)
        if heap is None:
            group, image = key
            heap = []
            for c in self.pool:
                if c.agent.resource_group == group and image in c.images:
                    c.keys.append(key)
                    heap.append((c.order(), c.version, c))
            heapq.heapify(heap)
            self._heaps[key] = heap
        return heap

    def pick(self, key: _Key, request: Slots) -> _Candidate | None:
        """The fitting candidate with the most free cpu, then memory (None: none fits)."""
        failed = self._failed.setdefault(key, [])
        if any(_covers(request, f) for f in failed):
            return None  # a request no bigger did not fit, and free space only shrinks
        heap, skipped, found = self._heap(key), [], None
        while heap:
            entry = heapq.heappop(heap)
            if entry[1] != entry[2].version:
                continue  # stale entry
            if not slots.missing(entry[2].free, request):
                found = entry[2]
                heapq.heappush(heap, entry)
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(heap, entry)
        if found is None:
            failed.append(request)
        return found

    def update(self, cand: _Candidate, free: Slots) -> None:
        cand.free, cand.version = free, cand.version + 1
        for key in cand.keys:
            heapq.heappush(self._heaps[key], (cand.order(), cand.version, cand))

    def drop(self, cand: _Candidate) -> None:
        cand.version += 1  # every entry of it is stale now
        self.pool.remove(cand)

    def forget_failures(self) -> None:
        self._failed.clear()


def _covers(request: Slots, smaller: Slots) -> bool:
    """``request`` needs at least ``smaller`` of every slot ``smaller`` names."""
    return all(request.get(k, Decimal(0)) >= v for k, v in smaller.items())


class FifoScheduler:
    def __init__(
        self,
        sessions: SessionRepository,
        agents: AgentRepository,
        bus: EventBus,
        *,
        batch_size: int = 1000,
        chunk_size: int = 250,
    ) -> None:
        self._sessions = sessions
        self._agents = agents
        self._bus = bus
        self._batch_size = batch_size
        self._chunk_size = chunk_size
        self.passes = 0
        """Passes run so far (benchmarks and tests)."""

    async def schedule_once(self) -> int:
        """One pass over the pending queue; returns how many sessions were placed."""
        pending = await self._sessions.list_in_states(
            frozenset({SessionState.PENDING}), self._batch_size
        )
        if not pending:
            return 0
        self.passes += 1
        index = _Index(await self._agents.list_alive())
        placed, todo = 0, pending
        for attempt in range(_RETRIES):
            plan: list[tuple[SessionRecord, _Candidate]] = []
            unplaced: list[tuple[SessionRecord, str]] = []
            reasons: dict[tuple[str, str, tuple[tuple[str, Decimal], ...]], str] = {}
            for session in todo:
                spec = session.spec
                cand = index.pick((spec.resource_group, spec.image), spec.resources)
                if cand is None:  # explained as the queue stood when its turn came
                    why = (spec.resource_group, spec.image, tuple(sorted(spec.resources.items())))
                    if why not in reasons:
                        reasons[why] = _explain(session, index.pool)
                    unplaced.append((session, reasons[why]))
                    continue
                index.update(cand, slots.sub(cand.free, spec.resources))
                plan.append((session, cand))
            count, changed = await self._commit(plan)
            placed += count
            for session, message in unplaced:
                await self._set_pending(session, message)
            if not changed or attempt == _RETRIES - 1:
                break
            todo = [session for session, _ in changed]
            for cand in {id(c): c for _, c in changed}.values():
                await self._refresh(cand, index)
            index.forget_failures()
        return placed

    async def _commit(
        self, plan: list[tuple[SessionRecord, _Candidate]]
    ) -> tuple[int, list[tuple[SessionRecord, _Candidate]]]:
        """Commits the plan chunk by chunk; returns how many were placed and those refused
        because their agent changed."""
        placed = 0
        changed: list[tuple[SessionRecord, _Candidate]] = []
        for start in range(0, len(plan), self._chunk_size):
            chunk = plan[start:start + self._chunk_size]
            outcomes = await self._sessions.place_many(
                [Placement(s.id, c.agent.id, s.spec.resources) for s, c in chunk], utcnow()
            )
            for session, cand in chunk:
                outcome = outcomes.get(session.id, PlaceOutcome.SESSION_GONE)
                if outcome is PlaceOutcome.PLACED:
                    placed += 1
                    log.debug("session %s (%s) placed on agent %s with %s", session.name,
                              session.id, cand.agent.id, slots.describe(session.spec.resources))
                    await self._bus.publish(SessionChanged(session.id, SessionState.SCHEDULED,
                                                           "Scheduled"))
                elif outcome is PlaceOutcome.AGENT_CHANGED:
                    changed.append((session, cand))
        if placed:
            log.info("scheduler: %d sessions placed", placed)
        return placed, changed

    async def _refresh(self, stale: _Candidate, index: _Index) -> None:
        """Another writer changed the agent: reread it (or drop it when it is gone)."""
        agent = await self._agents.get(stale.agent.id)
        if agent is None or agent.status is not AgentStatus.ALIVE:
            if stale in index.pool:
                index.drop(stale)
            return
        stale.agent = agent
        index.update(stale, slots.sub(agent.capacity, agent.occupied))

    async def _set_pending(self, session: SessionRecord, message: str) -> None:
        if (session.reason, session.message) != (INSUFFICIENT, message):
            await self._sessions.set_pending_reason(session.id, INSUFFICIENT, message)
            await self._bus.publish(SessionChanged(session.id, SessionState.PENDING, INSUFFICIENT))


def _explain(session: SessionRecord, pool: list[_Candidate]) -> str:
    spec = session.spec
    where = f"resource group {spec.resource_group!r}"
    group = [c for c in pool if c.agent.resource_group == spec.resource_group]
    if not group:
        return f"no ALIVE agent in {where}"
    eligible = [c for c in group if spec.image in c.images]
    if not eligible:
        return f"no ALIVE agent in {where} holds image {spec.image}"
    need = slots.describe(spec.resources)
    if all(slots.missing(c.agent.capacity, spec.resources) for c in eligible):
        return f"needs {need}, more than the total capacity of every agent in {where}"
    best = min(eligible, key=lambda c: (len(slots.missing(c.free, spec.resources)), c.order()))
    lack = slots.describe(slots.missing(best.free, spec.resources))
    return (f"needs {need}; no agent in {where} has that free "
            f"(closest: agent {best.agent.id} lacks {lack})")
