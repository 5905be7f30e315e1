"""The audit log: who did what to which target, when, and whether it worked.

Entries are written by the manager's interceptor around every changing call (admin, session and
folder calls, and password logins), so no use case can forget one; denied calls are recorded
too, with the error reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bai.manager.domain import rbac
from bai.manager.domain.admin import Page
from bai.manager.domain.model import Principal, Role

__all__ = ["AuditEntry", "AuditFilter", "AuditLog", "AuditQueries"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor_user_id: uuid.UUID | None
    actor_access_key: str | None
    actor_role: str
    """The actor's role, or "anonymous" (a password login)."""
    action: str
    """Dotted verb, e.g. ``user.create``."""
    target_type: str
    target_id: str
    success: bool
    error_reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    """Assigned by the store."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action_prefix: str = ""
    target_type: str = ""
    target_id: str = ""
    actor_domain: str | None = None
    """Only entries whose actor belongs to this domain (domain admins); None = all."""


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...

    async def list_entries(self, where: AuditFilter, page: Page) -> tuple[list[AuditEntry], int]:
        ...


class AuditQueries:
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def entries(
        self, who: Principal, where: AuditFilter, page: Page
    ) -> tuple[list[AuditEntry], int]:
        rbac.authorize(who, rbac.Action.LIST, rbac.Target(rbac.Kind.AUDIT_LOG, domain=who.domain))
        if who.role is Role.ADMIN:
            where = AuditFilter(where.action_prefix, where.target_type, where.target_id,
                                actor_domain=who.domain)
        return await self._log.list_entries(where, page)
