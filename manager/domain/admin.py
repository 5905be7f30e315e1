"""Read-only administrative queries (users, keypairs, agents, sessions by offset).

Who sees what is decided here: a superadmin and a monitor see everything (a monitor only ever
reads); a domain admin sees its own domain; anyone else sees only itself. Agents are visible to
superadmins and monitors only. Secret keys leave the manager only for the caller's own keypairs
or for a superadmin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from bai.common.errors import InvalidArgument
from bai.manager.domain.errors import InvalidSessionRequest, NotAllowed
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentRecord,
    Principal,
    Role,
    SessionRecord,
    SessionState,
)
from bai.manager.domain.query_filter import FieldType, Filter, OrderBy, parse_filter, parse_order

__all__ = [
    "NO_QUERY",
    "AdminQueries",
    "AdminRepository",
    "KeypairView",
    "ListQuery",
    "Page",
    "ProjectRef",
    "Scope",
    "UserView",
]

PAGE_DEFAULT = 20
PAGE_MAX = 1000


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class Scope:
    """What a query may return: None means no restriction on that axis."""

    domain: str | None = None
    user_id: uuid.UUID | None = None
    access_key: str | None = None
    project_ids: frozenset[uuid.UUID] | None = None
    """Users: only members of these projects."""
    project_names: frozenset[str] = frozenset()
    """Sessions: also those started in these projects of ``domain`` (a project admin's)."""


@dataclass(frozen=True, slots=True)
class ProjectRef:
    id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class UserView:
    id: uuid.UUID
    email: str
    username: str
    role: Role
    domain: str
    status: str
    created_at: datetime
    projects: tuple[ProjectRef, ...]
    main_access_key: str
    full_name: str = ""
    description: str = ""
    need_password_change: bool = False
    resource_policy: str = "default"
    has_password: bool = False


@dataclass(frozen=True, slots=True)
class KeypairView:
    access_key: str
    secret_key: str
    user_id: uuid.UUID
    user_email: str
    role: Role
    is_active: bool
    is_admin: bool
    created_at: datetime
    projects: tuple[str, ...]
    concurrency_used: int
    resource_policy: str = "default"
    rate_limit: int = 0
    last_used: datetime | None = None
    user_full_name: str = ""
    domain: str = ""
    """The owner's domain."""


USER_FILTER_FIELDS: dict[str, FieldType] = {
    "email": str, "username": str, "full_name": str, "description": str, "role": str,
    "status": str, "domain_name": str, "need_password_change": bool}
USER_ORDER_FIELDS: dict[str, FieldType] = {**USER_FILTER_FIELDS, "created_at": str}
KEYPAIR_FILTER_FIELDS: dict[str, FieldType] = {
    "access_key": str, "user_id": str, "is_active": bool, "is_admin": bool,
    "resource_policy": str, "rate_limit": int}
KEYPAIR_ORDER_FIELDS: dict[str, FieldType] = {**KEYPAIR_FILTER_FIELDS, "created_at": str}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Backend.AI's filter and order for a list (see :mod:`bai.manager.domain.query_filter`)."""

    where: Filter | None = None
    order: tuple[OrderBy, ...] = ()


NO_QUERY = ListQuery()
"""No filter, the default order."""


class AdminRepository(Protocol):
    async def list_users(
        self, scope: Scope, status: str, page: Page, query: ListQuery = NO_QUERY
    ) -> tuple[list[UserView], int]: ...

    async def list_keypairs(
        self, scope: Scope, is_active: bool | None, domain: str, page: Page,
        query: ListQuery = NO_QUERY
    ) -> tuple[list[KeypairView], int]: ...

    async def get_keypair(self, access_key: str) -> KeypairView | None: ...

    async def list_agents(
        self, status: str, resource_group: str, page: Page
    ) -> tuple[list[AgentRecord], int]: ...

    async def query_sessions(
        self, scope: Scope, states: frozenset[SessionState], page: Page
    ) -> tuple[list[SessionRecord], int]: ...


def page_of(offset: int, limit: int) -> Page:
    if offset < 0:
        raise InvalidSessionRequest("offset must not be negative", reason="INVALID_PAGE")
    if limit < 0 or limit > PAGE_MAX:
        raise InvalidSessionRequest(f"limit must be between 0 and {PAGE_MAX}",
                                    reason="INVALID_PAGE")
    return Page(offset=offset, limit=limit or PAGE_DEFAULT)


def _sees_all(who: Principal) -> bool:
    return who.role in (Role.SUPERADMIN, Role.MONITOR)


def _user_scope(who: Principal) -> Scope:
    if _sees_all(who):
        return Scope()
    if who.role is Role.ADMIN:
        return Scope(domain=who.domain)
    return Scope(user_id=who.user_id)


class AdminQueries:
    def __init__(self, repo: AdminRepository) -> None:
        self._repo = repo

    async def own_keypair(self, who: Principal) -> KeypairView:
        keypair = await self._repo.get_keypair(who.access_key)
        if keypair is None:  # deleted since authentication
            raise NotAllowed(f"access key {who.access_key} no longer exists")
        return keypair

    async def users(
        self, who: Principal, status: str, page: Page, filter_text: str = "",
        order_text: str = "", project_id: str = ""
    ) -> tuple[list[UserView], int]:
        query = ListQuery(parse_filter(filter_text, USER_FILTER_FIELDS),
                          parse_order(order_text, USER_ORDER_FIELDS))
        scope = _user_scope(who)
        if project_id:
            try:
                scope = replace(scope, project_ids=frozenset({uuid.UUID(project_id)}))
            except ValueError as exc:
                raise InvalidArgument(f"project id {project_id!r} is not a UUID",
                                      reason="INVALID_ID") from exc
        return await self._repo.list_users(scope, status, page, query)

    async def keypairs(
        self, who: Principal, is_active: bool | None, domain: str, page: Page,
        filter_text: str = "", order_text: str = ""
    ) -> tuple[list[KeypairView], int]:
        query = ListQuery(parse_filter(filter_text, KEYPAIR_FILTER_FIELDS),
                          parse_order(order_text, KEYPAIR_ORDER_FIELDS))
        items, total = await self._repo.list_keypairs(_user_scope(who), is_active, domain,
                                                      page, query)
        if not who.is_superadmin:
            items = [k if k.user_id == who.user_id else replace(k, secret_key="")
                     for k in items]
        return items, total

    async def agents(
        self, who: Principal, status: str, resource_group: str, page: Page
    ) -> tuple[list[AgentRecord], int]:
        if not _sees_all(who):
            raise NotAllowed("only superadmins and monitors may list agents")
        return await self._repo.list_agents(status.upper(), resource_group, page)

    async def sessions(
        self, who: Principal, states: frozenset[SessionState], access_key: str, page: Page
    ) -> tuple[list[SessionRecord], int]:
        if _sees_all(who):
            scope = Scope(access_key=access_key or None)
        elif who.role is Role.ADMIN:
            scope = Scope(domain=who.domain, access_key=access_key or None)
        else:
            if access_key and access_key != who.access_key:
                return [], 0
            managed = frozenset(p.name for p in who.projects if p.role == "admin")
            scope = Scope(access_key=who.access_key, domain=who.domain, project_names=managed)
        return await self._repo.query_sessions(scope, states or LIVE_STATES, page)
