"""SQL side of resource-group and fair-share administration
(:mod:`bai.manager.domain.resource_groups`).

Every write is one transaction that checks its preconditions first (referenced domains and
projects exist; no agent or pending session uses a group being deleted) and locks the group row
it changes (``FOR UPDATE`` on PostgreSQL; SQLite writes are serialized by ``BEGIN IMMEDIATE``).
A taken name is caught by the primary key, not by a SELECT. The scheduler's own reads of these
tables live in :mod:`bai.manager.adapters.db.scheduling`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from bai.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from bai.manager.adapters.db.admin import SqlAdminRepository
from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import (
    AgentRow,
    DomainRow,
    FairShareWeightRow,
    ProjectRow,
    ResourceGroupRow,
    SessionRow,
    UserRow,
)
from bai.manager.domain.admin import Page
from bai.manager.domain.model import AgentRecord, SessionState
from bai.manager.domain.resource_groups import NewResourceGroup, ResourceGroupView, WeightView
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SqlResourceGroupRepository"]

T = TypeVar("T")
_TERMINATED = "TERMINATED"


def _group_of_session() -> ColumnElement[str]:
    """The resource group a session asked for (sessions without one use "default")."""
    return func.coalesce(SessionRow.spec["resource_group"].as_string(), "default")


def _view(row: ResourceGroupRow, agents: int = 0, pending: int = 0) -> ResourceGroupView:
    return ResourceGroupView(
        name=row.name, description=row.description or "", is_active=row.is_active,
        scheduler=row.scheduler, agent_selector=row.agent_selector,
        scheduler_opts=dict(row.scheduler_opts or {}),
        allowed_domains=tuple(sorted(str(d) for d in row.allowed_domains or ())),
        allowed_projects=tuple(sorted(str(p) for p in row.allowed_projects or ())),
        created_at=row.created_at, agent_count=agents, pending_session_count=pending)


def _not_found(name: str) -> NotFound:
    return NotFound(f"resource group {name!r} not found", reason="RESOURCE_GROUP_NOT_FOUND")


async def _counts(s: AsyncSession, names: Sequence[str] | None = None) -> tuple[
        dict[str, int], dict[str, int]]:
    """(agents not TERMINATED, PENDING sessions) per group name."""
    agents_q = (select(AgentRow.resource_group, func.count())
                .where(AgentRow.status != _TERMINATED).group_by(AgentRow.resource_group))
    group = _group_of_session()
    pending_q = (select(group, func.count())
                 .where(SessionRow.state == SessionState.PENDING.value).group_by(group))
    if names is not None:
        agents_q = agents_q.where(AgentRow.resource_group.in_(names))
        pending_q = pending_q.where(group.in_(names))
    agents = {str(n): int(c) for n, c in (await s.execute(agents_q)).all()}
    pending = {str(n): int(c) for n, c in (await s.execute(pending_q)).all()}
    return agents, pending


async def _locked_group(s: AsyncSession, name: str) -> ResourceGroupRow:
    row = (await s.scalars(select(ResourceGroupRow).where(ResourceGroupRow.name == name)
                           .with_for_update())).first()
    if row is None:
        raise _not_found(name)
    return row


async def _check_domains(s: AsyncSession, names: Sequence[str]) -> list[str]:
    wanted = sorted({n.strip() for n in names})
    if not wanted:
        return []
    found = set(await s.scalars(select(DomainRow.name).where(DomainRow.name.in_(wanted))))
    missing = [n for n in wanted if n not in found]
    if missing:
        raise NotFound(f"no such domain: {', '.join(missing)}", reason="DOMAIN_NOT_FOUND")
    return wanted


async def _project_key(s: AsyncSession, ref: str, *, must_exist: bool = True) -> str:
    """``domain/project`` for a project id or a ``domain/project`` name."""
    ref = ref.strip()
    try:
        project_id = uuid.UUID(ref)
    except ValueError:
        project_id = None
    if project_id is not None:
        row = await s.get(ProjectRow, project_id)
        if row is None:
            raise NotFound(f"project {ref} not found", reason="PROJECT_NOT_FOUND")
        return f"{row.domain_name}/{row.name}"
    domain, sep, name = ref.partition("/")
    if not sep or not domain or not name:
        raise InvalidArgument(f"project reference {ref!r} is neither a project id nor "
                              "'domain/project'", reason="INVALID_PROJECT_REF")
    if must_exist:
        exists = await s.scalar(select(func.count()).select_from(ProjectRow).where(
            ProjectRow.domain_name == domain, ProjectRow.name == name))
        if not exists:
            raise NotFound(f"project {ref!r} not found", reason="PROJECT_NOT_FOUND")
    return f"{domain}/{name}"


async def _project_keys(s: AsyncSession, refs: Sequence[str], *,
                        must_exist: bool = True) -> list[str]:
    return sorted({await _project_key(s, r, must_exist=must_exist) for r in refs})


class SqlResourceGroupRepository:
    """Implements :class:`~bai.manager.domain.resource_groups.ResourceGroupRepository`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._admin = SqlAdminRepository(db)

    async def _write(self, name: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        try:
            async with self._db.write() as s:
                return await work(s)
        except IntegrityError as exc:
            raise AlreadyExists(f"resource group {name!r} already exists",
                                reason="ALREADY_EXISTS") from exc

    async def _reread(self, s: AsyncSession, row: ResourceGroupRow) -> ResourceGroupView:
        await s.flush()
        agents, pending = await _counts(s, [row.name])
        return _view(row, agents.get(row.name, 0), pending.get(row.name, 0))

    # ---- groups --------------------------------------------------------------------------

    async def list_groups(self) -> list[ResourceGroupView]:
        async with self._db.read() as s:
            rows = (await s.scalars(select(ResourceGroupRow)
                                    .order_by(ResourceGroupRow.name))).all()
            agents, pending = await _counts(s)
        return [_view(r, agents.get(r.name, 0), pending.get(r.name, 0)) for r in rows]

    async def get_group(self, name: str) -> ResourceGroupView | None:
        async with self._db.read() as s:
            row = await s.get(ResourceGroupRow, name)
            if row is None:
                return None
            agents, pending = await _counts(s, [name])
        return _view(row, agents.get(name, 0), pending.get(name, 0))

    async def create_group(self, group: NewResourceGroup) -> ResourceGroupView:
        async def work(s: AsyncSession) -> ResourceGroupView:
            row = ResourceGroupRow(
                name=group.name, description=group.description, is_active=group.is_active,
                scheduler=group.scheduler, agent_selector=group.agent_selector,
                scheduler_opts=dict(group.scheduler_opts),
                allowed_domains=await _check_domains(s, group.allowed_domains),
                allowed_projects=await _project_keys(s, group.allowed_projects),
                created_at=group.created_at)
            s.add(row)
            return await self._reread(s, row)

        return await self._write(group.name, work)

    async def update_group(self, name: str, changes: Mapping[str, Any]) -> ResourceGroupView:
        async def work(s: AsyncSession) -> ResourceGroupView:
            row = await _locked_group(s, name)
            for key, value in changes.items():
                if key == "allowed_domains":
                    value = await _check_domains(s, value)
                elif key == "allowed_projects":
                    value = await _project_keys(s, value)
                elif key == "scheduler_opts":
                    value = dict(value)
                setattr(row, key, value)
            return await self._reread(s, row)

        return await self._write(name, work)

    async def delete_group(self, name: str) -> None:
        async def work(s: AsyncSession) -> None:
            await _locked_group(s, name)
            agents, pending = await _counts(s, [name])
            if agents.get(name) or pending.get(name):
                raise FailedPrecondition(
                    f"resource group {name!r} still has {agents.get(name, 0)} agent(s) and "
                    f"{pending.get(name, 0)} pending session(s)",
                    reason="RESOURCE_GROUP_IN_USE")
            await s.execute(delete(ResourceGroupRow).where(ResourceGroupRow.name == name))

        await self._write(name, work)

    async def change_access(self, name: str, *, add: bool, domains: Sequence[str],
                            projects: Sequence[str]) -> ResourceGroupView:
        async def work(s: AsyncSession) -> ResourceGroupView:
            row = await _locked_group(s, name)
            current_domains = {str(d) for d in row.allowed_domains or ()}
            current_projects = {str(p) for p in row.allowed_projects or ()}
            if add:
                current_domains |= set(await _check_domains(s, domains))
                current_projects |= set(await _project_keys(s, projects))
            else:  # names of deleted domains/projects must still be removable
                current_domains -= {d.strip() for d in domains}
                current_projects -= set(await _project_keys(s, projects, must_exist=False))
            row.allowed_domains = sorted(current_domains)
            row.allowed_projects = sorted(current_projects)
            return await self._reread(s, row)

        return await self._write(name, work)

    async def list_agents(self, group: str, page: Page) -> tuple[list[AgentRecord], int]:
        return await self._admin.list_agents("", group, page)

    # ---- fair-share weights --------------------------------------------------------------

    async def list_weights(self, scope: str | None, domain: str | None,
                           page: Page) -> tuple[list[WeightView], int]:
        query = select(FairShareWeightRow).order_by(FairShareWeightRow.scope,
                                                    FairShareWeightRow.subject)
        if scope is not None:
            query = query.where(FairShareWeightRow.scope == scope)
        async with self._db.read() as s:
            rows = (await s.scalars(query)).all()
            if domain is not None:  # a domain admin: its projects and its users only
                emails = [r.subject for r in rows if r.scope == "user"]
                ours = set(await s.scalars(select(UserRow.email).where(
                    UserRow.email.in_(emails), UserRow.domain_name == domain))) if emails else set()
                rows = [r for r in rows if (r.scope == "user" and r.subject in ours) or (
                    r.scope == "project" and r.subject.startswith(f"{domain}/"))]
        views = [WeightView(r.scope, r.subject, Decimal(r.weight)) for r in rows]
        return views[page.offset:page.offset + page.limit], len(views)

    async def set_weight(self, scope: str, subject: str, weight: Decimal) -> WeightView:
        async def work(s: AsyncSession) -> WeightView:
            key = subject
            if scope == "project":
                key = await _project_key(s, subject)
            else:
                key = subject.lower()
                if await s.scalar(select(UserRow.id).where(UserRow.email == key)) is None:
                    raise NotFound(f"user {subject!r} not found", reason="USER_NOT_FOUND")
            await s.execute(delete(FairShareWeightRow).where(
                FairShareWeightRow.scope == scope, FairShareWeightRow.subject == key))
            if weight != 1:  # absent means 1: the default is never stored
                s.add(FairShareWeightRow(scope=scope, subject=key, weight=str(weight)))
            return WeightView(scope, key, weight)

        return await self._write(subject, work)
