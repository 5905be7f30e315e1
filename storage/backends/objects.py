"""The file API on object stores, written once over a small :class:`ObjectStore` seam.

Key layout under the volume's key prefix ``<p>``::

    <p>folders/<hex>.json                  the folder's existence and metadata (quota)
    <p>data/<hex>/<path>                   a file
    <p>data/<hex>/<dir>/                   an explicit directory marker (``mkdir``)
    <p>uploads/<hex>/<sha256(path)>/<offset:020d>   segments of a partial upload

Directories are implicit: any key below ``data/<hex>/a/`` makes ``a`` a directory. When a file
or directory leaves a directory (delete, move), a marker is put so the directory does not
vanish, as it would not on a filesystem.

A partial upload is a chain of segment objects named by their offset, so it survives a crash of
the proxy and is never visible in the folder. Every segment but the last is at least
``min_part_size`` (S3 refuses smaller parts): a small flush rewrites the short last segment with
the new bytes appended. ``commit`` concatenates the chain server-side into the file's key
(S3: multipart copy; GCS: compose; Azure: staged blocks) and deletes the segments.

Moves and deletes of directories touch one key at a time and are not atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from bai.storage import errors
from bai.storage.backends.base import (
    FileEntry,
    FileType,
    FolderUsage,
    Parts,
    QuotaLedger,
    QuotaReservation,
    ReadStream,
    VolumeUsage,
    join_path,
)

__all__ = ["ObjectInfo", "ObjectStore", "ObjectVolume"]

DEFAULT_SEGMENT_BYTES = 16 << 20
_FILE_MODE = 0o644
_DIR_MODE = 0o755


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object."""

    key: str
    """Full key."""
    size: int
    """Bytes."""
    mtime: datetime | None
    """Last modification (UTC), when the listing gives it."""


