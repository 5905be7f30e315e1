"""Virtual folders: records in the manager database, contents on the storage proxy.

The manager owns who may do what (the owner, or a superadmin); the storage proxy owns the bytes
and checks paths (``..``, absolute paths and symlinks out of the folder are refused there).
Only ``fs`` volumes can be bind-mounted into sessions (:meth:`VFolderService.resolve_mounts`).
"""

from __future__ import annotations

import enum
import logging
import posixpath
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from bai.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from bai.manager.domain.errors import NotAllowed
from bai.manager.domain.model import Mount, Principal

__all__ = [
    "FileEntry",
    "FolderMount",
    "InvalidVFolderRequest",
    "MountRequest",
    "Permission",
    "StorageNotConfigured",
    "StoragePort",
    "TransferGrant",
    "VFolderNameTaken",
    "VFolderNotFound",
    "VFolderNotMountable",
    "VFolderRecord",
    "VFolderRepository",
    "VFolderService",
    "VolumeInfo",
]

log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
USAGE_MODES = ("general", "model", "data")
WORK_DIR = "/home/work"


class Permission(enum.StrEnum):
    READ_ONLY = "ro"
    READ_WRITE = "rw"
    READ_WRITE_DELETE = "wd"


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


@dataclass(frozen=True, slots=True)
class VFolderRecord:
    id: uuid.UUID
    name: str
    volume: str
    owner_user_id: uuid.UUID | None
    owner_project_id: uuid.UUID | None
    permission: Permission
    usage_mode: str
    status: str
    created_at: datetime
    mountable: bool = False
    used_bytes: int = 0
    file_count: int = 0


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
    async def add(self, record: VFolderRecord) -> bool:
        """Inserts a live folder; False when the owner already has a live one of that name."""
        ...

    async def get(self, folder_id: uuid.UUID) -> VFolderRecord | None:
        """A live folder by id."""
        ...

    async def get_by_name(self, owner_user_id: uuid.UUID, name: str) -> VFolderRecord | None:
        """A user's live folder by name."""
        ...

    async def list_live(self, owner_user_id: uuid.UUID | None) -> list[VFolderRecord]:
        """Live folders of a user (None: every live folder), by name."""
        ...

    async def mark_deleted(self, folder_id: uuid.UUID, at: datetime) -> None: ...


class StoragePort(Protocol):
    """The storage proxy (raises the proxy's errors as BaiError subclasses)."""

    async def volumes(self) -> list[VolumeInfo]: ...

    async def create_folder(self, volume: str, folder_id: uuid.UUID) -> None: ...

    async def delete_folder(self, volume: str, folder_id: uuid.UUID) -> None: ...

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

    async def transfer_token(self, volume: str, folder_id: uuid.UUID, path: str, *,
                             upload: bool, size_bytes: int) -> TransferGrant: ...


def _clean_path(path: str) -> str:
    """"" for the root; the proxy does the real (escape) checks."""
    path = path.strip()
    return "" if path in ("", ".", "./") else path


