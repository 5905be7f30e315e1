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

from bai.manager.domain.errors import InvalidSessionRequest, NotAllowed
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentRecord,
    Principal,
    Role,
    SessionRecord,
    SessionState,
)

__all__ = [
    "AdminQueries",
    "AdminRepository",
    "KeypairView",
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


class AdminRepository(Protocol):
    async def list_users(
        self, scope: Scope, status: str, page: Page
    ) -> tuple[list[UserView], int]: ...

    async def list_keypairs(
        self, scope: Scope, is_active: bool | None, domain: str, page: Page
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
        self, who: Principal, status: str, page: Page
    ) -> tuple[list[UserView], int]:
        return await self._repo.list_users(_user_scope(who), status, page)

    async def keypairs(
        self, who: Principal, is_active: bool | None, domain: str, page: Page
    ) -> tuple[list[KeypairView], int]:
        items, total = await self._repo.list_keypairs(_user_scope(who), is_active, domain, page)
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
            scope = Scope(access_key=who.access_key)
        return await self._repo.query_sessions(scope, states or LIVE_STATES, page)
