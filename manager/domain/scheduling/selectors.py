"""Agent selectors (entry-point group ``backendai_agentselector_v10``).

* ``dispersed``: the fitting agent with the most free cpu, then memory: spreads load, leaves
  every agent some headroom (Backend.AI's default).
* ``concentrated``: the fitting agent with the least free cpu, then memory: bin packing, keeps
  whole agents free for big sessions (and lets idle agents be scaled in).
* ``round-robin``: the next fitting agent in id order after the one chosen last in the same
  pool (kept in memory per manager process; a restart starts over at the first id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from bai.manager.domain.model import Slots
from bai.manager.domain.scheduling.pool import AgentPool, Candidate

__all__ = ["ConcentratedSelector", "DispersedSelector", "RoundRobinSelector"]


class DispersedSelector:
    name: ClassVar[str] = "dispersed"

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})

    def select(self, pool: AgentPool, request: Slots) -> Candidate | None:
        return pool.most_free(request)


class ConcentratedSelector:
    name: ClassVar[str] = "concentrated"

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})

    def select(self, pool: AgentPool, request: Slots) -> Candidate | None:
        return pool.least_free(request)


class RoundRobinSelector:
    name: ClassVar[str] = "round-robin"

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = dict(options or {})
        self._last: dict[str, str] = {}
        """Pool name → id of the agent chosen last."""

    def select(self, pool: AgentPool, request: Slots) -> Candidate | None:
        for cand in pool.after(self._last.get(pool.name)):
            if cand.fits(request):
                self._last[pool.name] = cand.id
                return cand
        return None
