"""The ``fs`` backend: folders are directories under a local (or network-mounted) root.

Layout under the root (Backend.AI's, without quota scopes)::

    <root>/<hex[0:2]>/<hex[2:4]>/<hex[4:]>/...   a folder's files (bind-mountable)
    <root>/.bai/uploads/<hex>/<sha256(path)>     partial uploads, outside every folder
    <root>/.bai/meta/<hex>.json                  per-folder metadata (quota)
    <root>/.bai/tmp/                             clones in progress, folders being deleted

Paths inside a folder are resolved by :class:`~bai.storage.backends.fs_walk.Walker` only:
descriptor-relative, ``O_NOFOLLOW``, symlinks followed only while they stay in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from bai.storage import errors
from bai.storage.backends.base import (
    CHUNK_SIZE,
    FileEntry,
    FileType,
    FolderUsage,
    Parts,
    QuotaLedger,
    QuotaReservation,
    ReadStream,
    SocketBody,
    VolumeUsage,
    join_path,
)
from bai.storage.backends.fs_owner import DEFAULT_OWNER, Ownership
from bai.storage.backends.fs_walk import DIR_FLAGS as _DIR_FLAGS
from bai.storage.backends.fs_walk import Walker as _Walker
from bai.storage.backends.fs_walk import lstat as _lstat

__all__ = ["FsVolume"]

_WRITE_BUFFER = 8 << 20
"""Bytes an upload gathers before handing them to a writer thread in one ``pwritev``."""
_IOV_MAX = 1024


def _entry(parts: Parts, st: os.stat_result) -> FileEntry:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind, size = FileType.DIRECTORY, 0
    elif stat.S_ISLNK(mode):
        kind, size = FileType.SYMLINK, st.st_size
    else:
        kind, size = FileType.FILE, st.st_size
    return FileEntry(
        name=parts[-1] if parts else "",
        path=join_path(parts),
        type=kind,
        size=size,
        mtime=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
        mode=stat.S_IMODE(mode),
    )


class FsVolume:
    """A volume on a local directory; folders are plain directories (bind-mountable)."""

    kind = "fs"
    mountable = True
    capabilities = frozenset({"vfolder", "quota", "fast-fs-size"})

    def __init__(self, root: str | Path, owner: str = DEFAULT_OWNER) -> None:
        self.root = Path(root).absolute()
        self.owner = Ownership.parse(owner)
        self.quota_ledger = QuotaLedger()
        self._meta = self.root / ".bai" / "meta"
        self._uploads = self.root / ".bai" / "uploads"
        self._tmp = self.root / ".bai" / "tmp"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FsVolume:
        """Builds the backend from its config table: ``path`` (required) and ``owner``
        (``"uid:gid"`` of new directories and files in folders; default ``"1000:1000"``, the
        kernel user: see :mod:`bai.storage.backends.fs_owner`)."""
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("fs volume needs a 'path' option")
        owner = options.get("owner", DEFAULT_OWNER)
        if not isinstance(owner, str):
            raise ValueError("fs volume option 'owner' must be a 'uid:gid' string")
        return cls(path, owner)

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for path in (self._meta, self._uploads, self._tmp):
            path.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    async def usage(self) -> VolumeUsage:
        du = await asyncio.to_thread(shutil.disk_usage, self.root)
        return VolumeUsage(capacity_bytes=du.total, used_bytes=du.used)

    # folders -----------------------------------------------------------------------------

    def _folder_dir(self, folder: UUID) -> Path:
        h = folder.hex
        return self.root / h[:2] / h[2:4] / h[4:]

    def mount_path(self, folder: UUID) -> str | None:
        return str(self._folder_dir(folder))

    def _open_root(self, folder: UUID) -> int:
        try:
            return os.open(self._folder_dir(folder), _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise errors.folder_not_found(str(folder)) from None

    async def folder_exists(self, folder: UUID) -> bool:
        return self._folder_dir(folder).is_dir()

    async def create_folder(self, folder: UUID) -> None:
        path = self._folder_dir(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        parent_fd = os.open(path.parent, _DIR_FLAGS)
        try:
            self.owner.mkdir(path.name, parent_fd)  # the kernel user may write at the root
        except FileExistsError:
            raise errors.folder_exists(str(folder)) from None
        finally:
            os.close(parent_fd)

    async def delete_folder(self, folder: UUID) -> None:
        path = self._folder_dir(folder)
        trash = self._tmp / f"trash-{uuid.uuid4().hex}"
        try:
            path.rename(trash)  # atomic: the folder is gone at once, the tree goes below
        except FileNotFoundError:
            raise errors.folder_not_found(str(folder)) from None
        (self._meta / f"{folder.hex}.json").unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, trash, True)
        await asyncio.to_thread(shutil.rmtree, self._uploads / folder.hex, True)

    async def clone_folder(self, source: UUID, target: UUID) -> None:
        src = self._folder_dir(source)
        if not src.is_dir():
            raise errors.folder_not_found(str(source))
        dst = self._folder_dir(target)
        if dst.exists():
            raise errors.folder_exists(str(target))
        staging = self._tmp / f"clone-{uuid.uuid4().hex}"
        # symlinks=True copies links as links: a clone never reads through them.
        await asyncio.to_thread(shutil.copytree, src, staging, symlinks=True)
        await asyncio.to_thread(self.owner.apply_tree, str(staging))
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, dst)
        except OSError:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise errors.folder_exists(str(target)) from None

    async def folder_usage(self, folder: UUID) -> FolderUsage:
        root_fd = self._open_root(folder)
        try:
            used, count = await asyncio.to_thread(_scan_usage, root_fd)
        finally:
            os.close(root_fd)
        return FolderUsage(used_bytes=used, file_count=count)

    async def get_quota(self, folder: UUID) -> int:
        if not await self.folder_exists(folder):
            raise errors.folder_not_found(str(folder))
        try:
            data = json.loads((self._meta / f"{folder.hex}.json").read_text())
        except FileNotFoundError:
            return 0
        return int(data.get("quota_bytes", 0))

    async def set_quota(self, folder: UUID, quota_bytes: int) -> None:
        if not await self.folder_exists(folder):
            raise errors.folder_not_found(str(folder))
        meta = self._meta / f"{folder.hex}.json"
        tmp = meta.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"quota_bytes": quota_bytes}))
        os.replace(tmp, meta)

    # files -------------------------------------------------------------------------------

    def _walker(self, folder: UUID, parts: Parts) -> _Walker:
        return _Walker(self._open_root(folder), join_path(parts), self.owner.mkdir)

    async def stat(self, folder: UUID, path: Parts) -> FileEntry:
        return await asyncio.to_thread(self._stat, folder, path)

    def _stat(self, folder: UUID, path: Parts) -> FileEntry:
        walker = self._walker(folder, path)
        try:
            if not path:
                return _entry(path, os.fstat(walker.root_fd))
            fd, name, _ = walker.parent(path, follow=False)
            try:
                st = _lstat(name, fd)
            finally:
                os.close(fd)
            if st is None:
                raise errors.file_not_found(walker.display)
            return _entry(path, st)
        finally:
            os.close(walker.root_fd)

    async def list_dir(self, folder: UUID, path: Parts) -> list[FileEntry]:
        return await asyncio.to_thread(self._list_dir, folder, path)

    def _list_dir(self, folder: UUID, path: Parts) -> list[FileEntry]:
        walker = self._walker(folder, path)
        try:
            fd = walker.open_dir(path)
        finally:
            os.close(walker.root_fd)
        try:
            entries = []
            with os.scandir(fd) as it:
                for item in it:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    entries.append(_entry((*path, item.name), st))
        finally:
            os.close(fd)
        entries.sort(key=lambda e: e.name.encode("utf-8", "surrogateescape"))
        return entries

    async def mkdir(self, folder: UUID, path: Parts, *, parents: bool, exist_ok: bool) -> FileEntry:
        return await asyncio.to_thread(self._mkdir, folder, path, parents, exist_ok)

    def _mkdir(self, folder: UUID, path: Parts, parents: bool, exist_ok: bool) -> FileEntry:
        walker = self._walker(folder, path)
        try:
            if not path:
                if exist_ok:
                    return _entry(path, os.fstat(walker.root_fd))
                raise errors.file_exists("")
            fd, name, _ = walker.parent(path, follow=False, mkdirs=parents)
            try:
                try:
                    self.owner.mkdir(name, fd)
                except FileExistsError:
                    st = _lstat(name, fd)
                    if not (exist_ok and st is not None and stat.S_ISDIR(st.st_mode)):
                        raise errors.file_exists(walker.display) from None
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
            return _entry(path, st)
        finally:
            os.close(walker.root_fd)

    async def move(self, folder: UUID, src: Parts, dst: Parts) -> FileEntry:
        return await asyncio.to_thread(self._move, folder, src, dst)

    def _move(self, folder: UUID, src: Parts, dst: Parts) -> FileEntry:
        if not src or not dst:
            raise errors.invalid_path("", "the folder root cannot be moved or replaced")
        if dst[: len(src)] == src:
            raise errors.invalid_path(join_path(dst), "a directory cannot move into itself")
        walker = self._walker(folder, src)
        dst_walker = _Walker(walker.root_fd, join_path(dst), self.owner.mkdir)
        try:
            src_fd, src_name, _ = walker.parent(src, follow=False)
            try:
                if _lstat(src_name, src_fd) is None:
                    raise errors.file_not_found(walker.display)
                dst_fd, dst_name, _ = dst_walker.parent(dst, follow=False)
                try:
                    if _lstat(dst_name, dst_fd) is not None:
                        raise errors.file_exists(dst_walker.display)
                    try:
                        os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                    except OSError as exc:
                        if exc.errno == errno.EINVAL:  # into itself through a symlink
                            raise errors.invalid_path(
                                dst_walker.display, "a directory cannot move into itself"
                            ) from None
                        raise
                    return _entry(dst, os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False))
                finally:
                    os.close(dst_fd)
            finally:
                os.close(src_fd)
        finally:
            os.close(walker.root_fd)

    async def delete(self, folder: UUID, paths: Sequence[Parts], *, recursive: bool) -> None:
        await asyncio.to_thread(self._delete, folder, paths, recursive)

    def _delete(self, folder: UUID, paths: Sequence[Parts], recursive: bool) -> None:
        root_fd = self._open_root(folder)
        targets: list[tuple[int, str, bool]] = []
        try:
            for parts in paths:  # check everything first: all or nothing (barring races)
                walker = _Walker(root_fd, join_path(parts))
                if not parts:
                    raise errors.invalid_path("", "the folder root cannot be deleted")
                fd, name, _ = walker.parent(parts, follow=False)
                targets.append((fd, name, False))
                st = _lstat(name, fd)
                if st is None:
                    raise errors.file_not_found(walker.display)
                is_dir = stat.S_ISDIR(st.st_mode)
                targets[-1] = (fd, name, is_dir)
                if is_dir and not recursive:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    try:
                        with os.scandir(sub) as it:
                            empty = next(it, None) is None
                    finally:
                        os.close(sub)
                    if not empty:
                        raise errors.directory_not_empty(walker.display)
            for fd, name, is_dir in targets:
                if not is_dir:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
                elif recursive:
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.rmdir(name, dir_fd=fd)
        finally:
            for fd, _, _ in targets:
                os.close(fd)
            os.close(root_fd)

    # uploads and downloads -----------------------------------------------------------------

    def _partial(self, folder: UUID, path: Parts) -> tuple[Path, str]:
        digest = hashlib.sha256(join_path(path).encode("utf-8", "surrogateescape")).hexdigest()
        return self._uploads / folder.hex, digest

    async def upload_offset(self, folder: UUID, path: Parts) -> int:
        if not await self.folder_exists(folder):
            raise errors.folder_not_found(str(folder))
        directory, name = self._partial(folder, path)
        try:
            return (directory / name).stat().st_size
        except FileNotFoundError:
            return 0

    async def open_upload(
        self, folder: UUID, path: Parts, *, offset: int, total_size: int
    ) -> _FsUpload:
        upload, replaced, limit = await asyncio.to_thread(self._open_upload, folder, path, offset)
        try:
            # check-and-reserve in one event-loop step: concurrent uploads cannot both fit
            reservation = await self.quota_ledger.reserve(
                folder,
                limit,
                replaced=replaced,
                amount=total_size or offset,
                scan=lambda: self._used_bytes(folder),
            )
        except errors.ResourceExhausted:
            upload.discard_now()
            raise
        except BaseException:
            upload.close()
            raise
        upload.start(reservation, total_size)
        return upload

    async def _used_bytes(self, folder: UUID) -> int:
        return (await self.folder_usage(folder)).used_bytes

    def _open_upload(self, folder: UUID, path: Parts, offset: int) -> tuple[_FsUpload, int, int]:
        """Opens the partial file at ``offset``; also returns (replaced size, quota)."""
        walker = self._walker(folder, path)
        try:
            replaced = self._existing_size(walker, path)
        finally:
            os.close(walker.root_fd)
        limit = self._read_quota(folder)
        directory, name = self._partial(folder, path)
        directory.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(directory, _DIR_FLAGS)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
        except BaseException:
            os.close(dir_fd)
            raise
        upload = _FsUpload(self, folder, path, dir_fd, name, fd)
        try:
            self.owner.apply(fd, directory=False)  # published as the kernel user's file
            size = os.fstat(fd).st_size
            if offset == 0 and size:
                os.ftruncate(fd, 0)
            elif offset != size:
                raise errors.upload_offset_mismatch(offset, size)
        except BaseException:
            upload.close()
            raise
        upload.resume_at(offset)
        return upload, replaced, limit

    def _read_quota(self, folder: UUID) -> int:
        try:
            return int(json.loads((self._meta / f"{folder.hex}.json").read_text())["quota_bytes"])
        except FileNotFoundError:
            return 0

    def _existing_size(self, walker: _Walker, path: Parts) -> int:
        """Size of the file an upload to ``path`` would replace; refuses directories."""
        try:
            fd, name, _ = walker.parent(path, follow=True)
        except errors.NotFound:
            return 0  # parents are created at commit
        try:
            st = _lstat(name, fd)
        finally:
            os.close(fd)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise errors.is_a_directory(walker.display)
        return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0

    def publish(self, folder: UUID, path: Parts, src_dir_fd: int, src_name: str) -> FileEntry:
        """Moves a finished partial upload to ``path`` (creating parents) atomically."""
        walker = self._walker(folder, path)
        try:
            fd, name, _ = walker.parent(path, follow=True, mkdirs=True)
            try:
                st = _lstat(name, fd)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    raise errors.is_a_directory(walker.display)
                os.rename(src_name, name, src_dir_fd=src_dir_fd, dst_dir_fd=fd)
                return _entry(path, os.stat(name, dir_fd=fd, follow_symlinks=False))
            finally:
                os.close(fd)
        finally:
            os.close(walker.root_fd)

    async def open_read(
        self, folder: UUID, path: Parts, *, offset: int, length: int | None
    ) -> tuple[FileEntry, ReadStream]:
        fd, entry = await asyncio.to_thread(self._open_read, folder, path)
        end = entry.size if length is None else min(entry.size, offset + length)
        if offset > entry.size:
            os.close(fd)
            raise errors.invalid_range(offset, entry.size)
        return entry, _FdStream(fd, offset, end)

    def _open_read(self, folder: UUID, path: Parts) -> tuple[int, FileEntry]:
        walker = self._walker(folder, path)
        try:
            if not path:
                raise errors.is_a_directory("")
            dir_fd, name, _ = walker.parent(path, follow=True)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                raise errors.file_not_found(walker.display) from None
            finally:
                os.close(dir_fd)
        finally:
            os.close(walker.root_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise errors.is_a_directory(walker.display)
            raise errors.invalid_path(walker.display, "not a regular file")
        return fd, _entry(path, st)


class _FdStream:
    """Bytes ``[start, end)`` of an open file; owns (and closes) the descriptor."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd = fd
        self._pos = start
        self._end = end

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    def file_region(self) -> tuple[int, int, int]:
        return self._fd, self._pos, self._end

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while self._pos < self._end and self._fd >= 0:
                size = min(CHUNK_SIZE, self._end - self._pos)
                data = await asyncio.to_thread(os.pread, self._fd, size, self._pos)
                if not data:
                    break
                self._pos += len(data)
                yield data
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _pwritev_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Writes ``chunks`` back to back at ``offset`` (no joining copy), retrying short writes."""
    views = [memoryview(c) for c in chunks]
    first = 0
    while first < len(views):
        written = os.pwritev(fd, views[first : first + _IOV_MAX], offset)
        offset += written
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def _scan_usage(root_fd: int) -> tuple[int, int]:
    """Bytes and count of regular files beneath a directory fd, never following symlinks."""
    used = count = 0
    stack = [os.dup(root_fd)]
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as it:
                for item in it:
                    try:
                        st = item.stat(follow_symlinks=False)
                        if stat.S_ISDIR(st.st_mode):
                            stack.append(os.open(item.name, _DIR_FLAGS, dir_fd=fd))
                        elif stat.S_ISREG(st.st_mode):
                            used += st.st_size
                            count += 1
                    except FileNotFoundError:
                        continue
        finally:
            os.close(fd)
    return used, count


class _FsUpload:
    """A partial upload file under ``.bai/uploads``; published by an atomic rename.

    HTTP PATCH bodies arrive through :meth:`write_body` (``splice(2)``, zero-copy). The chunk
    path (gRPC ``UploadFile``, other bodies): :meth:`write` only appends the caller's bytes
    objects to a list (no copy); every :data:`_WRITE_BUFFER` bytes the list goes to a worker
    thread as one ``pwritev`` while the next one fills, so receiving and writing overlap and
    at most two buffers are held (backpressure: ``write`` waits for the previous ``pwritev``).
    Nothing is hashed and nothing is fsynced per chunk: bytes written are in the page cache, which
    survives a kill of the proxy; :meth:`commit` fsyncs once before the rename.
    """

    def __init__(
        self, volume: FsVolume, folder: UUID, path: Parts, dir_fd: int, name: str, fd: int
    ) -> None:
        self._volume = volume
        self._folder = folder
        self._path = path
        self._dir_fd = dir_fd
        self._name = name
        self._fd = fd
        self._quota: QuotaReservation | None = None
        self._total = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._writing: asyncio.Future[None] | None = None
        self._written = 0
        self.offset = 0

    def resume_at(self, offset: int) -> None:
        """Continues after the first ``offset`` bytes already in the partial file."""
        self.offset = self._written = offset

    def start(self, reservation: QuotaReservation, total: int) -> None:
        """Arms the writer with its quota reservation and declared size (0 = unknown)."""
        self._quota, self._total = reservation, total

    async def write(self, data: bytes) -> None:
        if not data:
            return
        end = self.offset + len(data)
        if self._total and end > self._total:
            raise errors.upload_size_mismatch(self._total, end)
        if self._quota is not None:
            try:
                self._quota.grow(end)
            except errors.ResourceExhausted:
                await self.discard()
                raise
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.offset = end
        if self._pending_bytes >= _WRITE_BUFFER:
            await self._hand_off()

    async def write_body(self, body: SocketBody) -> None:
        """The zero-copy path of an HTTP PATCH: the kernel moves the body from the socket into
        the partial file (``splice(2)``); what arrived counts even when the client leaves."""
        end = self.offset + body.length
        if self._total and end > self._total:
            raise errors.upload_size_mismatch(self._total, end)
        if self._quota is not None:
            try:
                self._quota.grow(end)
            except errors.ResourceExhausted:
                await self.discard()
                raise
        await self.flush()
        try:
            await body.splice_to(self._fd, self.offset)
        finally:  # the file itself says how far the body got
            self.offset = self._written = os.fstat(self._fd).st_size
        if self.offset < end:
            raise ConnectionResetError(f"the body ended after {self.offset} of {end} bytes")

    async def _wait_writing(self) -> None:
        if self._writing is not None:
            # shielded: a cancelled caller must not cancel (or lose track of) a running pwritev
            await asyncio.shield(self._writing)
            self._writing = None

    async def _hand_off(self) -> None:
        await self._wait_writing()
        if not self._pending or self._fd < 0:
            return
        chunks, at = self._pending, self._written
        self._pending, self._pending_bytes = [], 0
        self._written += sum(len(c) for c in chunks)
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(None, _pwritev_all, self._fd, chunks, at)

    async def flush(self) -> None:
        await self._hand_off()
        await self._wait_writing()

    async def commit(self) -> FileEntry:
        try:
            await self.flush()
            await asyncio.to_thread(os.fsync, self._fd)  # once, before the file becomes visible
            entry = await asyncio.to_thread(
                self._volume.publish, self._folder, self._path, self._dir_fd, self._name
            )
            if self._quota is not None:
                self._quota.commit(entry.size)
            return entry
        finally:
            self.close()

    async def suspend(self) -> None:
        try:
            await self.flush()
        finally:
            self.close()

    async def discard(self) -> None:
        self._pending, self._pending_bytes = [], 0
        if self._writing is not None:
            with contextlib.suppress(OSError):  # the bytes are being thrown away anyway
                await asyncio.shield(self._writing)
            self._writing = None
        self.discard_now()

    def discard_now(self) -> None:
        self._pending, self._pending_bytes = [], 0
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name, dir_fd=self._dir_fd)
        self.close()

    def close(self) -> None:
        if self._quota is not None:
            self._quota.release()
        if self._writing is not None and not self._writing.done():
            # never close the descriptor under a running pwritev (it could be reused)
            self._writing.add_done_callback(lambda _: self._close_fds())
            return
        self._close_fds()

    def _close_fds(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._dir_fd)
            self._fd = self._dir_fd = -1
