"""Free capacity of the ALIVE agents during one scheduling pass, and the agent-selector contract.

The index is loaded once per pass and updated in memory as placements are decided (the database
re-checks every placement at commit). Per (resource group, image) a pool keeps its agents
sorted by (free cpu, free memory), so that "most free" and "least free that fits" are a bisect
and a short scan even with 5,000 agents, and in id order for round-robin.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import ClassVar, Protocol

from bai.manager.domain import slots
from bai.manager.domain.model import AgentRecord, Slots

__all__ = ["AgentIndex", "AgentPool", "AgentSelector", "Candidate"]

_ZERO = Decimal(0)
_Key = tuple[Decimal, Decimal, int]


class Candidate:
    """One ALIVE agent with what is still free on it in this pass."""

    __slots__ = ("agent", "free", "idx", "images", "pools")

    def __init__(self, agent: AgentRecord, images: frozenset[str], idx: int,
                 free: Slots | None = None) -> None:
        self.agent = agent
        self.images = images
        self.idx = idx
        """Position in agent-id order (ties in the sorted pools break on it)."""
        self.free: Slots = slots.sub(agent.capacity, agent.occupied) if free is None else free
        self.pools: list[AgentPool] = []

    @property
    def id(self) -> str:
        return self.agent.id

    def key(self) -> _Key:
        # -idx: among equally free agents, a backwards scan meets the smallest id first
        return (self.free.get("cpu", _ZERO), self.free.get("mem", _ZERO), -self.idx)

    def fits(self, request: Slots) -> bool:
        return not slots.missing(self.free, request)


class AgentPool:
    """The agents of one resource group holding one image."""

    def __init__(self, name: str, members: Iterable[Candidate]) -> None:
        self.name = name
        """``group/image``; selectors may key their state on it."""
        self.members = sorted(members, key=lambda c: c.idx)
        """In agent-id order."""
        self._position = {c.id: i for i, c in enumerate(self.members)}
        self._keys: list[_Key] = sorted(c.key() for c in self.members)
        self._by_idx = {c.idx: c for c in self.members}
        self._failed: list[Slots] = []
        for c in self.members:
            c.pools.append(self)

    def __len__(self) -> int:
        return len(self.members)

    def get(self, agent_id: str) -> Candidate | None:
        at = self._position.get(agent_id)
        return self.members[at] if at is not None else None

    def most_free(self, request: Slots) -> Candidate | None:
        """The fitting agent with the most free cpu, then memory (smallest id on ties)."""
        need_cpu = request.get("cpu", _ZERO)
        for key in reversed(self._keys):
            if key[0] < need_cpu:
                return None  # every later one has even less cpu free
            cand = self._by_idx[-key[2]]
            if cand.fits(request):
                return cand
        return None

    def least_free(self, request: Slots) -> Candidate | None:
        """The fitting agent with the least free cpu, then memory (bin packing)."""
        start = bisect.bisect_left(self._keys, (request.get("cpu", _ZERO),))
        for key in self._keys[start:]:
            cand = self._by_idx[-key[2]]
            if cand.fits(request):
                return cand
        return None

    def after(self, agent_id: str | None) -> Iterator[Candidate]:
        """Every member once, in id order, starting after ``agent_id`` (wrapping around)."""
        start = 0
        if agent_id is not None:
            start = bisect.bisect_right([c.id for c in self.members], agent_id) \
                if agent_id not in self._position else self._position[agent_id] + 1
        n = len(self.members)
        for i in range(n):
            yield self.members[(start + i) % n]

    # ---- used by the index ---------------------------------------------------------

    def known_to_fail(self, request: Slots) -> bool:
        """A request no smaller than one that already fit nowhere (free space only shrinks)."""
        return any(_covers(request, f) for f in self._failed)

    def failed(self, request: Slots) -> None:
        self._failed.append(request)

    def forget_failures(self) -> None:
        self._failed.clear()

    def _rekey(self, old: _Key, new: _Key) -> None:
        at = bisect.bisect_left(self._keys, old)
        if at < len(self._keys) and self._keys[at] == old:
            del self._keys[at]
        bisect.insort(self._keys, new)

    def _remove(self, cand: Candidate) -> None:
        at = bisect.bisect_left(self._keys, cand.key())
        if at < len(self._keys) and self._keys[at] == cand.key():
            del self._keys[at]
        self.members = [c for c in self.members if c is not cand]
        self._position = {c.id: i for i, c in enumerate(self.members)}
        self._by_idx.pop(cand.idx, None)


def _covers(request: Slots, smaller: Slots) -> bool:
    return all(request.get(k, _ZERO) >= v for k, v in smaller.items())


class AgentSelector(Protocol):
    """Chooses the agent for one session among the pool's agents that fit it."""

    name: ClassVar[str]

    def select(self, pool: AgentPool, request: Slots) -> Candidate | None:
        """The chosen agent; None only when no agent of the pool fits ``request``."""
        ...


