"""The vfolders table behind :class:`bai.manager.domain.vfolders.VFolderRepository`."""

from __future__ import annotations

import uuid
from datetime import datetime

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import VFolderRow
from bai.manager.domain.vfolders import Permission, VFolderRecord
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

__all__ = ["SqlVFolderRepository"]


def _record(row: VFolderRow) -> VFolderRecord:
    return VFolderRecord(
        id=row.id, name=row.name, volume=row.volume, owner_user_id=row.owner_user_id,
        owner_project_id=row.owner_project_id, permission=Permission(row.permission),
        usage_mode=row.usage_mode, status=row.status, created_at=row.created_at)


class SqlVFolderRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: VFolderRecord) -> bool:
        row = VFolderRow(
            id=record.id, name=record.name, live_name=record.name, volume=record.volume,
            owner_user_id=record.owner_user_id, owner_project_id=record.owner_project_id,
            permission=record.permission.value, usage_mode=record.usage_mode,
            status=record.status, created_at=record.created_at, deleted_at=None)
        try:
            async with self._db.write() as tx:
                tx.add(row)
        except IntegrityError:
            return False
        return True

    async def get(self, folder_id: uuid.UUID) -> VFolderRecord | None:
        async with self._db.read() as tx:
            row = await tx.scalar(select(VFolderRow).where(
                VFolderRow.id == folder_id, VFolderRow.live_name.is_not(None)))
            return _record(row) if row is not None else None

    async def get_by_name(self, owner_user_id: uuid.UUID, name: str) -> VFolderRecord | None:
        async with self._db.read() as tx:
            row = await tx.scalar(select(VFolderRow).where(
                VFolderRow.owner_user_id == owner_user_id, VFolderRow.live_name == name))
            return _record(row) if row is not None else None

    async def list_live(self, owner_user_id: uuid.UUID | None) -> list[VFolderRecord]:
        query = select(VFolderRow).where(VFolderRow.live_name.is_not(None))
        if owner_user_id is not None:
            query = query.where(VFolderRow.owner_user_id == owner_user_id)
        async with self._db.read() as tx:
            rows = (await tx.scalars(query.order_by(VFolderRow.name, VFolderRow.id))).all()
            return [_record(r) for r in rows]

    async def mark_deleted(self, folder_id: uuid.UUID, at: datetime) -> None:
        async with self._db.write() as tx:
            await tx.execute(update(VFolderRow).where(VFolderRow.id == folder_id).values(
                live_name=None, status="deleted", deleted_at=at))
