"""Vfolder use cases: records in the manager database, contents on the storage proxy.

The manager decides who may do what (:mod:`.access`); the storage proxy owns the bytes and checks
paths (``..``, absolute paths and symlinks out of the folder are refused there). Only ``fs``
volumes can be bind-mounted into sessions (:meth:`VFolderService.resolve_mounts`).

Simplifications: scope quotas (per user / project) are checked by the manager before a create,
clone or upload grant by summing the storage proxy's usage of the scope's folders (trash
included); concurrent uploads can each pass the check. Per-folder quotas are also enforced by the
storage proxy on every write. Clones stay on the source's volume.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bai.common.errors import FailedPrecondition
from bai.manager.domain.errors import NotAllowed
from bai.manager.domain.model import Principal
from bai.manager.domain.vfolders import access
from bai.manager.domain.vfolders.model import (
    FileEntry,
    FolderMount,
    InvalidVFolderRequest,
    MountRequest,
    Permission,
    ProjectInfo,
    QuotaExceeded,
    QuotaScope,
    ScopeType,
    StorageNotConfigured,
    StoragePort,
    TransferGrant,
    VFolderNameTaken,
    VFolderNotFound,
    VFolderNotMountable,
    VFolderRecord,
    VFolderRepository,
    VFolderStatus,
    VolumeInfo,
)
from bai.manager.domain.vfolders.sharing import VFolderSharing

__all__ = ["VFolderService"]

log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
USAGE_MODES = ("general", "model", "data")
WORK_DIR = "/home/work"


def clean_path(path: str) -> str:
    """"" for the root; the proxy does the real (escape) checks."""
    path = path.strip()
    return "" if path in ("", ".", "./") else path


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME_RE.match(name):
        raise InvalidVFolderRequest(
            f"vfolder name {name!r} must be 1-64 characters of letters, digits, '.', '_' "
            "and '-', not starting with '.'", reason="INVALID_VFOLDER_NAME")
    return name


def check_usage_mode(usage_mode: str) -> str:
    usage_mode = usage_mode.strip().lower() or "general"
    if usage_mode not in USAGE_MODES:
        raise InvalidVFolderRequest(f"usage_mode {usage_mode!r} is not one of {USAGE_MODES}")
    return usage_mode


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref.strip())
    except ValueError:
        return None


class VFolderService:
    """Use cases of VFolderService; ``storage`` None means the manager runs without a proxy."""

    def __init__(self, repo: VFolderRepository, storage: StoragePort | None) -> None:
        self._repo = repo
        self._storage = storage
        self.sharing = VFolderSharing(repo, self)
        """Invitations and shares."""

    # -- plumbing -------------------------------------------------------------------------

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

    async def _mountable(self) -> dict[str, bool]:
        return {v.name: v.mountable for v in await self._volumes()}

    async def list_volumes(self) -> list[VolumeInfo]:
        return await self._volumes()

    async def _choose_volume(self, volume: str) -> VolumeInfo:
        volumes = await self._volumes()
        host = volume.strip()
        if ":" in host:  # Backend.AI hosts look like "proxy:volume"
            host = host.rsplit(":", 1)[1]
        chosen = next((v for v in volumes if v.name == host), None) if host else volumes[0]
        if chosen is None:
            raise VFolderNotFound(f"storage volume {volume!r} does not exist",
                                  reason="VOLUME_NOT_FOUND")
        return chosen

    async def _with_access(self, who: Principal, record: VFolderRecord,
                           memberships: dict[uuid.UUID, str],
                           shares: dict[uuid.UUID, Permission] | None = None,
                           ) -> VFolderRecord | None:
        """``record`` with the caller's access filled in (None: no access). ``shares``, when
        given, holds every share with the caller (listings read them once, not per folder)."""
        role = memberships.get(record.owner_project_id) if record.owner_project_id else None
        share = None
        if record.owner_user_id != who.user_id:
            share = (shares.get(record.id) if shares is not None
                     else await self._repo.share_permission(record.id, who.user_id))
        permission = access.access_permission(who, record, member_role=role, share=share)
        if permission is None:
            return None
        return replace(record, access=permission,
                       is_owner=record.owner_user_id == who.user_id)

    async def _find(self, who: Principal, ref: str, status: VFolderStatus) -> VFolderRecord:
        """A folder the caller may access, by id (dashed or hex) or name."""
        return (await self._locate(who, ref, status))[0]

    async def _locate(self, who: Principal, ref: str,
                      status: VFolderStatus) -> tuple[VFolderRecord, dict[uuid.UUID, str]]:
        """:meth:`_find`, plus the caller's project memberships it read on the way."""
        ref = ref.strip()
        memberships = await self._repo.memberships(who.user_id)
        folder_id = _as_uuid(ref)
        candidates: list[VFolderRecord] = []
        if folder_id is not None:
            found = await self._repo.get(folder_id, status)
            candidates = [found] if found is not None else []
        if not candidates and ref:
            candidates = await self._repo.find_by_name(
                ref, user_id=who.user_id, project_ids=list(memberships), status=status)
        for candidate in candidates:
            record = await self._with_access(who, candidate, memberships)
            if record is not None:
                return record, memberships
        where = " in the trash" if status is VFolderStatus.TRASHED else ""
        raise VFolderNotFound(f"vfolder {ref!r} does not exist{where}")

    async def resolve(self, who: Principal, ref: str) -> VFolderRecord:
        """A live folder the caller may access, with ``access`` and ``is_owner`` filled."""
        return await self._find(who, ref, VFolderStatus.READY)

    async def managed(self, who: Principal, ref: str,
                      status: VFolderStatus = VFolderStatus.READY) -> VFolderRecord:
        record, memberships = await self._locate(who, ref, status)
        role = memberships.get(record.owner_project_id) if record.owner_project_id else None
        if not access.can_manage(who, record, member_role=role):
            raise NotAllowed(f"only the owner of vfolder {record.name!r} (or an admin of its "
                             "project) may do that", reason="VFOLDER_PERMISSION_DENIED")
        return record

    async def _writable(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.resolve(who, ref)
        if not access.can_write(record.access):
            raise NotAllowed(f"vfolder {record.name!r} is read-only for you",
                             reason="VFOLDER_READ_ONLY")
        return record

    # -- quotas ---------------------------------------------------------------------------

    async def _scope_usage(self, scope_type: ScopeType,
                           scope_id: uuid.UUID) -> tuple[int, int]:
        folders = await self._repo.list_of_scope(scope_type, scope_id)
        usages = await asyncio.gather(  # each is a walk of the folder on fs volumes
            *(self._proxy().usage(folder.volume, folder.id) for folder in folders))
        return sum(used for used, _ in usages), len(folders)

    async def _check_scope_room(self, scope_type: ScopeType, scope_id: uuid.UUID,
                                extra_bytes: int) -> None:
        """Refuses when the scope's folders plus ``extra_bytes`` would pass its quota (a new,
        empty folder is refused once the scope is already full)."""
        limit = await self._repo.scope_quota(scope_type, scope_id)
        if limit <= 0:
            return
        used, _ = await self._scope_usage(scope_type, scope_id)
        if used + extra_bytes > limit or (extra_bytes == 0 and used >= limit):
            raise QuotaExceeded(
                f"the {scope_type.value} quota of {limit} bytes would be exceeded "
                f"({used} bytes used, {extra_bytes} more requested)")

    @staticmethod
    def _scope_of(record: VFolderRecord) -> tuple[ScopeType, uuid.UUID]:
        if record.owner_project_id is not None:
            return ScopeType.PROJECT, record.owner_project_id
        assert record.owner_user_id is not None  # a check constraint guarantees one owner
        return ScopeType.USER, record.owner_user_id

    async def _resolve_scope(self, who: Principal, scope_type: ScopeType,
                             ref: str) -> tuple[uuid.UUID, str]:
        """(scope id, its domain) of a user (email or id) or project (name or id)."""
        if scope_type is ScopeType.USER:
            user = await self._repo.user(ref.strip() or str(who.user_id))
            if user is None:
                raise VFolderNotFound(f"user {ref!r} does not exist", reason="USER_NOT_FOUND")
            return user.id, user.domain
        project = await self._repo.project(ref)
        if project is None:
            raise VFolderNotFound(f"project {ref!r} does not exist", reason="PROJECT_NOT_FOUND")
        return project.id, project.domain

    async def set_scope_quota(self, who: Principal, scope_type: ScopeType, ref: str,
                              max_bytes: int) -> QuotaScope:
        if max_bytes < 0:
            raise InvalidVFolderRequest("max_bytes must not be negative")
        scope_id, domain = await self._resolve_scope(who, scope_type, ref)
        if not access.can_set_scope_quota(who, scope_domain=domain):
            raise NotAllowed("only a superadmin or an admin of its domain may set that quota",
                             reason="VFOLDER_PERMISSION_DENIED")
        await self._repo.set_scope_quota(scope_type, scope_id, max_bytes, datetime.now(UTC))
        log.info("%s quota of %s set to %d bytes by %s", scope_type.value, scope_id, max_bytes,
                 who.email)
        return await self._quota_scope(scope_type, scope_id)

    async def get_scope_quota(self, who: Principal, scope_type: ScopeType | None,
                              ref: str) -> QuotaScope:
        scope_type = scope_type or ScopeType.USER
        scope_id, domain = await self._resolve_scope(who, scope_type, ref)
        role = (await self._repo.memberships(who.user_id)).get(scope_id)
        if not access.can_read_scope_quota(who, scope_type, scope_id, scope_domain=domain,
                                           member_role=role):
            raise NotAllowed("you may not read that quota", reason="VFOLDER_PERMISSION_DENIED")
        return await self._quota_scope(scope_type, scope_id)

    async def _quota_scope(self, scope_type: ScopeType, scope_id: uuid.UUID) -> QuotaScope:
        used, count = await self._scope_usage(scope_type, scope_id)
        return QuotaScope(scope_type=scope_type, scope_id=scope_id,
                          max_bytes=await self._repo.scope_quota(scope_type, scope_id),
                          used_bytes=used, vfolder_count=count)

    async def set_folder_quota(self, who: Principal, ref: str,
                               quota_bytes: int) -> VFolderRecord:
        if quota_bytes < 0:
            raise InvalidVFolderRequest("quota_bytes must not be negative")
        record = await self.managed(who, ref)
        await self._proxy().set_quota(record.volume, record.id, quota_bytes)
        await self._repo.set_quota(record.id, quota_bytes)
        return replace(record, quota_bytes=quota_bytes)

    # -- folders --------------------------------------------------------------------------

    async def _owner_project(self, who: Principal, project_ref: str) -> ProjectInfo:
        project = await self._repo.project(project_ref)
        if project is None:
            raise VFolderNotFound(f"project {project_ref!r} does not exist",
                                  reason="PROJECT_NOT_FOUND")
        role = (await self._repo.memberships(who.user_id)).get(project.id)
        if not access.can_create_project_folder(who, project_domain=project.domain,
                                                member_role=role):
            raise NotAllowed(f"only an admin of project {project.name!r} may create its "
                             "folders", reason="VFOLDER_PERMISSION_DENIED")
        return project

    async def create(self, who: Principal, name: str, volume: str, permission: Permission,
                     usage_mode: str, *, project: str = "", quota_bytes: int = 0,
                     cloneable: bool = False) -> VFolderRecord:
        name = check_name(name)
        usage_mode = check_usage_mode(usage_mode)
        if quota_bytes < 0:
            raise InvalidVFolderRequest("quota_bytes must not be negative")
        chosen = await self._choose_volume(volume)
        owner_project = await self._owner_project(who, project) if project.strip() else None
        record = VFolderRecord(
            id=uuid.uuid4(), name=name, volume=chosen.name,
            owner_user_id=None if owner_project else who.user_id,
            owner_project_id=owner_project.id if owner_project else None,
            permission=permission, usage_mode=usage_mode, status=VFolderStatus.READY.value,
            created_at=datetime.now(UTC), mountable=chosen.mountable, cloneable=cloneable,
            quota_bytes=quota_bytes, creator_user_id=who.user_id, creator_email=who.email,
            project_name=owner_project.name if owner_project else "",
            project_domain=owner_project.domain if owner_project else "")
        scope_type, scope_id = self._scope_of(record)
        await self._check_scope_room(scope_type, scope_id, 0)
        limit = await self._repo.scope_quota(scope_type, scope_id)
        if limit and quota_bytes > limit:
            raise QuotaExceeded(f"a folder quota of {quota_bytes} bytes exceeds the "
                                f"{scope_type.value} quota of {limit} bytes")
        await self._insert(record, lambda: self._proxy().create_folder(
            record.volume, record.id, quota_bytes))
        log.info("vfolder %s (%s) created on volume %s for %s %s by %s", record.id, name,
                 record.volume, scope_type.value, scope_id, who.email)
        return replace(record, access=permission, is_owner=owner_project is None)

    async def _insert(self, record: VFolderRecord,
                      make: Callable[[], Awaitable[None]]) -> None:
        """Creates the storage folder (``make``), then the row; undoes the folder if the name
        was taken meanwhile (the unique constraint decides, not a SELECT)."""
        owner = record.owner_user_id or record.owner_project_id
        existing = await self._repo.find_by_name(
            record.name, user_id=record.owner_user_id or uuid.UUID(int=0),
            project_ids=[record.owner_project_id] if record.owner_project_id else [],
            status=VFolderStatus.READY)
        if any((f.owner_user_id or f.owner_project_id) == owner for f in existing):
            raise VFolderNameTaken(f"a vfolder named {record.name!r} already exists")
        await make()
        if not await self._repo.add(record):
            await self._proxy().delete_folder(record.volume, record.id)
            raise VFolderNameTaken(f"a vfolder named {record.name!r} already exists")

    async def list_folders(self, who: Principal, project_id: str = "") -> list[VFolderRecord]:
        return await self._list(who, VFolderStatus.READY, project_id)

    async def list_trash(self, who: Principal) -> list[VFolderRecord]:
        """Trashed folders the caller may restore or purge (not those merely shared)."""
        memberships = await self._repo.memberships(who.user_id)
        trashed = await self._list(who, VFolderStatus.TRASHED, "")
        return [r for r in trashed if access.can_manage(
            who, r, member_role=memberships.get(r.owner_project_id)
            if r.owner_project_id else None)]

    async def _list(self, who: Principal, status: VFolderStatus,
                    project_id: str) -> list[VFolderRecord]:
        mountable = await self._mountable()
        memberships = await self._repo.memberships(who.user_id)
        records = await self._repo.list_for(who.user_id, list(memberships), status)
        shares = await self._repo.shared_with(who.user_id)
        only = _as_uuid(project_id) if project_id.strip() else None
        if project_id.strip() and only is None:
            raise InvalidVFolderRequest(f"project id {project_id!r} is not a UUID")
        listed: list[VFolderRecord] = []
        for record in records:
            if only is not None and record.owner_project_id != only:
                continue
            seen = await self._with_access(who, record, memberships, shares)
            if seen is not None:
                listed.append(replace(seen, mountable=mountable.get(record.volume, False)))
        return listed

    async def get(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.resolve(who, ref)
        used, count = await self._proxy().usage(record.volume, record.id)
        mountable = (await self._mountable()).get(record.volume, False)
        return replace(record, used_bytes=used, file_count=count, mountable=mountable)

    async def delete(self, who: Principal, ref: str) -> VFolderRecord:
        """Moves a folder to the trash; its contents stay until purged."""
        record = await self.managed(who, ref)
        at = datetime.now(UTC)
        await self._repo.trash(record.id, at)
        log.info("vfolder %s (%s) moved to the trash by %s", record.id, record.name, who.email)
        return replace(record, status=VFolderStatus.TRASHED.value, deleted_at=at)

    async def restore(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.managed(who, ref, VFolderStatus.TRASHED)
        if not await self._repo.restore(record.id):
            raise VFolderNameTaken(f"cannot restore vfolder {record.name!r}: a live vfolder of "
                                   "that name exists; rename it first")
        log.info("vfolder %s (%s) restored by %s", record.id, record.name, who.email)
        return replace(record, status=VFolderStatus.READY.value, deleted_at=None)

    async def purge(self, who: Principal, ref: str) -> VFolderRecord:
        record = await self.managed(who, ref, VFolderStatus.TRASHED)
        await self._proxy().delete_folder(record.volume, record.id)
        await self._repo.purge(record.id, datetime.now(UTC))
        log.info("vfolder %s (%s) purged by %s", record.id, record.name, who.email)
        return replace(record, status=VFolderStatus.PURGED.value)

    async def rename(self, who: Principal, ref: str, new_name: str) -> VFolderRecord:
        new_name = check_name(new_name)
        record = await self.managed(who, ref)
        if new_name == record.name:
            return record
        if not await self._repo.rename(record.id, new_name):
            raise VFolderNameTaken(f"a vfolder named {new_name!r} already exists")
        log.info("vfolder %s renamed %r -> %r by %s", record.id, record.name, new_name,
                 who.email)
        return replace(record, name=new_name)

    async def update_options(self, who: Principal, ref: str, permission: Permission | None,
                             cloneable: bool | None) -> VFolderRecord:
        record = await self.managed(who, ref)
        permission = permission or record.permission
        cloneable = record.cloneable if cloneable is None else cloneable
        await self._repo.update_options(record.id, permission, cloneable)
        access_now = record.access if record.access != record.permission else permission
        return replace(record, permission=permission, cloneable=cloneable, access=access_now)

    async def clone(self, who: Principal, ref: str, target_name: str, target_volume: str,
                    permission: Permission, usage_mode: str) -> VFolderRecord:
        source = await self.resolve(who, ref)
        name = check_name(target_name)
        role = None
        if source.owner_project_id is not None:
            role = (await self._repo.memberships(who.user_id)).get(source.owner_project_id)
        if not source.cloneable and not access.can_manage(who, source, member_role=role):
            raise FailedPrecondition(f"vfolder {source.name!r} is not cloneable",
                                     reason="VFOLDER_NOT_CLONEABLE")
        volume = target_volume.strip()
        if ":" in volume:
            volume = volume.rsplit(":", 1)[1]
        if volume and volume != source.volume:
            raise InvalidVFolderRequest(
                f"cannot clone across volumes ({source.volume!r} -> {volume!r})",
                reason="CROSS_VOLUME_CLONE")
        used, _ = await self._proxy().usage(source.volume, source.id)
        await self._check_scope_room(ScopeType.USER, who.user_id, used)
        mountable = (await self._mountable()).get(source.volume, False)
        record = VFolderRecord(
            id=uuid.uuid4(), name=name, volume=source.volume, owner_user_id=who.user_id,
            owner_project_id=None, permission=permission,
            usage_mode=check_usage_mode(usage_mode or source.usage_mode),
            status=VFolderStatus.READY.value, created_at=datetime.now(UTC), mountable=mountable,
            creator_user_id=who.user_id, creator_email=who.email)
        await self._insert(record, lambda: self._proxy().clone_folder(
            source.volume, source.id, record.id))
        log.info("vfolder %s (%s) cloned into %s (%s) by %s", source.id, source.name,
                 record.id, name, who.email)
        return replace(record, access=permission, is_owner=True)

    # -- files ----------------------------------------------------------------------------

    async def list_files(self, who: Principal, ref: str, path: str) -> list[FileEntry]:
        record = await self.resolve(who, ref)
        return await self._proxy().list_files(record.volume, record.id, clean_path(path))

    async def make_directory(self, who: Principal, ref: str, path: str, *, parents: bool,
                             exist_ok: bool) -> FileEntry:
        record = await self._writable(who, ref)
        if not clean_path(path):
            raise InvalidVFolderRequest("a directory path is required")
        return await self._proxy().make_directory(record.volume, record.id, path,
                                                  parents=parents, exist_ok=exist_ok)

    async def move_file(self, who: Principal, ref: str, src: str, dst: str) -> FileEntry:
        record = await self._writable(who, ref)
        if not clean_path(src) or not clean_path(dst):
            raise InvalidVFolderRequest("both a source and a destination path are required")
        return await self._proxy().move_file(record.volume, record.id, src, dst)

    async def delete_files(self, who: Principal, ref: str, paths: Sequence[str], *,
                           recursive: bool) -> None:
        record = await self._writable(who, ref)
        if not paths or any(not clean_path(p) for p in paths):
            raise InvalidVFolderRequest("at least one path is required, and never the root")
        await self._proxy().delete_files(record.volume, record.id, list(paths),
                                         recursive=recursive)

    async def upload_token(self, who: Principal, ref: str, path: str,
                           size_bytes: int) -> TransferGrant:
        record = await self._writable(who, ref)
        if size_bytes < 0:
            raise InvalidVFolderRequest("size must not be negative")
        if not clean_path(path):
            raise InvalidVFolderRequest("a file path is required")
        if record.quota_bytes:
            used, _ = await self._proxy().usage(record.volume, record.id)
            if used + size_bytes > record.quota_bytes:
                raise QuotaExceeded(
                    f"vfolder {record.name!r} has {record.quota_bytes - used} of its "
                    f"{record.quota_bytes} quota bytes left; {size_bytes} requested")
        await self._check_scope_room(*self._scope_of(record), size_bytes)
        return await self._proxy().transfer_token(record.volume, record.id, path, upload=True,
                                                  size_bytes=size_bytes)

    async def download_token(self, who: Principal, ref: str, path: str) -> TransferGrant:
        record = await self.resolve(who, ref)
        if not clean_path(path):
            raise InvalidVFolderRequest("a file path is required")
        return await self._proxy().transfer_token(record.volume, record.id, path, upload=False,
                                                  size_bytes=0)

    async def resolve_mounts(self, who: Principal,
                             mounts: Sequence[MountRequest]) -> list[FolderMount]:
        """Host paths of the folders to mount, read-only unless the caller may write."""
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
            read_only = mount.read_only or not access.can_write(record.access)
            resolved.append(FolderMount(host_path=host_path, container_path=target,
                                        read_only=read_only))
        return resolved
