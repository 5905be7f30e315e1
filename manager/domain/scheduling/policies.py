"""Scheduler plugins (entry-point group ``backendai_scheduler_v10``): queue orders.

The dispatcher hands a plugin one priority tier of one resource group's queue at a time (higher
priority tiers always go first); the plugin returns the order in which placement is tried.
A session that does not fit is skipped, never waited for, so no order blocks the queue.

* ``fifo``: oldest first.
* ``lifo``: newest first.
* ``drf``: Dominant Resource Fairness (Ghodsi et al.): the access key whose dominant share of
  the group's capacity (its largest slot fraction, counting what it already occupies) is
  smallest goes next; each pick adds the session to its key's share (progressive filling).
* ``fair-share``: decayed usage: each user's and project's usage is the sum over its sessions of
  (slot amount / group capacity) x seconds, weighted by ``2^(-age / half_life)`` and limited to
  the last ``window_seconds``; divided by the subject's weight (table ``fair_share_weights``,
  default 1). The session whose user + project score is smallest goes next; each pick charges
  its subjects as if it ran ``charge_seconds`` (so one light user cannot take a whole pass).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, cast

from bai.manager.domain.model import Slots
from bai.manager.domain.scheduling.types import PendingSession, QueueContext

__all__ = ["DrfPolicy", "FairSharePolicy", "FifoPolicy", "LifoPolicy", "decayed_usage"]


def _age(s: PendingSession) -> tuple[datetime, str]:
    return (s.created_at, str(s.id))


class FifoPolicy:
    name: ClassVar[str] = "fifo"
    needs_usage: ClassVar[bool] = False
    needs_allocations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})

    def order(self, queue: Sequence[PendingSession], ctx: QueueContext) -> list[PendingSession]:
        return sorted(queue, key=_age)


class LifoPolicy:
    name: ClassVar[str] = "lifo"
    needs_usage: ClassVar[bool] = False
    needs_allocations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})

    def order(self, queue: Sequence[PendingSession], ctx: QueueContext) -> list[PendingSession]:
        return sorted(queue, key=_age, reverse=True)


def _fraction(amounts: Slots, capacity: Slots) -> dict[str, float]:
    return {k: float(v / capacity[k]) for k, v in amounts.items() if capacity.get(k, 0) > 0}


def _progressive(
    queue: Sequence[PendingSession],
    subject: Callable[[PendingSession], Hashable],
    score: Callable[[Hashable], float],
    charge: Callable[[PendingSession], None],
) -> list[PendingSession]:
    """Repeatedly takes the oldest session of the subject with the smallest score."""
    queues: dict[Hashable, list[PendingSession]] = defaultdict(list)
    for s in sorted(queue, key=_age, reverse=True):
        queues[subject(s)].append(s)  # oldest last: pop() takes it
    heap = [(score(k), _age(q[-1]), i, k) for i, (k, q) in enumerate(queues.items())]
    heapq.heapify(heap)
    ordered: list[PendingSession] = []
    while heap:
        popped, _, i, k = heapq.heappop(heap)
        current = score(k)
        if current > popped:  # another pick raised this subject's score (a shared project)
            heapq.heappush(heap, (current, _age(queues[k][-1]), i, k))
            continue
        session = queues[k].pop()
        ordered.append(session)
        charge(session)
        if queues[k]:
            heapq.heappush(heap, (score(k), _age(queues[k][-1]), i, k))
    return ordered


class DrfPolicy:
    name: ClassVar[str] = "drf"
    needs_usage: ClassVar[bool] = False
    needs_allocations: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})

    def order(self, queue: Sequence[PendingSession], ctx: QueueContext) -> list[PendingSession]:
        shares: dict[Hashable, dict[str, float]] = defaultdict(dict)
        for a in ctx.allocations:
            _accumulate(shares[a.access_key], _fraction(a.slots, ctx.capacity))

        def dominant(key: Hashable) -> float:
            return max(shares[key].values(), default=0.0)

        def charge(s: PendingSession) -> None:
            _accumulate(shares[s.access_key], _fraction(s.total, ctx.capacity))

        return _progressive(queue, lambda s: s.access_key, dominant, charge)


def _accumulate(into: dict[str, float], more: Mapping[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


def decayed_usage(ctx: QueueContext, *, window_seconds: float,
                  half_life_seconds: float) -> dict[tuple[str, str], float]:
    """(scope, subject) → capacity-normalized slot-seconds, exponentially decayed."""
    usage: dict[tuple[str, str], float] = defaultdict(float)
    now, rate = ctx.now, math.log(2) / half_life_seconds
    for sample in ctx.usage:
        end = min(sample.end or now, now)
        start = max(sample.start, now.fromtimestamp(now.timestamp() - window_seconds, now.tzinfo))
        if end <= start:
            continue
        age_end, age_start = (now - end).total_seconds(), (now - start).total_seconds()
        # integral of 2^(-age/half_life) over the interval
        weight = (math.exp(-rate * age_end) - math.exp(-rate * age_start)) / rate
        cost = sum(_fraction(sample.slots, ctx.capacity).values()) * weight
        usage[("user", sample.user)] += cost
        usage[("project", sample.project_key)] += cost
    return usage


class FairSharePolicy:
    name: ClassVar[str] = "fair-share"
    needs_usage: ClassVar[bool] = True
    needs_allocations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})
        self.window_seconds = _positive(self.options, "window_seconds", 7 * 86400.0)
        self.half_life_seconds = _positive(self.options, "half_life_seconds", 86400.0)
        self.charge_seconds = _positive(self.options, "charge_seconds", 3600.0)

    def order(self, queue: Sequence[PendingSession], ctx: QueueContext) -> list[PendingSession]:
        usage = decayed_usage(ctx, window_seconds=self.window_seconds,
                              half_life_seconds=self.half_life_seconds)

        def weight(scope: str, subject: str) -> float:
            return float(ctx.weights.get((scope, subject), Decimal(1)))

        def score(key: Hashable) -> float:
            user, project = cast(tuple[str, str], key)
            return (usage[("user", user)] / weight("user", user)
                    + usage[("project", project)] / weight("project", project))

        def charge(s: PendingSession) -> None:
            cost = sum(_fraction(s.total, ctx.capacity).values()) * self.charge_seconds
            usage[("user", s.user)] += cost
            usage[("project", s.project_key)] += cost

        return _progressive(queue, lambda s: (s.user, s.project_key), score, charge)


def _positive(options: Mapping[str, object], key: str, default: float) -> float:
    value = options.get(key, default)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if number > 0 and math.isfinite(number) else default
