"""Invitations (the invitee accepts or rejects) and direct shares of folders.

Both end in a share: a user-level grant with its own permission, which is also the permission
the folder is mounted with for that user.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from bai.common.errors import FailedPrecondition
from bai.manager.domain.model import Principal
from bai.manager.domain.vfolders.model import (
    InvalidVFolderRequest,
    Invitation,
    Permission,
    Share,
    UserInfo,
    VFolderNameTaken,
    VFolderNotFound,
    VFolderRecord,
    VFolderRepository,
    VFolderStatus,
)

__all__ = ["VFolderSharing"]

log = logging.getLogger(__name__)
PENDING = "pending"


class InvitationNotFound(VFolderNotFound):
    default_reason = "INVITATION_NOT_FOUND"


def _emails(emails: list[str]) -> list[str]:
    cleaned = sorted({e.strip().lower() for e in emails if e.strip()})
    if not cleaned:
        raise InvalidVFolderRequest("at least one email is required")
    return cleaned


class FolderAccess(Protocol):
    """What sharing needs from :class:`~.service.VFolderService`."""

    async def resolve(self, who: Principal, ref: str) -> VFolderRecord: ...

    async def managed(self, who: Principal, ref: str) -> VFolderRecord: ...


class VFolderSharing:
    def __init__(self, repo: VFolderRepository, folders: FolderAccess) -> None:
        self._repo = repo
        self._folders = folders

    async def _targets(self, record: VFolderRecord, emails: list[str]) -> list[UserInfo]:
        """Known users other than the folder's owner."""
        users = await self._repo.users_by_email(_emails(emails))
        return [u for u in users if u.id != record.owner_user_id]

    async def invite(self, who: Principal, ref: str, permission: Permission,
                     emails: list[str]) -> list[str]:
        record = await self._folders.managed(who, ref)
        if record.owner_project_id is not None:
            raise InvalidVFolderRequest(
                f"vfolder {record.name!r} belongs to a project: share it instead of inviting",
                reason="PROJECT_VFOLDER_INVITE")
        invited: list[str] = []
        now = datetime.now(UTC)
        for user in await self._targets(record, emails):
            if await self._repo.share_permission(record.id, user.id) is not None:
                continue  # already has access
            invitation = Invitation(
                id=uuid.uuid4(), vfolder_id=record.id, vfolder_name=record.name,
                inviter_user_id=who.user_id, inviter_email=who.email, invitee_user_id=user.id,
                invitee_email=user.email, permission=permission, state=PENDING, created_at=now)
            if await self._repo.add_invitation(invitation):
                invited.append(user.email)
        log.info("vfolder %s (%s): %s invited %s", record.id, record.name, who.email, invited)
        return invited

    async def invitations(self, who: Principal) -> list[Invitation]:
        return await self._repo.pending_invitations(who.user_id)

    async def _pending(self, invitation_id: str) -> Invitation:
        try:
            key = uuid.UUID(invitation_id.strip())
        except ValueError:
            key = None
        invitation = await self._repo.get_invitation(key) if key else None
        if invitation is None or invitation.state != PENDING:
            raise InvitationNotFound(f"invitation {invitation_id!r} does not exist or was "
                                     "already answered")
        return invitation

    async def accept(self, who: Principal, invitation_id: str) -> Invitation:
        invitation = await self._pending(invitation_id)
        if invitation.invitee_user_id != who.user_id:
            raise InvitationNotFound(f"invitation {invitation_id!r} does not exist or was "
                                     "already answered")
        folder = await self._repo.get(invitation.vfolder_id, VFolderStatus.READY)
        if folder is None:
            raise VFolderNotFound("the invited vfolder no longer exists")
        own = await self._repo.find_by_name(folder.name, user_id=who.user_id, project_ids=[],
                                            status=VFolderStatus.READY)
        if any(f.owner_user_id == who.user_id for f in own):
            raise VFolderNameTaken(f"you already have a vfolder named {folder.name!r}; rename "
                                   "it before accepting")
        now = datetime.now(UTC)
        if not await self._repo.close_invitation(invitation.id, "accepted", now, share=True):
            raise InvitationNotFound(f"invitation {invitation_id!r} was already answered")
        log.info("vfolder %s shared with %s (invitation accepted)", folder.id, who.email)
        return replace(invitation, state="accepted")

    async def reject(self, who: Principal, invitation_id: str) -> Invitation:
        invitation = await self._pending(invitation_id)
        if who.user_id == invitation.invitee_user_id:
            state = "rejected"
        elif who.user_id == invitation.inviter_user_id:
            state = "canceled"
        else:
            raise InvitationNotFound(f"invitation {invitation_id!r} does not exist or was "
                                     "already answered")
        if not await self._repo.close_invitation(invitation.id, state, datetime.now(UTC),
                                                 share=False):
            raise InvitationNotFound(f"invitation {invitation_id!r} was already answered")
        return replace(invitation, state=state)

    async def share(self, who: Principal, ref: str, permission: Permission,
                    emails: list[str]) -> list[str]:
        record = await self._folders.managed(who, ref)
        users = await self._targets(record, emails)
        await self._repo.put_shares(record.id, [u.id for u in users], permission,
                                    datetime.now(UTC))
        log.info("vfolder %s (%s) shared %s with %s by %s", record.id, record.name,
                 permission.value, [u.email for u in users], who.email)
        return [u.email for u in users]

    async def shares(self, who: Principal, ref: str) -> list[Share]:
        record = await self._folders.managed(who, ref)
        return await self._repo.list_shares(record.id)

    async def unshare(self, who: Principal, ref: str, emails: list[str]) -> list[str]:
        record = await self._folders.managed(who, ref)
        users = await self._repo.users_by_email(_emails(emails))
        removed = set(await self._repo.delete_shares(record.id, [u.id for u in users]))
        return [u.email for u in users if u.id in removed]

    async def leave(self, who: Principal, ref: str) -> None:
        record = await self._folders.resolve(who, ref)
        if await self._repo.share_permission(record.id, who.user_id) is None:
            raise FailedPrecondition(f"vfolder {record.name!r} is not shared with you: you own "
                                     "it or reach it through a project",
                                     reason="VFOLDER_NOT_SHARED")
        await self._repo.delete_shares(record.id, [who.user_id])