class VFolderService:
    """Use cases of VFolderService; ``storage`` None means the manager runs without a proxy."""

    def __init__(self, repo: VFolderRepository, storage: StoragePort | None) -> None:
        self._repo = repo
        self._storage = storage

    def _proxy(self) -> StoragePort:
        if self._storage is None:
            raise StorageNotConfigured(
                "virtual folders are unavailable: the manager was started without a storage "
                "proxy (--storage HOST:PORT)")
        return self._storage

    async def _volumes(self) -> list[VolumeInfo]:
        volumes = await self._proxy().volumes()
        if not volumes:
            raise StorageNotConfigured("the storage proxy has no volumes")
        return volumes

    async def list_volumes(self) -> list[VolumeInfo]:
        return await self._volumes()

    async def create(self, who: Principal, name: str, volume: str, permission: Permission,
                     usage_mode: str) -> VFolderRecord:
        name = name.strip()
        if not _NAME_RE.match(name):
            raise InvalidVFolderRequest(
                f"vfolder name {name!r} must be 1-64 characters of letters, digits, '.', '_' "
                "and '-', not starting with '.'", reason="INVALID_VFOLDER_NAME")
        usage_mode = usage_mode.strip().lower() or "general"
        if usage_mode not in USAGE_MODES:
            raise InvalidVFolderRequest(f"usage_mode {usage_mode!r} is not one of {USAGE_MODES}")
        volumes = await self._volumes()
        host = volume.strip()
        if ":" in host:  # Backend.AI hosts look like "proxy:volume"
            host = host.rsplit(":", 1)[1]
        chosen = next((v for v in volumes if v.name == host), None) if host else volumes[0]
        if chosen is None:
            raise VFolderNotFound(f"storage volume {volume!r} does not exist",
                                  reason="VOLUME_NOT_FOUND")
        if await self._repo.get_by_name(who.user_id, name) is not None:
            raise VFolderNameTaken(f"you already have a vfolder named {name!r}")
        record = VFolderRecord(
            id=uuid.uuid4(), name=name, volume=chosen.name, owner_user_id=who.user_id,
            owner_project_id=None, permission=permission, usage_mode=usage_mode,
            status="ready", created_at=datetime.now(UTC), mountable=chosen.mountable)
        await self._proxy().create_folder(record.volume, record.id)
        if not await self._repo.add(record):
            await self._proxy().delete_folder(record.volume, record.id)
            raise VFolderNameTaken(f"you already have a vfolder named {name!r}")
        log.info("vfolder %s (%s) created on volume %s for %s", record.id, name, record.volume,
                 who.email)
        return record

    async def _mountable(self) -> dict[str, bool]:
        return {v.name: v.mountable for v in await self._volumes()}

    async def list_folders(self, who: Principal) -> list[VFolderRecord]:
        mountable = await self._mountable()
        records = await self._repo.list_live(who.user_id)
        return [replace(r, mountable=mountable.get(r.volume, False)) for r in records]

    async def resolve(self, who: Principal, ref: str) -> VFolderRecord:
        """A live folder the caller may access, by id (dashed or hex) or name."""
        ref = ref.strip()
        record: VFolderRecord | None = None
        try:
            folder_id = uuid.UUID(ref)
        except ValueError:
            folder_id = None
        if folder_id is not None:
            record = await self._repo.get(folder_id)
            if record is not None and not self._allowed(who, record):
                record = None
        if record is None and ref:
            record = await self._repo.get_by_name(who.user_id, ref)
        if record is None:
            raise VFolderNotFound(f"vfolder {ref!r} does not exist")
        return record

    @staticmethod
    def _allowed(who: Principal, record: VFolderRecord) -> bool:
        return who.is_superadmin or record.owner_user_id == who.user_id

    async def get(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.resolve(who, ref)
        used, count = await self._proxy().usage(record.volume, record.id)
        mountable = (await self._mountable()).get(record.volume, False)
        return replace(record, used_bytes=used, file_count=count, mountable=mountable)

    async def delete(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.resolve(who, ref)
        await self._proxy().delete_folder(record.volume, record.id)
        await self._repo.mark_deleted(record.id, datetime.now(UTC))
        log.info("vfolder %s (%s) deleted by %s", record.id, record.name, who.email)
        return record

    async def list_files(self, who: Principal, ref: str, path: str) -> list[FileEntry]:
        record = await self.resolve(who, ref)
        return await self._proxy().list_files(record.volume, record.id, _clean_path(path))

    async def make_directory(self, who: Principal, ref: str, path: str, *, parents: bool,
                             exist_ok: bool) -> FileEntry:
        record = await self._writable(who, ref)
        if not _clean_path(path):
            raise InvalidVFolderRequest("a directory path is required")
        return await self._proxy().make_directory(record.volume, record.id, path,
                                                  parents=parents, exist_ok=exist_ok)

    async def _writable(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.resolve(who, ref)
        if record.permission is Permission.READ_ONLY:
            raise NotAllowed(f"vfolder {record.name!r} is read-only",
                             reason="VFOLDER_READ_ONLY")
        return record

    async def upload_token(self, who: Principal, ref: str, path: str,
                           size_bytes: int) -> TransferGrant:
        record = await self._writable(who, ref)
        if size_bytes < 0:
            raise InvalidVFolderRequest("size must not be negative")
        if not _clean_path(path):
            raise InvalidVFolderRequest("a file path is required")
        return await self._proxy().transfer_token(record.volume, record.id, path, upload=True,
                                                  size_bytes=size_bytes)

    async def download_token(self, who: Principal, ref: str, path: str) -> TransferGrant:
        record = await self.resolve(who, ref)
        if not _clean_path(path):
            raise InvalidVFolderRequest("a file path is required")
        return await self._proxy().transfer_token(record.volume, record.id, path, upload=False,
                                                  size_bytes=0)

    async def resolve_mounts(self, who: Principal,
                             mounts: Sequence[MountRequest]) -> list[FolderMount]:
        """Host paths of the folders to mount; only fs (mountable) volumes qualify."""
        resolved: list[FolderMount] = []
        seen: set[str] = set()
        for mount in mounts:
            record = await self.resolve(who, mount.vfolder_ref)
            host_path = await self._proxy().mount_path(record.volume, record.id)
            if not host_path:
                raise VFolderNotMountable(
                    f"vfolder {record.name!r} lives on volume {record.volume!r}, an object "
                    "store: only fs volumes can be mounted into sessions")
            target = mount.container_path.strip() or record.name
            target = posixpath.normpath(posixpath.join(WORK_DIR, target))
            if not target.startswith(WORK_DIR + "/"):
                raise InvalidVFolderRequest(f"mount path {mount.container_path!r} escapes "
                                            f"{WORK_DIR}", reason="INVALID_MOUNT_PATH")
            if target in seen or target in ("/", WORK_DIR):
                raise InvalidVFolderRequest(f"mount path {target!r} is used twice or reserved",
                                            reason="INVALID_MOUNT_PATH")
            seen.add(target)
            read_only = mount.read_only or record.permission is Permission.READ_ONLY
            resolved.append(FolderMount(host_path=host_path, container_path=target,
                                        read_only=read_only))
        return resolved
