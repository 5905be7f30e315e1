"""One scheduling pass: predicates, queue order per resource group, agent selection, commit.

A pass loads the PENDING queue (highest priority first, then oldest), the resource groups, the
ALIVE agents with their free capacity (:class:`~.pool.AgentIndex`, one snapshot per pass) and,
only when something needs them, the owners' policies and allocations (each read once per pass,
shared by every resource group: :class:`~.queue.OrderingReads`). Per resource group, the group's
scheduler plugin orders each priority tier and its agent-selector plugin chooses an agent for
each session in that order; decisions are made in memory and committed ``chunk_size`` at a time,
each chunk one state-checked transaction (:meth:`SessionRepository.place_many`: session rows
SKIP LOCKED, agent rows locked and re-checked), so two managers never over-allocate. A
placement refused because the agent changed meanwhile is retried against the agent's fresh
state. A pass places up to ``batch_size`` sessions: large, because what a pass reads (the whole
queue, every agent) costs about as much as committing a thousand placements.

A session that cannot go now stays PENDING with a CamelCase reason and a message (its status
info); a history row is written whenever the reason changes (the scheduling history), and an
event is published. It never blocks the sessions behind it. A session whose dependency failed is
CANCELLED.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bai.manager.domain import slots
from bai.manager.domain.errors import IllegalTransition, SessionNotFound
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import AgentRecord, AgentStatus, SessionState, utcnow
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import AgentRepository, EventBus, PlaceOutcome, SessionRepository
from bai.manager.domain.scheduling import predicates
from bai.manager.domain.scheduling.plugins import PluginNotFound, PluginRegistry
from bai.manager.domain.scheduling.pool import AgentIndex, AgentSelector, Candidate
from bai.manager.domain.scheduling.ports import PendingNote, SchedulingRepository
from bai.manager.domain.scheduling.queue import OrderingReads, order_queue
from bai.manager.domain.scheduling.types import (
    Allocation,
    DependencyState,
    PendingSession,
    PolicyLimits,
    ResourceGroup,
    SchedulerPolicy,
    UsageSample,
)

__all__ = ["INSUFFICIENT", "SessionQueue", "SessionScheduler"]

log = logging.getLogger(__name__)
INSUFFICIENT = "InsufficientResources"
_RETRIES = 3
_YIELD_EVERY = 500
"""Sessions planned between two yields to the event loop (about 20-50 ms of CPU)."""
S = SessionState


class SessionQueue:
    """A :class:`SchedulingRepository` with nothing but the session repository: every group is
    the default (FIFO, dispersed), no policies, no dependencies (for tools and tests that build
    a scheduler without the scheduling tables)."""

    def __init__(self, sessions: SessionRepository, agents: AgentRepository) -> None:
        self._sessions = sessions
        self._agents = agents

    async def pending(self, limit: int, group: str | None = None) -> list[PendingSession]:
        records = await self._sessions.list_in_states(frozenset({S.PENDING}), limit)
        found = [PendingSession(
            id=r.id, name=r.name, access_key=r.access_key, user=r.access_key, domain=r.domain,
            project=r.project, resource_group=r.spec.resource_group, image=r.spec.image,
            resources=r.spec.resources, cluster_size=r.spec.cluster_size,
            priority=r.spec.priority, created_at=r.created_at, starts_at=r.spec.starts_at,
            dependencies=r.spec.dependencies, reason=r.reason, message=r.message)
            for r in records]
        return [p for p in found if group is None or p.resource_group == group]

    async def resource_groups(self) -> dict[str, ResourceGroup]:
        return {}

    async def alive_agents(self) -> list[tuple[AgentRecord, frozenset[str]]]:
        return await self._agents.list_alive()

    async def dependency_states(
        self, ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DependencyState]:
        found = {}
        for dep_id in ids:
            r = await self._sessions.get(dep_id)
            if r is not None:
                found[dep_id] = DependencyState(r.name, r.state, r.exit_code)
        return found

    async def limits(self, access_keys: Collection[str], users: Collection[str],
                     projects: Collection[str]) -> PolicyLimits:
        return PolicyLimits()

    async def allocations(self) -> list[Allocation]:
        return []

    async def usage(self, since: datetime) -> list[UsageSample]:
        return []

    async def weights(self) -> dict[tuple[str, str], Decimal]:
        return {}

    async def pending_of(self, access_key: str) -> int:
        return sum(1 for p in await self.pending(1 << 20) if p.access_key == access_key)

    async def note_pending(self, notes: Sequence[PendingNote], at: datetime) -> list[uuid.UUID]:
        for n in notes:
            await self._sessions.set_pending_reason(n.session_id, n.reason, n.message)
        return [n.session_id for n in notes]


@dataclass
class _Pass:
    """State of one pass."""

    now: datetime
    groups: dict[str, ResourceGroup]
    index: AgentIndex
    dependencies: dict[uuid.UUID, DependencyState]
    limits: PolicyLimits
    tally: predicates.Tally
    reads: OrderingReads


class SessionScheduler:
    """Runs scheduling passes (the lifecycle engine calls :meth:`schedule_once`)."""

    def __init__(
        self,
        sessions: SessionRepository,
        agents: AgentRepository,
        bus: EventBus,
        rules: SchedulingRepository | None = None,
        *,
        plugins: PluginRegistry | None = None,
        batch_size: int = 5000,
        chunk_size: int = 1000,
        queue_limit: int = 20000,
    ) -> None:
        self._sessions = sessions
        self._agents = agents
        self._bus = bus
        self._rules: SchedulingRepository = rules or SessionQueue(sessions, agents)
        self._plugins = plugins or PluginRegistry()
        self._batch_size = batch_size
        """Most placements decided per resource group per pass (bounds a pass's length; the
        plan yields to the event loop every few hundred sessions meanwhile)."""
        self._chunk_size = chunk_size
        """Placements per commit transaction (bounds how long agent rows stay locked)."""
        self._queue_limit = queue_limit
        """Most PENDING sessions read per pass."""
        self.passes = 0
        """Passes run so far (benchmarks and tests)."""

    @property
    def plugins(self) -> PluginRegistry:
        return self._plugins

    async def schedule_once(self) -> int:
        """One pass over the pending queue; returns how many sessions were placed."""
        pending = await self._rules.pending(self._queue_limit)
        if not pending:
            return 0
        self.passes += 1
        state = await self._load(pending)
        notes: dict[uuid.UUID, tuple[PendingSession, str, str]] = {}
        cancels: list[tuple[PendingSession, predicates.Verdict]] = []
        plan: list[tuple[PendingSession, Candidate]] = []
        by_group: dict[str, list[PendingSession]] = defaultdict(list)
        for s in pending:
            by_group[s.resource_group].append(s)
        for name in sorted(by_group):
            plan += await self._plan_group(name, by_group[name], state, notes, cancels)
        placed = await self._commit_with_retries(plan, state, notes)
        await self._cancel(cancels)
        await self._note(notes)
        return placed

    async def _load(self, pending: list[PendingSession]) -> _Pass:
        groups = await self._rules.resource_groups()
        index = AgentIndex(await self._rules.alive_agents())
        dep_ids = {d for s in pending for d in s.dependencies}
        deps = await self._rules.dependency_states(dep_ids) if dep_ids else {}
        limits = await self._rules.limits({s.access_key for s in pending},
                                          {s.user for s in pending},
                                          {s.project_key for s in pending})
        policies = [self._policy_or_none(predicates.group_of(groups, name))
                    for name in {s.resource_group for s in pending}]
        need_allocations = not limits.empty or any(
            p is not None and p.needs_allocations for p in policies)
        reads = OrderingReads(self._rules)
        allocations: list[Allocation] = await reads.allocations() if need_allocations else []
        return _Pass(utcnow(), groups, index, deps, limits, predicates.Tally.of(allocations),
                     reads)

    def _policy_or_none(self, group: ResourceGroup) -> SchedulerPolicy | None:
        try:
            return self._plugins.scheduler(group.scheduler, group.scheduler_opts)
        except PluginNotFound:
            return None

    async def _plan_group(
        self,
        name: str,
        queue: list[PendingSession],
        st: _Pass,
        notes: dict[uuid.UUID, tuple[PendingSession, str, str]],
        cancels: list[tuple[PendingSession, predicates.Verdict]],
    ) -> list[tuple[PendingSession, Candidate]]:
        group = predicates.group_of(st.groups, name)
        try:
            policy = self._plugins.scheduler(group.scheduler, group.scheduler_opts)
            selector = self._plugins.selector(group.agent_selector, group.scheduler_opts)
        except PluginNotFound as exc:
            reason = "SchedulerNotFound" if "scheduler" in exc.group else "AgentSelectorNotFound"
            for s in queue:
                notes[s.id] = (s, reason, f"resource group {name!r}: {exc}")
            return []
        ordered = await order_queue(group, policy, queue, now=st.now,
                                    capacity=st.index.capacity(group.name), reads=st.reads)
        plan: list[tuple[PendingSession, Candidate]] = []
        explained: dict[tuple[str, tuple[tuple[str, Decimal], ...]], str] = {}
        for n, s in enumerate(ordered, 1):
            if len(plan) >= self._batch_size:
                break
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long plan must not stall heartbeats and RPCs
            verdict = predicates.check(s, now=st.now, groups=st.groups,
                                       dependencies=st.dependencies, limits=st.limits,
                                       tally=st.tally)
            if verdict is not None:
                if verdict.cancel:
                    cancels.append((s, verdict))
                else:
                    notes[s.id] = (s, verdict.reason, verdict.message)
                continue
            cand = self._select(s, st.index, selector)
            if cand is None:
                why = (s.image, tuple(sorted(s.total.items())))
                if why not in explained:  # as the queue stood when its turn came
                    explained[why] = _explain(s, st.index)
                notes[s.id] = (s, INSUFFICIENT, explained[why])
                continue
            st.index.take(cand, s.total)
            st.tally.add(s.access_key, s.user, s.project_key, s.total)
            plan.append((s, cand))
        return plan

    @staticmethod
    def _select(s: PendingSession, index: AgentIndex, selector: AgentSelector) -> Candidate | None:
        pool = index.pool(s.resource_group, s.image)
        return index.pick(pool, selector, s.total)

    async def _commit_with_retries(
        self, plan: list[tuple[PendingSession, Candidate]], st: _Pass,
        notes: dict[uuid.UUID, tuple[PendingSession, str, str]],
    ) -> int:
        placed = 0
        for attempt in range(_RETRIES):
            count, changed = await self._commit(plan)
            placed += count
            if not changed:
                break
            for agent_id in {c.id for _, c in changed}:
                fresh = await self._agents.get(agent_id)
                st.index.refresh(fresh if fresh is not None and fresh.status is AgentStatus.ALIVE
                                 else None, agent_id)
            st.index.forget_failures()
            plan = []
            for s, _ in changed:
                group = predicates.group_of(st.groups, s.resource_group)
                cand = (None if attempt == _RETRIES - 1 else self._select(
                    s, st.index, self._plugins.selector(group.agent_selector,
                                                        group.scheduler_opts)))
                if cand is None:
                    notes[s.id] = (s, INSUFFICIENT, _explain(s, st.index))
                    continue
                st.index.take(cand, s.total)
                plan.append((s, cand))
        return placed

    async def _commit(
        self, plan: list[tuple[PendingSession, Candidate]]
    ) -> tuple[int, list[tuple[PendingSession, Candidate]]]:
        """Commits the plan chunk by chunk; returns how many were placed and those refused
        because their agent changed."""
        placed = 0
        changed: list[tuple[PendingSession, Candidate]] = []
        debug = log.isEnabledFor(logging.DEBUG)
        for start in range(0, len(plan), self._chunk_size):
            chunk = plan[start:start + self._chunk_size]
            outcomes = await self._sessions.place_many(
                [Placement(s.id, c.id, s.total, s.resources) for s, c in chunk], utcnow())
            for s, cand in chunk:
                outcome = outcomes.get(s.id, PlaceOutcome.SESSION_GONE)
                if outcome is PlaceOutcome.PLACED:
                    placed += 1
                    if debug:  # describing the slots costs more than the rest of the loop
                        log.debug("session %s (%s) placed on agent %s with %s", s.name, s.id,
                                  cand.id, slots.describe(s.total))
                    await self._bus.publish(SessionChanged(s.id, S.SCHEDULED, "Scheduled"))
                elif outcome is PlaceOutcome.AGENT_CHANGED:
                    changed.append((s, cand))
        if placed:
            log.info("scheduler: %d sessions placed", placed)
        return placed, changed

    async def _cancel(self, cancels: list[tuple[PendingSession, predicates.Verdict]]) -> None:
        for s, verdict in cancels:
            try:
                await self._sessions.transition(s.id, frozenset({S.PENDING}), S.CANCELLED,
                                                verdict.reason, verdict.message, at=utcnow())
            except (IllegalTransition, SessionNotFound):
                continue  # someone else moved it meanwhile
            log.info("session %s (%s) cancelled: %s", s.name, s.id, verdict.message)
            await self._bus.publish(SessionChanged(s.id, S.CANCELLED, verdict.reason))

    async def _note(self, notes: dict[uuid.UUID, tuple[PendingSession, str, str]]) -> None:
        changed = [PendingNote(s.id, reason, message, new_reason=reason != s.reason)
                   for s, reason, message in notes.values()
                   if (reason, message) != (s.reason, s.message)]
        if not changed:
            return
        written = set(await self._rules.note_pending(changed, utcnow()))
        for n in changed:
            if n.session_id in written and n.new_reason:
                await self._bus.publish(SessionChanged(n.session_id, S.PENDING, n.reason))


def _explain(s: PendingSession, index: AgentIndex) -> str:
    where = f"resource group {s.resource_group!r}"
    group = index.in_group(s.resource_group)
    if not group:
        return f"no ALIVE agent in {where}"
    eligible = [c for c in group if s.image in c.images]
    if not eligible:
        return f"no ALIVE agent in {where} holds image {s.image}"
    request = s.total
    need = slots.describe(request)
    if s.cluster_size > 1:
        need += f" ({s.cluster_size} kernels on one agent)"
    if all(slots.missing(c.agent.capacity, request) for c in eligible):
        return f"needs {need}, more than the total capacity of every agent in {where}"
    best = min(eligible, key=lambda c: (len(slots.missing(c.free, request)),
                                        -c.free.get("cpu", Decimal(0)), c.id))
    lack = slots.describe(slots.missing(best.free, request))
    return (f"needs {need}; no agent in {where} has that free "
            f"(closest: agent {best.id} lacks {lack})")
