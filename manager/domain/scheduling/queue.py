"""Queue order of a resource group, and a pending session's position in it (1 = next).

The position is computed the way a pass orders the queue (priority tiers, then the group's
scheduler plugin), from the database as it stands; predicates are not applied, so sessions
ahead that wait for a dependency or a start time are counted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from itertools import groupby

from bai.common.errors import ResourceExhausted
from bai.manager.domain import slots
from bai.manager.domain.model import Slots, utcnow
from bai.manager.domain.ports import AgentRepository
from bai.manager.domain.scheduling.plugins import PluginNotFound, PluginRegistry
from bai.manager.domain.scheduling.ports import SchedulingRepository
from bai.manager.domain.scheduling.predicates import group_of
from bai.manager.domain.scheduling.types import (
    Allocation,
    PendingSession,
    QueueContext,
    ResourceGroup,
    SchedulerPolicy,
    UsageSample,
)

__all__ = ["OrderingReads", "PendingLimitReached", "QueueView", "in_order", "order_queue",
           "usage_since"]


class PendingLimitReached(ResourceExhausted):
    default_reason = "PENDING_SESSION_LIMIT"


def in_order(
    policy: SchedulerPolicy, queue: list[PendingSession], ctx: QueueContext
) -> list[PendingSession]:
    """Priority tiers, highest first; the plugin orders each tier."""
    ordered: list[PendingSession] = []
    tiers = sorted(queue, key=lambda s: -s.priority)
    for _, tier in groupby(tiers, key=lambda s: s.priority):
        ordered += policy.order(list(tier), ctx)
    return ordered


class OrderingReads:
    """What ordering queues may read from the database, each read at most once however many
    resource groups a pass (or a position query) orders."""

    def __init__(self, rules: SchedulingRepository) -> None:
        self._rules = rules
        self._allocations: list[Allocation] | None = None
        self._usage: dict[datetime, list[UsageSample]] = {}
        self._weights: dict[tuple[str, str], Decimal] | None = None

    async def allocations(self) -> list[Allocation]:
        if self._allocations is None:
            self._allocations = await self._rules.allocations()
        return self._allocations

    async def usage(self, since: datetime) -> list[UsageSample]:
        if since not in self._usage:
            self._usage[since] = await self._rules.usage(since)
        return self._usage[since]

    async def weights(self) -> dict[tuple[str, str], Decimal]:
        if self._weights is None:
            self._weights = await self._rules.weights()
        return self._weights


async def order_queue(
    group: ResourceGroup, policy: SchedulerPolicy, queue: list[PendingSession], *,
    now: datetime, capacity: Slots, reads: OrderingReads,
) -> list[PendingSession]:
    """The group's queue in the order a pass considers it (the one ordering both the
    dispatcher and :meth:`QueueView.position` use)."""
    ctx = QueueContext(group=group, now=now, capacity=capacity)
    if policy.needs_allocations:
        ctx.allocations = [a for a in await reads.allocations()
                           if a.resource_group == group.name]
    if policy.needs_usage:
        ctx.usage = await reads.usage(usage_since(group, now))
        ctx.weights = await reads.weights()
    return in_order(policy, queue, ctx)


def usage_since(group: ResourceGroup, now: datetime) -> datetime:
    window = group.scheduler_opts.get("window_seconds", 7 * 86400)
    try:
        seconds = float(str(window))
    except ValueError:
        seconds = 7 * 86400.0
    return datetime.fromtimestamp(now.timestamp() - seconds, now.tzinfo)


class QueueView:
    def __init__(self, rules: SchedulingRepository, agents: AgentRepository,
                 plugins: PluginRegistry, *, queue_limit: int = 20000) -> None:
        self._rules = rules
        self._agents = agents
        self._plugins = plugins
        self._queue_limit = queue_limit

    async def admit(self, access_key: str) -> None:
        """Raises PendingLimitReached when the key's policy allows no more PENDING sessions
        (Backend.AI's max_pending_session_count, checked when a session is created)."""
        limits = (await self._rules.limits({access_key}, (), ())).keypairs.get(access_key)
        if limits is None or limits.max_pending_sessions is None:
            return
        pending = await self._rules.pending_of(access_key)
        if pending >= limits.max_pending_sessions:
            raise PendingLimitReached(
                f"access key {access_key} already has {pending} pending sessions, the most its "
                f"resource policy {limits.policy!r} allows")

    async def position(self, session_id: uuid.UUID, group_name: str) -> int | None:
        """1-based position among the group's PENDING sessions (None: not pending)."""
        queue = await self._rules.pending(self._queue_limit, group_name)
        if not any(s.id == session_id for s in queue):
            return None
        group = group_of(await self._rules.resource_groups(), group_name)
        try:
            policy = self._plugins.scheduler(group.scheduler, group.scheduler_opts)
        except PluginNotFound:
            return None
        capacity: Slots = {}
        if policy.needs_allocations or policy.needs_usage:
            for agent, _ in await self._agents.list_alive():
                if agent.resource_group == group_name:
                    capacity = slots.add(capacity, agent.capacity)
        ordered = await order_queue(group, policy, queue, now=utcnow(), capacity=capacity,
                                    reads=OrderingReads(self._rules))
        return next(i for i, s in enumerate(ordered, 1) if s.id == session_id)
