"""Loading scheduler and agent-selector plugins by name from their entry-point groups.

Plugins are looked up in the installed distributions' entry points
(``backendai_scheduler_v10`` and ``backendai_agentselector_v10``, Backend.AI's group names), so
a third party adds one by installing a package; bai's own are declared in pyproject.toml. One
instance per (name, options) lives as long as the registry (round-robin keeps its cursor there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from bai.manager.domain.scheduling.pool import AgentSelector
from bai.manager.domain.scheduling.types import SchedulerPolicy

__all__ = ["SCHEDULER_GROUP", "SELECTOR_GROUP", "PluginNotFound", "PluginRegistry"]

log = logging.getLogger(__name__)
SCHEDULER_GROUP = "backendai_scheduler_v10"
SELECTOR_GROUP = "backendai_agentselector_v10"


class PluginNotFound(LookupError):
    """No installed plugin has the name (``available`` lists those that exist)."""

    def __init__(self, group: str, name: str, available: list[str]) -> None:
        super().__init__(f"no {group} plugin named {name!r} (installed: "
                         f"{', '.join(available) or 'none'})")
        self.group, self.name, self.available = group, name, available


class PluginRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, dict[str, Callable[..., Any]]] = {}
        self._instances: dict[tuple[str, str, str], Any] = {}

    def names(self, group: str) -> list[str]:
        return sorted(self._group(group))

    def _group(self, group: str) -> dict[str, Callable[..., Any]]:
        found = self._factories.get(group)
        if found is None:
            found = {}
            for ep in entry_points(group=group):
                try:
                    found[ep.name] = ep.load()
                except Exception:  # a broken third-party plugin must not stop scheduling
                    log.exception("cannot load %s plugin %r (%s)", group, ep.name, ep.value)
            self._factories[group] = found
        return found

    def _get(self, group: str, name: str, options: Mapping[str, object]) -> Any:
        key = (group, name, json.dumps(options, sort_keys=True, default=str))
        instance = self._instances.get(key)
        if instance is None:
            factory = self._group(group).get(name)
            if factory is None:
                raise PluginNotFound(group, name, self.names(group))
            instance = self._instances[key] = factory(options)
        return instance

    def scheduler(self, name: str, options: Mapping[str, object]) -> SchedulerPolicy:
        policy: SchedulerPolicy = self._get(SCHEDULER_GROUP, name, options)
        return policy

    def selector(self, name: str, options: Mapping[str, object]) -> AgentSelector:
        selector: AgentSelector = self._get(SELECTOR_GROUP, name, options)
        return selector
