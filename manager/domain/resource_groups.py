"""Resource-group (scaling-group) and fair-share-weight administration use cases.

Each use case validates its input (names, plugin names against the installed entry points,
plugin options by instantiating the plugin, weights), asks :mod:`bai.manager.domain.rbac`
whether the caller may do it, then makes one repository call: one transaction, which also
checks that referenced domains and projects exist and, for a delete, that no agent or pending
session still uses the group. The scheduler re-reads groups and weights every pass
(:meth:`~bai.manager.domain.scheduling.SchedulingRepository.resource_groups`), so a change here
takes effect on the next pass without any notification.

Simplification: access lists hold names (``domain`` and ``domain/project``), as the scheduler
matches them; renaming a project does not rewrite the lists that name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from bai.common.errors import InvalidArgument, NotFound
from bai.manager.domain import rbac
from bai.manager.domain.admin import Page
from bai.manager.domain.model import AgentRecord, Principal, Role, utcnow
from bai.manager.domain.rbac import Action, Kind, Target
from bai.manager.domain.scheduling.plugins import (
    SCHEDULER_GROUP,
    SELECTOR_GROUP,
    PluginRegistry,
)

__all__ = [
    "SCOPES",
    "NewResourceGroup",
    "ResourceGroupRepository",
    "ResourceGroupService",
    "ResourceGroupView",
    "WeightView",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SCOPES = ("project", "user")
"""Fair-share weight scopes: a project (subject ``domain/project``) or a user (its e-mail)."""
_MAX_WEIGHT = Decimal(1_000_000)
_GROUP_FIELDS = frozenset({"description", "is_active", "scheduler", "agent_selector",
                           "scheduler_opts", "allowed_domains", "allowed_projects"})


@dataclass(frozen=True, slots=True)
class ResourceGroupView:
    name: str
    description: str
    is_active: bool
    scheduler: str
    agent_selector: str
    scheduler_opts: dict[str, Any]
    allowed_domains: tuple[str, ...]
    """Empty: every domain."""
    allowed_projects: tuple[str, ...]
    """``domain/project`` names; empty: every project."""
    created_at: datetime
    agent_count: int = 0
    """Agents that report the group and are not TERMINATED."""
    pending_session_count: int = 0
    """PENDING sessions that asked for the group."""


@dataclass(frozen=True, slots=True)
class NewResourceGroup:
    """A group to create; project references are still ids or ``domain/project`` names."""

    name: str
    description: str = ""
    is_active: bool = True
    scheduler: str = "fifo"
    agent_selector: str = "dispersed"
    scheduler_opts: dict[str, Any] = field(default_factory=dict)
    allowed_domains: tuple[str, ...] = ()
    allowed_projects: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class WeightView:
    scope: str
    """``project`` or ``user``."""
    subject: str
    weight: Decimal


class ResourceGroupRepository(Protocol):
    async def list_groups(self) -> list[ResourceGroupView]:
        """Every group with its counts, by name (groups are few: filtered by the caller)."""
        ...

    async def get_group(self, name: str) -> ResourceGroupView | None: ...

    async def create_group(self, group: NewResourceGroup) -> ResourceGroupView:
        """Resolves project references and checks domains (NOT_FOUND), then inserts
        (ALREADY_EXISTS on a taken name), in one transaction."""
        ...

    async def update_group(self, name: str, changes: Mapping[str, Any]) -> ResourceGroupView:
        """``allowed_projects`` in ``changes`` are references, resolved as for create."""
        ...

    async def delete_group(self, name: str) -> None:
        """FAILED_PRECONDITION while agents (not TERMINATED) or PENDING sessions use it."""
        ...

    async def change_access(self, name: str, *, add: bool, domains: Sequence[str],
                            projects: Sequence[str]) -> ResourceGroupView: ...

    async def list_agents(self, group: str, page: Page) -> tuple[list[AgentRecord], int]: ...

    async def list_weights(self, scope: str | None, domain: str | None,
                           page: Page) -> tuple[list[WeightView], int]:
        """Stored weights; with ``domain``, only its projects' and its users'."""
        ...

    async def set_weight(self, scope: str, subject: str, weight: Decimal) -> WeightView:
        """Normalizes the subject (project id → ``domain/project``, e-mail lower-cased),
        NOT_FOUND when it does not exist; weight 1 deletes the row."""
        ...


def _target(g: ResourceGroupView) -> Target:
    return Target(Kind.RESOURCE_GROUP, allowed_domains=frozenset(g.allowed_domains),
                  allowed_projects=frozenset(g.allowed_projects))


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid resource group name {name!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit", reason="INVALID_NAME")


def parse_weight(raw: str) -> Decimal:
    """A positive, finite decimal of at most 1,000,000 (Decimal: no float rounding)."""
    try:
        weight = Decimal(raw.strip())
    except InvalidOperation:
        raise InvalidArgument(f"weight {raw!r} is not a decimal number",
                              reason="INVALID_WEIGHT") from None
    if not weight.is_finite() or weight <= 0 or weight > _MAX_WEIGHT:
        raise InvalidArgument(f"weight must be positive and at most {_MAX_WEIGHT} (got {raw!r})",
                              reason="INVALID_WEIGHT")
    normalized = Decimal(format(weight.normalize(), "f"))
    if len(str(normalized)) > 32:  # the stored column's width
        raise InvalidArgument(f"weight {raw!r} has too many digits (at most 32 characters)",
                              reason="INVALID_WEIGHT")
    return normalized


class ResourceGroupService:
    def __init__(self, repo: ResourceGroupRepository, plugins: PluginRegistry) -> None:
        self._repo = repo
        self._plugins = plugins

    # ---- validation ------------------------------------------------------------------------

    def _check_plugins(self, scheduler: str, selector: str, options: Mapping[str, Any]) -> None:
        """Unknown names and options a plugin refuses are INVALID_ARGUMENT, naming what exists."""
        for group, kind, name, reason in (
                (SCHEDULER_GROUP, "scheduler", scheduler, "UNKNOWN_SCHEDULER"),
                (SELECTOR_GROUP, "agent selector", selector, "UNKNOWN_AGENT_SELECTOR")):
            installed = self._plugins.names(group)
            if name not in installed:
                raise InvalidArgument(
                    f"unknown {kind} {name!r}; installed ({group}): "
                    f"{', '.join(installed) or 'none'}", reason=reason,
                    metadata={"installed": ",".join(installed)})
        try:  # the dispatcher builds both with these options: refuse what would fail there
            self._plugins.scheduler(scheduler, options)
            self._plugins.selector(selector, options)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"scheduler options refused: {exc}",
                                  reason="INVALID_SCHEDULER_OPTIONS") from exc

    # ---- groups ----------------------------------------------------------------------------

    async def list_groups(self, who: Principal, is_active: bool | None,
                          page: Page) -> tuple[list[ResourceGroupView], int]:
        visible = [g for g in await self._repo.list_groups()
                   if rbac.allows(who, Action.READ, _target(g))
                   and (is_active is None or g.is_active == is_active)]
        return visible[page.offset:page.offset + page.limit], len(visible)

    async def get_group(self, who: Principal, name: str) -> ResourceGroupView:
        group = await self._repo.get_group(name)
        if group is None or not rbac.allows(who, Action.READ, _target(group)):
            raise NotFound(f"resource group {name!r} not found",
                           reason="RESOURCE_GROUP_NOT_FOUND")
        return group

    async def create_group(self, who: Principal, group: NewResourceGroup) -> ResourceGroupView:
        rbac.authorize(who, Action.CREATE, Target(Kind.RESOURCE_GROUP))
        _check_name(group.name)
        group = replace(group, scheduler=group.scheduler or "fifo",
                        agent_selector=group.agent_selector or "dispersed")
        self._check_plugins(group.scheduler, group.agent_selector, group.scheduler_opts)
        return await self._repo.create_group(group)

    async def update_group(self, who: Principal, name: str,
                           changes: Mapping[str, Any]) -> ResourceGroupView:
        rbac.authorize(who, Action.MODIFY, Target(Kind.RESOURCE_GROUP))
        unknown = set(changes) - _GROUP_FIELDS
        if unknown:
            raise InvalidArgument(f"cannot change {', '.join(sorted(unknown))}",
                                  reason="INVALID_FIELD")
        current = await self._repo.get_group(name)
        if current is None:
            raise NotFound(f"resource group {name!r} not found",
                           reason="RESOURCE_GROUP_NOT_FOUND")
        if {"scheduler", "agent_selector", "scheduler_opts"} & set(changes):
            self._check_plugins(changes.get("scheduler", current.scheduler),
                                changes.get("agent_selector", current.agent_selector),
                                changes.get("scheduler_opts", current.scheduler_opts))
        return await self._repo.update_group(name, changes)

    async def delete_group(self, who: Principal, name: str) -> None:
        rbac.authorize(who, Action.DELETE, Target(Kind.RESOURCE_GROUP))
        await self._repo.delete_group(name)

    async def change_access(self, who: Principal, name: str, *, add: bool,
                            domains: Sequence[str],
                            projects: Sequence[str]) -> ResourceGroupView:
        rbac.authorize(who, Action.MODIFY, Target(Kind.RESOURCE_GROUP))
        if not domains and not projects:
            raise InvalidArgument("name at least one domain or project",
                                  reason="NOTHING_TO_CHANGE")
        return await self._repo.change_access(name, add=add, domains=domains,
                                              projects=projects)

    async def agents(self, who: Principal, name: str,
                     page: Page) -> tuple[list[AgentRecord], int]:
        rbac.authorize(who, Action.LIST, Target(Kind.AGENT))
        return await self._repo.list_agents(name, page)

    # ---- fair-share weights ----------------------------------------------------------------

    async def weights(self, who: Principal, scope: str | None,
                      page: Page) -> tuple[list[WeightView], int]:
        rbac.authorize(who, Action.LIST, Target(Kind.FAIR_SHARE_WEIGHT, domain=who.domain))
        if scope is not None and scope not in SCOPES:
            raise InvalidArgument(f"unknown scope {scope!r}; one of {', '.join(SCOPES)}",
                                  reason="INVALID_SCOPE")
        domain = who.domain if who.role is Role.ADMIN else None
        return await self._repo.list_weights(scope, domain, page)

    async def set_weight(self, who: Principal, scope: str, subject: str,
                         weight: str) -> WeightView:
        rbac.authorize(who, Action.MODIFY, Target(Kind.FAIR_SHARE_WEIGHT))
        if scope not in SCOPES:
            raise InvalidArgument(f"scope must be one of {', '.join(SCOPES)} (got {scope})",
                                  reason="INVALID_SCOPE")
        if not subject.strip():
            raise InvalidArgument("subject is required", reason="INVALID_SUBJECT")
        return await self._repo.set_weight(scope, subject.strip(), parse_weight(weight))
