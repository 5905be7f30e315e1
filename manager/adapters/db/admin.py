"""SQL side of the read-only administrative queries (:mod:`bai.manager.domain.admin`).

Each list is one page query plus one count query, and the related rows of the page (projects,
keypairs, kernels) are fetched in one query each: no per-item round trips.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.records import agent_record, session_record
from bai.manager.adapters.db.tables import (
    AgentRow,
    KernelRow,
    KeypairRow,
    ProjectMemberRow,
    ProjectRow,
    SessionRow,
    UserRow,
)
from bai.manager.domain.admin import KeypairView, Page, ProjectRef, Scope, UserView
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentRecord,
    Role,
    SessionRecord,
    SessionState,
)
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SqlAdminRepository"]

Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")


async def _page(s: AsyncSession, query: Any, order: Sequence[Any], page: Page) -> tuple[
    list[Any], int
]:
    total = await s.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await s.execute(query.order_by(*order).offset(page.offset).limit(page.limit))).all()
    return list(rows), int(total or 0)


async def _projects(
    s: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ProjectRef]]:
    found: dict[uuid.UUID, list[ProjectRef]] = defaultdict(list)
    if not user_ids:
        return found
    query = (
        select(ProjectMemberRow.user_id, ProjectRow.id, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == ProjectMemberRow.project_id)
        .where(ProjectMemberRow.user_id.in_(user_ids))
        .order_by(ProjectRow.name)
    )
    for user_id, project_id, name in (await s.execute(query)).all():
        found[user_id].append(ProjectRef(id=project_id, name=name))
    return found


def _scoped_users(query: Q, scope: Scope) -> Q:
    if scope.domain is not None:
        query = query.where(UserRow.domain_name == scope.domain)
    if scope.user_id is not None:
        query = query.where(UserRow.id == scope.user_id)
    return query


class SqlAdminRepository:
    """Implements :class:`bai.manager.domain.admin.AdminRepository`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_users(
        self, scope: Scope, status: str, page: Page
    ) -> tuple[list[UserView], int]:
        query = _scoped_users(select(UserRow), scope)
        if status:
            query = query.where(UserRow.status == status.lower())
        async with self._db.read() as s:
            rows, total = await _page(s, query, (UserRow.created_at, UserRow.id), page)
            users = [r[0] for r in rows]
            ids = [u.id for u in users]
            projects = await _projects(s, ids)
            main: dict[uuid.UUID, str] = {}
            if ids:
                keys = (
                    select(KeypairRow.user_id, KeypairRow.access_key)
                    .where(KeypairRow.user_id.in_(ids), KeypairRow.is_active.is_(True))
                    .order_by(KeypairRow.created_at.desc(), KeypairRow.access_key.desc())
                )
                for user_id, access_key in (await s.execute(keys)).all():
                    main[user_id] = access_key  # the oldest wins (last written)
        return [
            UserView(id=u.id, email=u.email, username=u.username, role=Role(u.role),
                     domain=u.domain_name, status=u.status, created_at=u.created_at,
                     projects=tuple(projects[u.id]), main_access_key=main.get(u.id, ""))
            for u in users
        ], total

    async def _keypair_views(
        self, s: AsyncSession, rows: Sequence[tuple[KeypairRow, UserRow]]
    ) -> list[KeypairView]:
        user_ids = list({u.id for _, u in rows})
        projects = await _projects(s, user_ids)
        keys = [k.access_key for k, _ in rows]
        used: dict[str, int] = {}
        if keys:
            query = (
                select(SessionRow.access_key, func.count())
                .where(SessionRow.access_key.in_(keys),
                       SessionRow.state.in_([x.value for x in LIVE_STATES]))
                .group_by(SessionRow.access_key)
            )
            used = {k: int(n) for k, n in (await s.execute(query)).all()}
        return [
            KeypairView(access_key=k.access_key, secret_key=k.secret_key, user_id=u.id,
                        user_email=u.email, role=Role(u.role), is_active=k.is_active,
                        is_admin=k.is_admin, created_at=k.created_at,
                        projects=tuple(p.name for p in projects[u.id]),
                        concurrency_used=used.get(k.access_key, 0))
            for k, u in rows
        ]

    async def list_keypairs(
        self, scope: Scope, is_active: bool | None, domain: str, page: Page
    ) -> tuple[list[KeypairView], int]:
        query = _scoped_users(
            select(KeypairRow, UserRow).join(UserRow, UserRow.id == KeypairRow.user_id), scope)
        if is_active is not None:
            query = query.where(KeypairRow.is_active.is_(is_active))
        if domain:
            query = query.where(UserRow.domain_name == domain)
        async with self._db.read() as s:
            rows, total = await _page(
                s, query, (KeypairRow.created_at, KeypairRow.access_key), page)
            return await self._keypair_views(s, [(r[0], r[1]) for r in rows]), total

    async def get_keypair(self, access_key: str) -> KeypairView | None:
        query = (
            select(KeypairRow, UserRow)
            .join(UserRow, UserRow.id == KeypairRow.user_id)
            .where(KeypairRow.access_key == access_key)
        )
        async with self._db.read() as s:
            row = (await s.execute(query)).first()
            if row is None:
                return None
            return (await self._keypair_views(s, [(row[0], row[1])]))[0]

    async def list_agents(
        self, status: str, resource_group: str, page: Page
    ) -> tuple[list[AgentRecord], int]:
        query = select(AgentRow)
        if status:
            query = query.where(AgentRow.status == status)
        if resource_group:
            query = query.where(AgentRow.resource_group == resource_group)
        async with self._db.read() as s:
            rows, total = await _page(s, query, (AgentRow.id,), page)
        return [agent_record(r[0]) for r in rows], total

    async def query_sessions(
        self, scope: Scope, states: frozenset[SessionState], page: Page
    ) -> tuple[list[SessionRecord], int]:
        query = select(SessionRow).where(SessionRow.state.in_([x.value for x in states]))
        if scope.access_key is not None:
            query = query.where(SessionRow.access_key == scope.access_key)
        if scope.domain is not None:
            query = query.where(SessionRow.domain_name == scope.domain)
        async with self._db.read() as s:
            rows, total = await _page(
                s, query, (SessionRow.created_at.desc(), SessionRow.id.desc()), page)
            sessions = [r[0] for r in rows]
            kernels: dict[uuid.UUID, list[KernelRow]] = defaultdict(list)
            if sessions:
                query_k = select(KernelRow).where(
                    KernelRow.session_id.in_([x.id for x in sessions]))
                for k in await s.scalars(query_k):
                    kernels[k.session_id].append(k)
        return [session_record(r, kernels[r.id], []) for r in sessions], total
