"""SQL store of the audit log (:mod:`bai.manager.domain.audit`): one INSERT per entry."""

from __future__ import annotations

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import AuditLogRow, UserRow
from bai.manager.domain.admin import Page
from bai.manager.domain.audit import AuditEntry, AuditFilter
from sqlalchemy import func, select

__all__ = ["SqlAuditLog"]


def _entry(row: AuditLogRow) -> AuditEntry:
    return AuditEntry(id=row.id, at=row.at, actor_user_id=row.actor_user_id,
                      actor_access_key=row.actor_access_key, actor_role=row.actor_role,
                      action=row.action, target_type=row.target_type, target_id=row.target_id,
                      success=row.success, error_reason=row.error_reason,
                      detail=dict(row.detail or {}))


class SqlAuditLog:
    """Implements :class:`bai.manager.domain.audit.AuditLog`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        async with self._db.write() as s:
            s.add(AuditLogRow(at=entry.at, actor_user_id=entry.actor_user_id,
                              actor_access_key=entry.actor_access_key,
                              actor_role=entry.actor_role, action=entry.action[:64],
                              target_type=entry.target_type[:32],
                              target_id=entry.target_id[:128], success=entry.success,
                              error_reason=entry.error_reason[:64], detail=entry.detail))

    async def list_entries(self, where: AuditFilter, page: Page) -> tuple[
            list[AuditEntry], int]:
        query = select(AuditLogRow)
        if where.action_prefix:
            query = query.where(AuditLogRow.action.startswith(where.action_prefix,
                                                              autoescape=True))
        if where.target_type:
            query = query.where(AuditLogRow.target_type == where.target_type)
        if where.target_id:
            query = query.where(AuditLogRow.target_id == where.target_id)
        if where.actor_domain is not None:
            query = query.where(AuditLogRow.actor_user_id.in_(
                select(UserRow.id).where(UserRow.domain_name == where.actor_domain)))
        async with self._db.read() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = await s.scalars(query.order_by(AuditLogRow.id.desc())
                                   .offset(page.offset).limit(page.limit))
            return [_entry(r) for r in rows], int(total or 0)
