"""Predicates: what must hold before a pending session is even offered to an agent selector.

Each returns a :class:`Verdict` (a CamelCase reason and a human message, shown as the session's
status info) or None when the session may proceed. They run in this order, cheapest and most
fundamental first:

1. ``ResourceGroupInactive`` / ``ResourceGroupNotAllowed``: the group is disabled, or the
   session's domain/project may not use it.
2. ``StartTimeNotReached``: the session asked to start later (``starts_at``).
3. ``DependenciesNotReady``: a session it depends on has not finished; ``DependencyFailed``
   (the session is CANCELLED) when one ended in ERROR / CANCELLED or with a non-zero exit code.
4. ``KeypairConcurrencyLimit``, ``KeypairResourceLimit``, ``UserResourceLimit``,
   ``ProjectResourceLimit``: the owner's resource policies, counting what is already placed and
   what this pass has decided so far.

Image minimum resources are checked when the session is created (a request below the image's
``ai.backend.resource.min.*`` is rejected with BELOW_IMAGE_MINIMUM), so no pending session can
violate them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bai.manager.domain import slots
from bai.manager.domain.model import SessionState, Slots
from bai.manager.domain.scheduling.types import (
    DEFAULT_GROUP,
    Allocation,
    DependencyState,
    PendingSession,
    PolicyLimits,
    ResourceGroup,
)

__all__ = ["Tally", "Verdict", "check"]

S = SessionState


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str
    message: str
    cancel: bool = False
    """True: the session can never run (it moves to CANCELLED with this reason)."""


@dataclass
class Tally:
    """What the owners occupy: placed sessions plus this pass's decisions."""

    sessions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Live placed sessions per access key."""
    by_key: dict[str, Slots] = field(default_factory=lambda: defaultdict(dict))
    by_user: dict[str, Slots] = field(default_factory=lambda: defaultdict(dict))
    by_project: dict[str, Slots] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def of(cls, allocations: list[Allocation]) -> Tally:
        tally = cls()
        for a in allocations:
            tally.add(a.access_key, a.user, a.project_key, a.slots)
        return tally

    def add(self, access_key: str, user: str, project: str, amount: Slots) -> None:
        self.sessions[access_key] += 1
        self.by_key[access_key] = slots.add(self.by_key[access_key], amount)
        self.by_user[user] = slots.add(self.by_user[user], amount)
        self.by_project[project] = slots.add(self.by_project[project], amount)


def check(
    s: PendingSession,
    *,
    now: datetime,
    groups: Mapping[str, ResourceGroup],
    dependencies: Mapping[uuid.UUID, DependencyState],
    limits: PolicyLimits,
    tally: Tally,
) -> Verdict | None:
    return (_group(s, groups) or _start_time(s, now) or _dependencies(s, dependencies)
            or _policies(s, limits, tally))


def _group(s: PendingSession, groups: Mapping[str, ResourceGroup]) -> Verdict | None:
    group = groups.get(s.resource_group)
    if group is None:
        return None  # no row: open to everyone; the agents (if any) decide
    if not group.is_active:
        return Verdict("ResourceGroupInactive", f"resource group {group.name!r} is disabled")
    if not group.admits(s.domain, s.project):
        allowed = sorted(group.allowed_projects) or sorted(group.allowed_domains)
        return Verdict("ResourceGroupNotAllowed",
                       f"project {s.project_key} may not use resource group {group.name!r} "
                       f"(allowed: {', '.join(allowed)})")
    return None


def _start_time(s: PendingSession, now: datetime) -> Verdict | None:
    if s.starts_at is not None and s.starts_at > now:
        return Verdict("StartTimeNotReached",
                       f"scheduled to start at {s.starts_at.isoformat(timespec='seconds')}")
    return None


def _succeeded(d: DependencyState) -> bool:
    return d.state is S.TERMINATED and not d.exit_code


def _dependencies(
    s: PendingSession, states: Mapping[uuid.UUID, DependencyState]
) -> Verdict | None:
    waiting: list[str] = []
    for dep_id in s.dependencies:
        dep = states.get(dep_id)
        if dep is None:
            return Verdict("DependencyFailed", f"session {dep_id} it depends on no longer "
                           "exists", cancel=True)
        if dep.state in (S.ERROR, S.CANCELLED) or (dep.state is S.TERMINATED
                                                    and not _succeeded(dep)):
            how = f"{dep.state}" + (f" with exit code {dep.exit_code}"
                                    if dep.exit_code else "")
            return Verdict("DependencyFailed",
                           f"session {dep.name} ({dep_id}) it depends on ended {how}",
                           cancel=True)
        if not _succeeded(dep):
            waiting.append(f"{dep.name} ({dep.state})")
    if waiting:
        return Verdict("DependenciesNotReady", f"waiting for {', '.join(waiting)} to finish")
    return None


def _over(used: Slots, request: Slots, cap: Slots, limited_unspecified: bool) -> Slots:
    """Per slot, how far ``used + request`` would exceed ``cap``."""
    over: Slots = {}
    for slot, amount in request.items():
        limit = cap.get(slot)
        if limit is None:
            if not limited_unspecified:
                continue
            limit = Decimal(0)
        total = used.get(slot, Decimal(0)) + amount
        if total > limit:
            over[slot] = limit
    return over


def _policies(s: PendingSession, limits: PolicyLimits, tally: Tally) -> Verdict | None:
    request = s.total
    key = limits.keypairs.get(s.access_key)
    if key is not None:
        most = key.max_concurrent_sessions
        if most is not None and tally.sessions[s.access_key] >= most:
            return Verdict("KeypairConcurrencyLimit",
                           f"access key {s.access_key} already runs {tally.sessions[s.access_key]}"
                           f" sessions, the most its resource policy {key.policy!r} allows")
        over = _over(tally.by_key[s.access_key], request, key.total_slots,
                     key.limited_unspecified)
        if over:
            return Verdict("KeypairResourceLimit",
                           f"needs {slots.describe(request)}; with what it occupies, access key "
                           f"{s.access_key} would exceed its resource policy {key.policy!r} "
                           f"(limit {slots.describe(over)})")
    for reason, who, used, cap in (
        ("UserResourceLimit", f"user {s.user}", tally.by_user[s.user],
         limits.users.get(s.user, {})),
        ("ProjectResourceLimit", f"project {s.project_key}", tally.by_project[s.project_key],
         limits.projects.get(s.project_key, {})),
    ):
        over = _over(used, request, cap, False)
        if over:
            return Verdict(reason, f"needs {slots.describe(request)}; with what it occupies, "
                           f"{who} would exceed its limit ({slots.describe(over)})")
    return None


def group_of(groups: Mapping[str, ResourceGroup], name: str) -> ResourceGroup:
    found = groups.get(name)
    if found is not None:
        return found
    return ResourceGroup(name, known=False) if name != DEFAULT_GROUP.name else DEFAULT_GROUP
