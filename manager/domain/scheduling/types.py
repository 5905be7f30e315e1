"""What the scheduler works on: pending sessions, resource groups, limits, and the plugin contracts.

A scheduler plugin (entry-point group ``backendai_scheduler_v10``) orders a resource group's
queue; an agent selector plugin (``backendai_agentselector_v10``, contract in
:mod:`~bai.manager.domain.scheduling.pool`) picks one agent among those that fit. Both are plain
classes instantiated with their options (a mapping) and never touch the database: the dispatcher
hands them what they need.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Protocol

from bai.manager.domain import slots
from bai.manager.domain.model import SessionState, Slots

__all__ = [
    "DEFAULT_GROUP",
    "Allocation",
    "DependencyState",
    "KeypairLimits",
    "PendingSession",
    "PolicyLimits",
    "QueueContext",
    "ResourceGroup",
    "SchedulerPolicy",
    "UsageSample",
]


@dataclass(frozen=True, slots=True)
class PendingSession:
    """A PENDING session as the scheduler sees it (a lean read: no kernels, no history)."""

    id: uuid.UUID
    name: str
    access_key: str
    user: str
    """The owner's e-mail (fair-share subject)."""
    domain: str
    project: str
    resource_group: str
    image: str
    resources: Slots
    """Per kernel."""
    cluster_size: int
    priority: int
    created_at: datetime
    starts_at: datetime | None = None
    dependencies: tuple[uuid.UUID, ...] = ()
    reason: str = ""
    message: str = ""

    @property
    def total(self) -> Slots:
        """What the session needs on its one agent (every kernel together; read-only)."""
        if self.cluster_size == 1:
            return self.resources  # a pass asks several times per session: no copy
        return slots.scale(self.resources, self.cluster_size)

    @property
    def project_key(self) -> str:
        return f"{self.domain}/{self.project}"


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """A resource group (scaling group); a name with no row behaves as this default."""

    name: str
    scheduler: str = "fifo"
    agent_selector: str = "dispersed"
    scheduler_opts: Mapping[str, object] = field(default_factory=dict)
    allowed_domains: frozenset[str] = frozenset()
    """Empty: every domain."""
    allowed_projects: frozenset[str] = frozenset()
    """``domain/project``; empty: every project."""
    is_active: bool = True
    known: bool = True
    """False when no row exists (agents may still report the name)."""

    def admits(self, domain: str, project: str) -> bool:
        if self.allowed_domains and domain not in self.allowed_domains:
            return False
        return not self.allowed_projects or f"{domain}/{project}" in self.allowed_projects


DEFAULT_GROUP = ResourceGroup("default")


@dataclass(frozen=True, slots=True)
class KeypairLimits:
    """A keypair resource policy, as the scheduler enforces it."""

    policy: str
    max_concurrent_sessions: int | None
    """None: unlimited."""
    total_slots: Slots
    """Cap on the key's combined occupancy, per named slot."""
    limited_unspecified: bool = False
    """True (Backend.AI's LIMITED): a slot missing from ``total_slots`` is capped at 0."""
    max_pending_sessions: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Every limit that applies to the pending sessions of a pass."""

    keypairs: Mapping[str, KeypairLimits] = field(default_factory=dict)
    """By access key (keys without a policy are unlimited)."""
    projects: Mapping[str, Slots] = field(default_factory=dict)
    """Total slots per ``domain/project`` (absent or empty: unlimited)."""
    users: Mapping[str, Slots] = field(default_factory=dict)
    """Total slots per user e-mail (absent or empty: unlimited)."""

    @property
    def empty(self) -> bool:
        return not (any(self.projects.values()) or any(self.users.values()) or any(
            k.max_concurrent_sessions is not None or k.total_slots or k.limited_unspecified
            for k in self.keypairs.values()))


@dataclass(frozen=True, slots=True)
class Allocation:
    """What one live, placed session (SCHEDULED … RUNNING … TERMINATING) occupies."""

    access_key: str
    user: str
    project_key: str
    resource_group: str
    slots: Slots


@dataclass(frozen=True, slots=True)
class DependencyState:
    """Where a session another one depends on stands."""

    name: str
    state: SessionState
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class UsageSample:
    """A session's occupancy over an interval, for fair-share usage."""

    user: str
    project_key: str
    slots: Slots
    start: datetime
    end: datetime | None
    """None: still running."""


@dataclass
class QueueContext:
    """What a scheduler plugin may use to order a group's queue."""

    group: ResourceGroup
    now: datetime
    capacity: Slots
    """Total slots of the group's ALIVE agents."""
    allocations: Sequence[Allocation] = ()
    """Live placed sessions in the group."""
    usage: Sequence[UsageSample] = ()
    """Recent usage (only loaded for plugins that set ``needs_usage``)."""
    weights: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    """(scope, subject) → fair-share weight; scope "user" or "project"."""


class SchedulerPolicy(Protocol):
    """Orders the queue of one resource group (highest priority tier at a time)."""

    name: ClassVar[str]
    needs_usage: ClassVar[bool]
    """True: the dispatcher loads usage samples and weights into the context."""
    needs_allocations: ClassVar[bool]
    """True: the dispatcher loads what placed sessions occupy into the context."""

    def order(
        self, queue: Sequence[PendingSession], ctx: QueueContext
    ) -> list[PendingSession]: ...

