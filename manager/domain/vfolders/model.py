"""Vfolder records, errors and the ports the vfolder use cases need."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bai.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from bai.manager.domain.model import Mount

__all__ = [
    "FileEntry",
    "FolderMount",
    "InvalidVFolderRequest",
    "Invitation",
    "MountRequest",
    "Permission",
    "ProjectInfo",
    "QuotaExceeded",
    "QuotaScope",
    "ScopeType",
    "Share",
    "StorageNotConfigured",
    "StoragePort",
    "TransferGrant",
    "UserInfo",
    "VFolderNameTaken",
    "VFolderNotFound",
    "VFolderNotMountable",
    "VFolderRecord",
    "VFolderRepository",
    "VFolderStatus",
    "VolumeInfo",
]


class Permission(enum.StrEnum):
    READ_ONLY = "ro"
    READ_WRITE = "rw"
    READ_WRITE_DELETE = "wd"


class VFolderStatus(enum.StrEnum):
    READY = "ready"
    TRASHED = "delete-pending"
    """In the trash: contents kept, name free, restorable (Backend.AI's status name)."""
    PURGED = "delete-complete"


class ScopeType(enum.StrEnum):
    USER = "user"
    PROJECT = "project"


class VFolderNotFound(NotFound):
    default_reason = "VFOLDER_NOT_FOUND"


class VFolderNameTaken(AlreadyExists):
    default_reason = "VFOLDER_ALREADY_EXISTS"


class InvalidVFolderRequest(InvalidArgument):
    default_reason = "INVALID_VFOLDER_REQUEST"


class StorageNotConfigured(FailedPrecondition):
    default_reason = "STORAGE_NOT_CONFIGURED"


class VFolderNotMountable(FailedPrecondition):
    default_reason = "VFOLDER_NOT_MOUNTABLE"


class QuotaExceeded(ResourceExhausted):
    default_reason = "QUOTA_EXCEEDED"  # the storage proxy's reason too: one 412 on REST


@dataclass(frozen=True, slots=True)
class VFolderRecord:
    id: uuid.UUID
    name: str
    volume: str
    owner_user_id: uuid.UUID | None
    owner_project_id: uuid.UUID | None
    permission: Permission
    """The folder's own permission (what its owner and project members get)."""
    usage_mode: str
    status: str
    created_at: datetime
    mountable: bool = False
    used_bytes: int = 0
    file_count: int = 0
    cloneable: bool = False
    quota_bytes: int = 0
    """Per-folder quota; 0 = none."""
    creator_user_id: uuid.UUID | None = None
    deleted_at: datetime | None = None
    """When it went to the trash."""
    creator_email: str = ""
    project_name: str = ""
    project_domain: str = ""
    access: Permission | None = None
    """What the caller may do (filled per call; a share's permission for shared folders)."""
    is_owner: bool = False
    """Whether the caller owns it (filled per call)."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: uuid.UUID
    email: str
    domain: str


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    id: uuid.UUID
    name: str
    domain: str


@dataclass(frozen=True, slots=True)
class Invitation:
    id: uuid.UUID
    vfolder_id: uuid.UUID
    vfolder_name: str
    inviter_user_id: uuid.UUID
    inviter_email: str
    invitee_user_id: uuid.UUID
    invitee_email: str
    permission: Permission
    state: str
    """pending, accepted, rejected or canceled."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Share:
    user_id: uuid.UUID
    email: str
    permission: Permission
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QuotaScope:
    scope_type: ScopeType
    scope_id: uuid.UUID
    max_bytes: int
    """0 = no limit."""
    used_bytes: int = 0
    vfolder_count: int = 0


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    backend: str
    mountable: bool


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    path: str
    type: str
    """file, directory or symlink."""
    size_bytes: int
    modify_time: datetime | None
    mode: int


@dataclass(frozen=True, slots=True)
class TransferGrant:
    url: str
    token: str
    expire_time: datetime | None


@dataclass(frozen=True, slots=True)
class MountRequest:
    vfolder_ref: str
    container_path: str = ""
    read_only: bool = False


FolderMount = Mount
"""A resolved mount: what the agent bind-mounts."""


class VFolderRepository(Protocol):
    """Folder records, shares, invitations and scope quotas (records come with creator email,
    project name and project domain filled)."""

    async def add(self, record: VFolderRecord) -> bool:
        """Inserts a live folder; False when its owner already has a live one of that name."""
        ...

    async def get(self, folder_id: uuid.UUID, status: VFolderStatus) -> VFolderRecord | None: ...

    async def find_by_name(self, name: str, *, user_id: uuid.UUID,
                           project_ids: list[uuid.UUID],
                           status: VFolderStatus) -> list[VFolderRecord]:
        """Folders of that name: the user's own first, then project folders, then shared ones."""
        ...

    async def list_for(self, user_id: uuid.UUID, project_ids: list[uuid.UUID],
                       status: VFolderStatus) -> list[VFolderRecord]:
        """The user's own, their projects' and those shared with them, by name."""
        ...

    async def list_of_scope(self, scope_type: ScopeType,
                            scope_id: uuid.UUID) -> list[VFolderRecord]:
        """Live and trashed folders owned by a user or a project."""
        ...

    async def rename(self, folder_id: uuid.UUID, new_name: str) -> bool:
        """False when the owner has a live folder of that name."""
        ...

    async def update_options(self, folder_id: uuid.UUID, permission: Permission,
                             cloneable: bool) -> None: ...

    async def set_quota(self, folder_id: uuid.UUID, quota_bytes: int) -> None: ...

    async def trash(self, folder_id: uuid.UUID, at: datetime) -> None: ...

    async def restore(self, folder_id: uuid.UUID) -> bool:
        """False when the owner has a live folder of that name."""
        ...

    async def purge(self, folder_id: uuid.UUID, at: datetime) -> None: ...

    async def memberships(self, user_id: uuid.UUID) -> dict[uuid.UUID, str]:
        """Project id -> the user's role in it (member or admin)."""
        ...

    async def project(self, ref: str) -> ProjectInfo | None:
        """A project by id or name."""
        ...

    async def user(self, ref: str) -> UserInfo | None:
        """A user by id or email."""
        ...

    async def users_by_email(self, emails: list[str]) -> list[UserInfo]: ...

    async def share_permission(self, folder_id: uuid.UUID,
                               user_id: uuid.UUID) -> Permission | None: ...

    async def shared_with(self, user_id: uuid.UUID) -> dict[uuid.UUID, Permission]:
        """Folder id -> the permission of its share with the user (one read for a listing)."""
        ...

    async def put_shares(self, folder_id: uuid.UUID, user_ids: list[uuid.UUID],
                         permission: Permission, at: datetime) -> None: ...

    async def list_shares(self, folder_id: uuid.UUID) -> list[Share]:
        """Shares of a folder, by email."""
        ...

    async def delete_shares(self, folder_id: uuid.UUID,
                            user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Removes shares; returns the users that had one."""
        ...

    async def add_invitation(self, invitation: Invitation) -> bool:
        """False when a pending invitation for that folder and invitee exists."""
        ...

    async def get_invitation(self, invitation_id: uuid.UUID) -> Invitation | None: ...

    async def pending_invitations(self, invitee_user_id: uuid.UUID) -> list[Invitation]: ...

    async def close_invitation(self, invitation_id: uuid.UUID, state: str, at: datetime,
                               *, share: bool) -> bool:
        """Moves a pending invitation to ``state`` (with ``share``, also grants its permission,
        in the same transaction); False when it was no longer pending."""
        ...

    async def scope_quota(self, scope_type: ScopeType, scope_id: uuid.UUID) -> int:
        """Max bytes; 0 = none."""
        ...

    async def set_scope_quota(self, scope_type: ScopeType, scope_id: uuid.UUID, max_bytes: int,
                              at: datetime) -> None: ...


class StoragePort(Protocol):
    """The storage proxy (raises the proxy's errors as BaiError subclasses)."""

    async def volumes(self) -> list[VolumeInfo]: ...

    async def create_folder(self, volume: str, folder_id: uuid.UUID,
                            quota_bytes: int = 0) -> None: ...

    async def delete_folder(self, volume: str, folder_id: uuid.UUID) -> None: ...

    async def clone_folder(self, volume: str, folder_id: uuid.UUID,
                           target_id: uuid.UUID) -> None: ...

    async def set_quota(self, volume: str, folder_id: uuid.UUID, quota_bytes: int) -> None: ...

    async def mount_path(self, volume: str, folder_id: uuid.UUID) -> str:
        """Absolute host path of the folder; "" when the volume is not mountable."""
        ...

    async def usage(self, volume: str, folder_id: uuid.UUID) -> tuple[int, int]:
        """(used bytes, file count)."""
        ...

    async def list_files(self, volume: str, folder_id: uuid.UUID, path: str) -> list[FileEntry]:
        ...

    async def make_directory(self, volume: str, folder_id: uuid.UUID, path: str, *,
                             parents: bool, exist_ok: bool) -> FileEntry: ...

    async def move_file(self, volume: str, folder_id: uuid.UUID, src_path: str,
                        dst_path: str) -> FileEntry: ...

    async def delete_files(self, volume: str, folder_id: uuid.UUID, paths: list[str], *,
                           recursive: bool) -> None: ...

    async def transfer_token(self, volume: str, folder_id: uuid.UUID, path: str, *,
                             upload: bool, size_bytes: int) -> TransferGrant: ...
