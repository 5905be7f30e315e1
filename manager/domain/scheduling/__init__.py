"""Sokovan-style scheduling: resource groups, plugin schedulers and agent selectors, predicates.

* :mod:`.types`: pending sessions, resource groups, limits, the scheduler-plugin contract;
* :mod:`.pool`: free capacity during a pass, the agent-selector contract;
* :mod:`.policies`: fifo, lifo, drf, fair-share (``backendai_scheduler_v10``);
* :mod:`.selectors`: dispersed, concentrated, round-robin (``backendai_agentselector_v10``);
* :mod:`.plugins`: loading them by name from entry points;
* :mod:`.predicates`: why a session may not go yet;
* :mod:`.dispatcher`: one pass, committed in batched transactions;
* :mod:`.queue`: a pending session's position in its group's queue.
"""

from __future__ import annotations

from bai.manager.domain.scheduling.dispatcher import INSUFFICIENT, SessionQueue, SessionScheduler
from bai.manager.domain.scheduling.plugins import (
    SCHEDULER_GROUP,
    SELECTOR_GROUP,
    PluginNotFound,
    PluginRegistry,
)
from bai.manager.domain.scheduling.ports import PendingNote, SchedulingRepository
from bai.manager.domain.scheduling.queue import QueueView
from bai.manager.domain.scheduling.types import (
    Allocation,
    DependencyState,
    KeypairLimits,
    PendingSession,
    PolicyLimits,
    QueueContext,
    ResourceGroup,
    UsageSample,
)

__all__ = [
    "INSUFFICIENT",
    "SCHEDULER_GROUP",
    "SELECTOR_GROUP",
    "Allocation",
    "DependencyState",
    "KeypairLimits",
    "PendingNote",
    "PendingSession",
    "PluginNotFound",
    "PluginRegistry",
    "PolicyLimits",
    "QueueContext",
    "QueueView",
    "ResourceGroup",
    "SchedulingRepository",
    "SessionQueue",
    "SessionScheduler",
    "UsageSample",
]
