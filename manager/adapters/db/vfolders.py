"""The vfolder tables behind :class:`bai.manager.domain.vfolders.VFolderRepository`.

Names are guarded by unique constraints (``live_name`` is NULL in the trash, so a trashed folder
frees its name); a rename or restore that collides is an IntegrityError, reported as False.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import (
    ProjectMemberRow,
    ProjectRow,
    UserRow,
    VFolderInvitationRow,
    VFolderQuotaScopeRow,
    VFolderRow,
    VFolderShareRow,
)
from bai.manager.domain.vfolders import (
    Invitation,
    Permission,
    ProjectInfo,
    ScopeType,
    Share,
    UserInfo,
    VFolderRecord,
    VFolderStatus,
)
from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

__all__ = ["SqlVFolderRepository"]

_Creator = aliased(UserRow)
_FolderQuery = Select[VFolderRow, str, str, str]
"""A folder with its creator's email and project's name and domain."""
_Inviter = aliased(UserRow)
_Invitee = aliased(UserRow)


def _folders() -> _FolderQuery:
    """Folders with their creator's email and project's name and domain."""
    return (select(VFolderRow, _Creator.email, ProjectRow.name, ProjectRow.domain_name)
            .outerjoin(_Creator, _Creator.id == func.coalesce(VFolderRow.creator_user_id,
                                                               VFolderRow.owner_user_id))
            .outerjoin(ProjectRow, ProjectRow.id == VFolderRow.owner_project_id))


def _status_filter(query: _FolderQuery, status: VFolderStatus) -> _FolderQuery:
    if status is VFolderStatus.READY:
        return query.where(VFolderRow.live_name.is_not(None))
    return query.where(VFolderRow.status == status.value)


def _record(row: Any) -> VFolderRecord:
    f: VFolderRow = row[0]
    return VFolderRecord(
        id=f.id, name=f.name, volume=f.volume, owner_user_id=f.owner_user_id,
        owner_project_id=f.owner_project_id, permission=Permission(f.permission),
        usage_mode=f.usage_mode, status=f.status, created_at=f.created_at,
        cloneable=f.cloneable, quota_bytes=f.quota_bytes, creator_user_id=f.creator_user_id,
        deleted_at=f.deleted_at, creator_email=row[1] or "", project_name=row[2] or "",
        project_domain=row[3] or "")


def _invitation(row: Any) -> Invitation:
    i: VFolderInvitationRow = row[0]
    return Invitation(
        id=i.id, vfolder_id=i.vfolder_id, vfolder_name=row[1], inviter_user_id=i.inviter_user_id,
        inviter_email=row[2], invitee_user_id=i.invitee_user_id, invitee_email=row[3],
        permission=Permission(i.permission), state=i.state, created_at=i.created_at)


def _invitations() -> Select[VFolderInvitationRow, str, str, str]:
    return (select(VFolderInvitationRow, VFolderRow.name, _Inviter.email, _Invitee.email)
            .join(VFolderRow, VFolderRow.id == VFolderInvitationRow.vfolder_id)
            .join(_Inviter, _Inviter.id == VFolderInvitationRow.inviter_user_id)
            .join(_Invitee, _Invitee.id == VFolderInvitationRow.invitee_user_id))


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref.strip())
    except ValueError:
        return None


class SqlVFolderRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _one(self, query: _FolderQuery) -> VFolderRecord | None:
        async with self._db.read() as tx:
            row = (await tx.execute(query)).first()
            return _record(row) if row is not None else None

    async def _many(self, query: _FolderQuery) -> list[VFolderRecord]:
        async with self._db.read() as tx:
            return [_record(r) for r in (await tx.execute(query)).all()]

    async def add(self, record: VFolderRecord) -> bool:
        row = VFolderRow(
            id=record.id, name=record.name, live_name=record.name, volume=record.volume,
            owner_user_id=record.owner_user_id, owner_project_id=record.owner_project_id,
            permission=record.permission.value, usage_mode=record.usage_mode,
            status=record.status, created_at=record.created_at, deleted_at=None,
            cloneable=record.cloneable, quota_bytes=record.quota_bytes,
            creator_user_id=record.creator_user_id)
        try:
            async with self._db.write() as tx:
                tx.add(row)
        except IntegrityError:
            return False
        return True

    async def get(self, folder_id: uuid.UUID, status: VFolderStatus) -> VFolderRecord | None:
        return await self._one(_status_filter(_folders(), status).where(
            VFolderRow.id == folder_id))

    async def find_by_name(self, name: str, *, user_id: uuid.UUID,
                           project_ids: list[uuid.UUID],
                           status: VFolderStatus) -> list[VFolderRecord]:
        shared = select(VFolderShareRow.vfolder_id).where(VFolderShareRow.user_id == user_id)
        query = _status_filter(_folders(), status).where(
            VFolderRow.name == name,
            or_(VFolderRow.owner_user_id == user_id,
                VFolderRow.owner_project_id.in_(project_ids),
                VFolderRow.id.in_(shared)))
        records = await self._many(query.order_by(VFolderRow.deleted_at.desc(),
                                                  VFolderRow.created_at))

        def rank(r: VFolderRecord) -> int:
            return 0 if r.owner_user_id == user_id else 1 if r.owner_project_id else 2

        return sorted(records, key=rank)  # stable: the most recently trashed first

    async def list_for(self, user_id: uuid.UUID, project_ids: list[uuid.UUID],
                       status: VFolderStatus) -> list[VFolderRecord]:
        shared = select(VFolderShareRow.vfolder_id).where(VFolderShareRow.user_id == user_id)
        query = _status_filter(_folders(), status).where(or_(
            VFolderRow.owner_user_id == user_id, VFolderRow.owner_project_id.in_(project_ids),
            VFolderRow.id.in_(shared)))
        return await self._many(query.order_by(VFolderRow.name, VFolderRow.id))

    async def list_of_scope(self, scope_type: ScopeType,
                            scope_id: uuid.UUID) -> list[VFolderRecord]:
        owner = (VFolderRow.owner_user_id if scope_type is ScopeType.USER
                 else VFolderRow.owner_project_id)
        query = _folders().where(owner == scope_id, VFolderRow.status.in_(
            (VFolderStatus.READY.value, VFolderStatus.TRASHED.value)))
        return await self._many(query.order_by(VFolderRow.name))

    async def _update(self, folder_id: uuid.UUID, **values: Any) -> bool:
        try:
            async with self._db.write() as tx:
                await tx.execute(update(VFolderRow).where(VFolderRow.id == folder_id)
                                 .values(**values))
        except IntegrityError:
            return False
        return True

    async def rename(self, folder_id: uuid.UUID, new_name: str) -> bool:
        return await self._update(folder_id, name=new_name, live_name=new_name)

    async def update_options(self, folder_id: uuid.UUID, permission: Permission,
                             cloneable: bool) -> None:
        await self._update(folder_id, permission=permission.value, cloneable=cloneable)

    async def set_quota(self, folder_id: uuid.UUID, quota_bytes: int) -> None:
        await self._update(folder_id, quota_bytes=quota_bytes)

    async def trash(self, folder_id: uuid.UUID, at: datetime) -> None:
        await self._update(folder_id, live_name=None, status=VFolderStatus.TRASHED.value,
                           deleted_at=at)

    async def restore(self, folder_id: uuid.UUID) -> bool:
        return await self._update(folder_id, live_name=VFolderRow.name,
                                  status=VFolderStatus.READY.value, deleted_at=None)

    async def purge(self, folder_id: uuid.UUID, at: datetime) -> None:
        async with self._db.write() as tx:
            await tx.execute(update(VFolderRow).where(VFolderRow.id == folder_id).values(
                live_name=None, status=VFolderStatus.PURGED.value, deleted_at=at))
            await tx.execute(delete(VFolderShareRow).where(
                VFolderShareRow.vfolder_id == folder_id))
            await tx.execute(delete(VFolderInvitationRow).where(
                VFolderInvitationRow.vfolder_id == folder_id))

    async def memberships(self, user_id: uuid.UUID) -> dict[uuid.UUID, str]:
        async with self._db.read() as tx:
            rows = (await tx.execute(select(ProjectMemberRow.project_id, ProjectMemberRow.role)
                                     .where(ProjectMemberRow.user_id == user_id))).all()
            return {r[0]: r[1] or "member" for r in rows}

    async def project(self, ref: str) -> ProjectInfo | None:
        key = _as_uuid(ref)
        where = ProjectRow.id == key if key is not None else ProjectRow.name == ref.strip()
        async with self._db.read() as tx:
            row = (await tx.execute(select(ProjectRow.id, ProjectRow.name, ProjectRow.domain_name)
                                    .where(where).order_by(ProjectRow.name))).first()
            return ProjectInfo(id=row[0], name=row[1], domain=row[2]) if row else None

    async def _users(self, where: Any) -> list[UserInfo]:
        async with self._db.read() as tx:
            rows = (await tx.execute(select(UserRow.id, UserRow.email, UserRow.domain_name)
                                     .where(where).order_by(UserRow.email))).all()
            return [UserInfo(id=r[0], email=r[1], domain=r[2]) for r in rows]

    async def user(self, ref: str) -> UserInfo | None:
        key = _as_uuid(ref)
        found = await self._users(UserRow.id == key if key is not None
                                  else func.lower(UserRow.email) == ref.strip().lower())
        return found[0] if found else None

    async def users_by_email(self, emails: list[str]) -> list[UserInfo]:
        return await self._users(func.lower(UserRow.email).in_([e.lower() for e in emails]))

    async def share_permission(self, folder_id: uuid.UUID,
                               user_id: uuid.UUID) -> Permission | None:
        async with self._db.read() as tx:
            value = await tx.scalar(select(VFolderShareRow.permission).where(
                VFolderShareRow.vfolder_id == folder_id, VFolderShareRow.user_id == user_id))
            return Permission(value) if value else None

    async def shared_with(self, user_id: uuid.UUID) -> dict[uuid.UUID, Permission]:
        async with self._db.read() as tx:
            rows = (await tx.execute(select(VFolderShareRow.vfolder_id, VFolderShareRow.permission)
                                     .where(VFolderShareRow.user_id == user_id))).all()
            return {r[0]: Permission(r[1]) for r in rows}

    async def put_shares(self, folder_id: uuid.UUID, user_ids: list[uuid.UUID],
                         permission: Permission, at: datetime) -> None:
        async with self._db.write() as tx:
            await tx.execute(delete(VFolderShareRow).where(
                VFolderShareRow.vfolder_id == folder_id, VFolderShareRow.user_id.in_(user_ids)))
            tx.add_all(VFolderShareRow(vfolder_id=folder_id, user_id=u,
                                       permission=permission.value, created_at=at)
                       for u in user_ids)

    async def list_shares(self, folder_id: uuid.UUID) -> list[Share]:
        query = (select(VFolderShareRow, UserRow.email)
                 .join(UserRow, UserRow.id == VFolderShareRow.user_id)
                 .where(VFolderShareRow.vfolder_id == folder_id).order_by(UserRow.email))
        async with self._db.read() as tx:
            return [Share(user_id=r[0].user_id, email=r[1], permission=Permission(r[0].permission),
                          created_at=r[0].created_at) for r in (await tx.execute(query)).all()]

    async def delete_shares(self, folder_id: uuid.UUID,
                            user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        async with self._db.write() as tx:
            had: Sequence[uuid.UUID] = (await tx.scalars(select(VFolderShareRow.user_id).where(
                VFolderShareRow.vfolder_id == folder_id,
                VFolderShareRow.user_id.in_(user_ids)))).all()
            await tx.execute(delete(VFolderShareRow).where(
                VFolderShareRow.vfolder_id == folder_id, VFolderShareRow.user_id.in_(user_ids)))
            return list(had)

    async def add_invitation(self, invitation: Invitation) -> bool:
        row = VFolderInvitationRow(
            id=invitation.id, vfolder_id=invitation.vfolder_id,
            inviter_user_id=invitation.inviter_user_id,
            invitee_user_id=invitation.invitee_user_id, permission=invitation.permission.value,
            state=invitation.state, pending_flag=True, created_at=invitation.created_at,
            modified_at=invitation.created_at)
        try:
            async with self._db.write() as tx:
                tx.add(row)
        except IntegrityError:
            return False
        return True

    async def get_invitation(self, invitation_id: uuid.UUID) -> Invitation | None:
        async with self._db.read() as tx:
            row = (await tx.execute(_invitations().where(
                VFolderInvitationRow.id == invitation_id))).first()
            return _invitation(row) if row else None

    async def pending_invitations(self, invitee_user_id: uuid.UUID) -> list[Invitation]:
        query = _invitations().where(VFolderInvitationRow.invitee_user_id == invitee_user_id,
                                     VFolderInvitationRow.pending_flag.is_(True),
                                     VFolderRow.live_name.is_not(None))
        async with self._db.read() as tx:
            rows = (await tx.execute(query.order_by(VFolderInvitationRow.created_at))).all()
            return [_invitation(r) for r in rows]

    async def close_invitation(self, invitation_id: uuid.UUID, state: str, at: datetime,
                               *, share: bool) -> bool:
        async with self._db.write() as tx:
            row = await tx.scalar(select(VFolderInvitationRow).where(
                VFolderInvitationRow.id == invitation_id,
                VFolderInvitationRow.pending_flag.is_(True)).with_for_update())
            if row is None:
                return False
            row.state, row.pending_flag, row.modified_at = state, None, at
            if share:
                await tx.execute(delete(VFolderShareRow).where(
                    VFolderShareRow.vfolder_id == row.vfolder_id,
                    VFolderShareRow.user_id == row.invitee_user_id))
                tx.add(VFolderShareRow(vfolder_id=row.vfolder_id, user_id=row.invitee_user_id,
                                       permission=row.permission, created_at=at))
        return True

    async def scope_quota(self, scope_type: ScopeType, scope_id: uuid.UUID) -> int:
        async with self._db.read() as tx:
            value = await tx.scalar(select(VFolderQuotaScopeRow.max_bytes).where(
                VFolderQuotaScopeRow.scope_type == scope_type.value,
                VFolderQuotaScopeRow.scope_id == scope_id))
            return int(value or 0)

    async def set_scope_quota(self, scope_type: ScopeType, scope_id: uuid.UUID, max_bytes: int,
                              at: datetime) -> None:
        async with self._db.write() as tx:
            await tx.execute(delete(VFolderQuotaScopeRow).where(
                VFolderQuotaScopeRow.scope_type == scope_type.value,
                VFolderQuotaScopeRow.scope_id == scope_id))
            if max_bytes > 0:
                tx.add(VFolderQuotaScopeRow(scope_type=scope_type.value, scope_id=scope_id,
                                            max_bytes=max_bytes, updated_at=at))