class AgentIndex:
    """The candidates of a pass and their pools, kept consistent as free space changes."""

    def __init__(self, agents: Iterable[tuple[AgentRecord, frozenset[str]]]) -> None:
        ordered = sorted(agents, key=lambda a: a[0].id)
        # Thousands of agents share a few (capacity, occupancy) map objects when the snapshot
        # parsed each distinct JSON text once: compute each one's free space once.
        free: dict[tuple[int, int], Slots] = {}
        self.candidates: dict[str, Candidate] = {}
        for i, (a, images) in enumerate(ordered):
            shape = (id(a.capacity), id(a.occupied))
            if shape not in free:
                free[shape] = slots.sub(a.capacity, a.occupied)
            self.candidates[a.id] = Candidate(a, images, i, free[shape])
        self._pools: dict[tuple[str, str], AgentPool] = {}
        self._capacity: dict[str, Slots] = {}

    def pool(self, group: str, image: str) -> AgentPool:
        key = (group, image)
        pool = self._pools.get(key)
        if pool is None:
            pool = AgentPool(f"{group}/{image}", (
                c for c in self.candidates.values()
                if c.agent.resource_group == group and image in c.images))
            self._pools[key] = pool
        return pool

    def in_group(self, group: str) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.agent.resource_group == group]

    def capacity(self, group: str) -> Slots:
        """Total slots of the group's agents at the start of the pass."""
        if group not in self._capacity:
            shared: dict[int, tuple[Slots, int]] = {}  # capacity map → how many agents have it
            for c in self.in_group(group):
                cap, n = shared.get(id(c.agent.capacity), (c.agent.capacity, 0))
                shared[id(cap)] = (cap, n + 1)
            total: Slots = {}
            for cap, n in shared.values():
                total = slots.add(total, slots.scale(cap, n))
            self._capacity[group] = total
        return self._capacity[group]

    def pick(self, pool: AgentPool, selector: AgentSelector, request: Slots) -> Candidate | None:
        if pool.known_to_fail(request):
            return None
        chosen = selector.select(pool, request)
        if chosen is None:
            pool.failed(request)
        return chosen

    def set_free(self, cand: Candidate, free: Slots) -> None:
        old = cand.key()
        cand.free = free
        new = cand.key()
        for pool in cand.pools:
            pool._rekey(old, new)

    def take(self, cand: Candidate, request: Slots) -> None:
        self.set_free(cand, slots.sub(cand.free, request))

    def refresh(self, agent: AgentRecord | None, agent_id: str) -> None:
        """Another writer changed the agent: its fresh row (None: gone or not ALIVE)."""
        cand = self.candidates.get(agent_id)
        if cand is None:
            return
        if agent is None:
            for pool in cand.pools:
                pool._remove(cand)
            cand.pools.clear()
            del self.candidates[agent_id]
            return
        cand.agent = agent
        self.set_free(cand, slots.sub(agent.capacity, agent.occupied))

    def forget_failures(self) -> None:
        for pool in self._pools.values():
            pool.forget_failures()