class ObjectStore(Protocol):
    """The few object-store calls the file API needs; adapters map their errors to
    :func:`bai.storage.errors.backend_unavailable`."""

    kind: str
    """Backend type name."""
    min_part_size: int
    """Smallest non-final part :meth:`concat` accepts."""

    async def start(self) -> None:
        """Opens the client (and creates the bucket/container when configured to)."""
        ...

    async def stop(self) -> None:
        """Closes the client."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Writes an object (replacing it)."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """Describes an object; ``None`` when missing."""
        ...

    def get(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Streams bytes ``[start, end)`` of an object (``end`` > ``start``)."""
        ...

    def scan(self, prefix: str) -> AsyncGenerator[ObjectInfo, None]:
        """Every object whose key starts with ``prefix``, in key order."""
        ...

    async def list_dir(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        """Objects directly below ``prefix`` and the common prefixes (ending in ``/``)."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Deletes objects; missing ones are ignored."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """Copies an object server-side."""
        ...

    async def concat(self, dst: str, parts: Sequence[ObjectInfo]) -> None:
        """Writes the concatenation of ``parts`` (in order, at least one) to ``dst``."""
        ...


def _entry(parts: Parts, kind: FileType, size: int, mtime: datetime | None) -> FileEntry:
    return FileEntry(
        name=parts[-1] if parts else "",
        path=join_path(parts),
        type=kind,
        size=size,
        mtime=mtime,
        mode=_DIR_MODE if kind is FileType.DIRECTORY else _FILE_MODE,
    )


class ObjectVolume:
    """A volume on an object store; folders are key prefixes (not mountable)."""

    mountable = False
    capabilities = frozenset({"vfolder", "quota"})

    def __init__(
        self, store: ObjectStore, *, prefix: str = "", segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.store = store
        self.kind = store.kind
        self.prefix = prefix
        self.segment_bytes = max(segment_bytes, store.min_part_size)
        self.quota_ledger = QuotaLedger()

    async def start(self) -> None:
        await self.store.start()

    async def stop(self) -> None:
        await self.store.stop()

    async def usage(self) -> VolumeUsage:
        return VolumeUsage(capacity_bytes=0, used_bytes=0)

    def mount_path(self, folder: UUID) -> str | None:
        return None

    # keys ---------------------------------------------------------------------------------

    def _meta_key(self, folder: UUID) -> str:
        return f"{self.prefix}folders/{folder.hex}.json"

    def _root(self, folder: UUID) -> str:
        return f"{self.prefix}data/{folder.hex}/"

    def _key(self, folder: UUID, parts: Parts) -> str:
        return self._root(folder) + join_path(parts)

    def _dir_prefix(self, folder: UUID, parts: Parts) -> str:
        return self._root(folder) + "".join(p + "/" for p in parts)

    def _segments_prefix(self, folder: UUID, parts: Parts) -> str:
        digest = hashlib.sha256(join_path(parts).encode("utf-8", "surrogateescape")).hexdigest()
        return f"{self.prefix}uploads/{folder.hex}/{digest}/"

    # folders ------------------------------------------------------------------------------

    async def _meta(self, folder: UUID) -> dict[str, int]:
        info = await self.store.head(self._meta_key(folder))
        if info is None:
            raise errors.folder_not_found(str(folder))
        data = b"".join([c async for c in self.store.get(info.key, 0, info.size)])
        loaded: dict[str, int] = json.loads(data) if data else {}
        return loaded

    async def _require(self, folder: UUID) -> None:
        if not await self.folder_exists(folder):
            raise errors.folder_not_found(str(folder))

    async def folder_exists(self, folder: UUID) -> bool:
        return await self.store.head(self._meta_key(folder)) is not None

    async def create_folder(self, folder: UUID) -> None:
        if await self.folder_exists(folder):
            raise errors.folder_exists(str(folder))
        await self.store.put(self._meta_key(folder), json.dumps({"quota_bytes": 0}).encode())

    async def delete_folder(self, folder: UUID) -> None:
        await self._require(folder)
        await self.store.delete([self._meta_key(folder)])  # gone for callers from here on
        for prefix in (self._root(folder), f"{self.prefix}uploads/{folder.hex}/"):
            await self._delete_prefix(prefix)

    async def _delete_prefix(self, prefix: str) -> None:
        batch: list[str] = []
        async for info in self.store.scan(prefix):
            batch.append(info.key)
            if len(batch) >= 1000:
                await self.store.delete(batch)
                batch = []
        if batch:
            await self.store.delete(batch)

    async def clone_folder(self, source: UUID, target: UUID) -> None:
        await self._require(source)
        if await self.folder_exists(target):
            raise errors.folder_exists(str(target))
        src_root, dst_root = self._root(source), self._root(target)
        async for info in self.store.scan(src_root):
            await self.store.copy(info.key, dst_root + info.key[len(src_root) :])
        # the metadata object makes the folder exist: written last, after every file
        await self.store.put(self._meta_key(target), json.dumps({"quota_bytes": 0}).encode())

    async def folder_usage(self, folder: UUID) -> FolderUsage:
        await self._require(folder)
        return await self._usage(folder)

    async def _usage(self, folder: UUID) -> FolderUsage:
        used = count = 0
        async for info in self.store.scan(self._root(folder)):
            if not info.key.endswith("/"):
                used += info.size
                count += 1
        return FolderUsage(used_bytes=used, file_count=count)

    async def get_quota(self, folder: UUID) -> int:
        return int((await self._meta(folder)).get("quota_bytes", 0))

    async def set_quota(self, folder: UUID, quota_bytes: int) -> None:
        meta = await self._meta(folder)
        meta["quota_bytes"] = quota_bytes
        await self.store.put(self._meta_key(folder), json.dumps(meta).encode())

    # files --------------------------------------------------------------------------------

    async def _probe(self, folder: UUID, parts: Parts) -> FileEntry | None:
        """The entry at ``parts``: a file, a marked or an implicit directory, or ``None``."""
        if not parts:
            return _entry(parts, FileType.DIRECTORY, 0, None)
        info = await self.store.head(self._key(folder, parts))
        if info is not None:
            return _entry(parts, FileType.FILE, info.size, info.mtime)
        prefix = self._dir_prefix(folder, parts)
        marker = await self.store.head(prefix)
        if marker is not None:
            return _entry(parts, FileType.DIRECTORY, 0, marker.mtime)
        async with contextlib.aclosing(self.store.scan(prefix)) as listing:
            async for _ in listing:
                return _entry(parts, FileType.DIRECTORY, 0, None)
        return None

    async def _check_parents(self, folder: UUID, parts: Parts, display: str) -> None:
        """Refuses a path one of whose ancestors is a file."""
        for i in range(1, len(parts)):
            if await self.store.head(self._key(folder, parts[:i])) is not None:
                raise errors.not_a_directory(display)

    async def stat(self, folder: UUID, path: Parts) -> FileEntry:
        await self._require(folder)
        entry = await self._probe(folder, path)
        if entry is None:
            raise errors.file_not_found(join_path(path))
        return entry

    async def list_dir(self, folder: UUID, path: Parts) -> list[FileEntry]:
        entry = await self.stat(folder, path)
        if entry.type is not FileType.DIRECTORY:
            raise errors.not_a_directory(entry.path)
        prefix = self._dir_prefix(folder, path)
        objects, prefixes = await self.store.list_dir(prefix)
        entries = {}
        for info in objects:
            name = info.key[len(prefix) :]
            if name:  # the directory's own marker
                entries[name] = _entry((*path, name), FileType.FILE, info.size, info.mtime)
        for sub in prefixes:
            name = sub[len(prefix) :].rstrip("/")
            if name and name not in entries:
                entries[name] = _entry((*path, name), FileType.DIRECTORY, 0, None)
        return [entries[name] for name in sorted(entries, key=lambda n: n.encode())]

    async def mkdir(self, folder: UUID, path: Parts, *, parents: bool, exist_ok: bool) -> FileEntry:
        await self._require(folder)
        display = join_path(path)
        existing = await self._probe(folder, path)
        if existing is not None:
            if exist_ok and existing.type is FileType.DIRECTORY:
                return existing
            raise errors.file_exists(display)
        await self._check_parents(folder, path, display)
        if not parents and len(path) > 1 and await self._probe(folder, path[:-1]) is None:
            raise errors.file_not_found(join_path(path[:-1]))
        await self.store.put(self._dir_prefix(folder, path), b"")
        return await self.stat(folder, path)

    async def _keep_parent(self, folder: UUID, parts: Parts) -> None:
        if len(parts) > 1:
            await self.store.put(self._dir_prefix(folder, parts[:-1]), b"")

    async def move(self, folder: UUID, src: Parts, dst: Parts) -> FileEntry:
        await self._require(folder)
        if not src or not dst:
            raise errors.invalid_path("", "the folder root cannot be moved or replaced")
        if dst[: len(src)] == src:
            raise errors.invalid_path(join_path(dst), "a directory cannot move into itself")
        entry = await self._probe(folder, src)
        if entry is None:
            raise errors.file_not_found(join_path(src))
        if await self._probe(folder, dst) is not None:
            raise errors.file_exists(join_path(dst))
        parent = await self._probe(folder, dst[:-1])
        if parent is None:
            raise errors.file_not_found(join_path(dst[:-1]))
        if parent.type is not FileType.DIRECTORY:
            raise errors.not_a_directory(join_path(dst[:-1]))
        if entry.type is FileType.FILE:
            await self.store.copy(self._key(folder, src), self._key(folder, dst))
            await self.store.delete([self._key(folder, src)])
        else:
            src_prefix, dst_prefix = self._dir_prefix(folder, src), self._dir_prefix(folder, dst)
            keys = [info.key async for info in self.store.scan(src_prefix)]
            for key in keys:
                await self.store.copy(key, dst_prefix + key[len(src_prefix) :])
            await self.store.delete(keys)
        await self._keep_parent(folder, src)
        return await self.stat(folder, dst)

    async def delete(self, folder: UUID, paths: Sequence[Parts], *, recursive: bool) -> None:
        await self._require(folder)
        found: list[FileEntry] = []
        for parts in paths:
            if not parts:
                raise errors.invalid_path("", "the folder root cannot be deleted")
            entry = await self._probe(folder, parts)
            if entry is None:
                raise errors.file_not_found(join_path(parts))
            if entry.type is FileType.DIRECTORY and not recursive:
                prefix = self._dir_prefix(folder, parts)
                async with contextlib.aclosing(self.store.scan(prefix)) as listing:
                    async for info in listing:
                        if info.key != prefix:
                            raise errors.directory_not_empty(entry.path)
            found.append(entry)
        for entry, parts in zip(found, paths, strict=True):
            if entry.type is FileType.FILE:
                await self.store.delete([self._key(folder, parts)])
            else:
                await self._delete_prefix(self._dir_prefix(folder, parts))
            await self._keep_parent(folder, parts)

    # uploads and downloads ------------------------------------------------------------------

    async def _segments(self, folder: UUID, path: Parts) -> tuple[list[ObjectInfo], list[str]]:
        """The contiguous chain of segments from offset 0, and stray segment keys."""
        chain: list[ObjectInfo] = []
        stray: list[str] = []
        prefix = self._segments_prefix(folder, path)
        end = 0
        async for info in self.store.scan(prefix):
            try:
                offset = int(info.key[len(prefix) :])
            except ValueError:
                stray.append(info.key)
                continue
            if offset == end and not stray:
                chain.append(info)
                end += info.size
            else:
                stray.append(info.key)
        return chain, stray

    async def upload_offset(self, folder: UUID, path: Parts) -> int:
        await self._require(folder)
        chain, _ = await self._segments(folder, path)
        return sum(s.size for s in chain)

    async def open_upload(
        self, folder: UUID, path: Parts, *, offset: int, total_size: int
    ) -> _ObjectUpload:
        meta = await self._meta(folder)
        display = join_path(path)
        if not path:
            raise errors.is_a_directory("")
        existing = await self._probe(folder, path)
        if existing is not None and existing.type is FileType.DIRECTORY:
            raise errors.is_a_directory(display)
        await self._check_parents(folder, path, display)
        chain, stray = await self._segments(folder, path)
        held = sum(s.size for s in chain)
        if offset == 0:
            await self.store.delete([s.key for s in chain] + stray)
            chain, stray = [], []
        elif offset != held:
            raise errors.upload_offset_mismatch(offset, held)
        if stray:
            await self.store.delete(stray)
        upload = _ObjectUpload(self, folder, path, chain, total_size)
        try:
            # check-and-reserve in one event-loop step: concurrent uploads cannot both fit
            upload.quota = await self.quota_ledger.reserve(
                folder,
                int(meta.get("quota_bytes", 0)),
                replaced=existing.size if existing else 0,
                amount=total_size or offset,
                scan=lambda: self._used_bytes(folder),
            )
        except errors.ResourceExhausted:
            await upload.discard()
            raise
        return upload

    async def _used_bytes(self, folder: UUID) -> int:
        return (await self._usage(folder)).used_bytes

    async def open_read(
        self, folder: UUID, path: Parts, *, offset: int, length: int | None
    ) -> tuple[FileEntry, ReadStream]:
        await self._require(folder)
        if not path:
            raise errors.is_a_directory("")
        key = self._key(folder, path)
        info = await self.store.head(key)
        if info is None:
            entry = await self._probe(folder, path)
            if entry is not None:
                raise errors.is_a_directory(join_path(path))
            raise errors.file_not_found(join_path(path))
        if offset > info.size:
            raise errors.invalid_range(offset, info.size)
        end = info.size if length is None else min(info.size, offset + length)
        entry = _entry(path, FileType.FILE, info.size, info.mtime)
        return entry, self._read(key, offset, end)

    async def _read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        if end > start:
            async with contextlib.aclosing(self.store.get(key, start, end)) as chunks:
                async for chunk in chunks:
                    yield chunk


class _ObjectUpload:
    """A partial upload kept as segment objects (see the module docstring)."""

    def __init__(
        self,
        volume: ObjectVolume,
        folder: UUID,
        path: Parts,
        chain: list[ObjectInfo],
        total: int,
    ) -> None:
        self._volume = volume
        self._store = volume.store
        self._folder = folder
        self._path = path
        self._prefix = volume._segments_prefix(folder, path)
        self._chain = chain
        self.quota: QuotaReservation | None = None
        self._total = total
        self._buffer = bytearray()
        self.offset = sum(s.size for s in chain)

    async def write(self, data: bytes) -> None:
        end = self.offset + len(data)
        if self._total and end > self._total:
            raise errors.upload_size_mismatch(self._total, end)
        try:
            if self.quota is not None:
                self.quota.grow(end)
        except errors.ResourceExhausted:
            await self.discard()
            raise
        self._buffer += data
        self.offset = end
        if len(self._buffer) >= self._volume.segment_bytes:
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        last = self._chain[-1] if self._chain else None
        if last is not None and last.size < self._store.min_part_size:
            # keep every non-final segment >= min_part_size: rewrite the short last one longer
            head = b"".join([c async for c in self._store.get(last.key, 0, last.size)])
            data = head + data
            start = int(last.key[len(self._prefix) :])
            self._chain.pop()
        else:
            start = self.offset - len(data)
        key = f"{self._prefix}{start:020d}"
        await self._store.put(key, data)
        self._chain.append(ObjectInfo(key=key, size=len(data), mtime=None))
        self._buffer.clear()

    async def commit(self) -> FileEntry:
        try:
            await self.flush()
            key = self._volume._key(self._folder, self._path)
            if self._chain:
                await self._store.concat(key, self._chain)
                await self._store.delete([s.key for s in self._chain])
            else:
                await self._store.put(key, b"")
            self._chain = []
            entry = await self._volume.stat(self._folder, self._path)
            if self.quota is not None:
                self.quota.commit(entry.size)
            return entry
        finally:
            self._release()

    async def suspend(self) -> None:
        try:
            await self.flush()
        finally:
            self._release()

    async def discard(self) -> None:
        self._buffer.clear()
        try:
            await self._store.delete([s.key for s in self._chain])
            self._chain = []
        finally:
            self._release()

    def _release(self) -> None:
        if self.quota is not None:
            self.quota.release()
