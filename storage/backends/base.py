"""The contract every storage backend implements, and the value types it speaks.

A backend is one volume: it keeps folders (named by UUID) and, inside them, files addressed by
already-split relative paths (:data:`Parts`, produced by :func:`split_path`, which rejects
anything that could leave the folder lexically). Backends check again what only they can see
(symlinks on a real filesystem) and raise :mod:`bai.storage.errors` errors, never their library's.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from bai.storage import errors

__all__ = [
    "CHUNK_SIZE",
    "FileEntry",
    "FileType",
    "FolderUsage",
    "LocalFileStream",
    "Parts",
    "QuotaLedger",
    "QuotaReservation",
    "ReadStream",
    "SocketBody",
    "SpliceWriter",
    "UploadWriter",
    "VolumeBackend",
    "VolumeUsage",
    "join_path",
    "split_path",
]

CHUNK_SIZE = 1 << 20
"""Size of the pieces reads are streamed in (1 MiB)."""

_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255

Parts = tuple[str, ...]
"""A validated path inside a folder, split into names; ``()`` is the folder root."""


def split_path(path: str) -> Parts:
    """Splits a client-supplied relative path into names, refusing any way out of the folder.

    ``""``, ``"."`` and ``"a//b/./c"`` are fine (root, root, ``a/b/c``). Absolute paths and
    ``..`` anywhere are :func:`~bai.storage.errors.path_escapes`; NUL bytes and over-long
    names are :func:`~bai.storage.errors.invalid_path`.
    """
    if "\x00" in path:
        raise errors.invalid_path(path, "contains a NUL byte")
    if path.startswith("/"):
        raise errors.path_escapes(path)
    if len(path.encode()) > _MAX_PATH_BYTES:
        raise errors.invalid_path(path, f"longer than {_MAX_PATH_BYTES} bytes")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise errors.path_escapes(path)
    for part in parts:
        if len(part.encode()) > _MAX_NAME_BYTES:
            raise errors.invalid_path(path, f"a name is longer than {_MAX_NAME_BYTES} bytes")
    return parts


def join_path(parts: Parts) -> str:
    """The display form of a path: names joined by ``/``; ``""`` for the root."""
    return "/".join(parts)


class FileType(enum.Enum):
    """What a folder entry is."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of a folder."""

    name: str
    """Base name (``""`` for the root)."""
    path: str
    """Path relative to the folder root."""
    type: FileType
    """File, directory or symlink."""
    size: int
    """Bytes (files), 0 (directories) or the link text's length (symlinks)."""
    mtime: datetime | None
    """Last modification, timezone-aware UTC; ``None`` when the backend cannot tell."""
    mode: int
    """POSIX permission bits."""


@dataclass(frozen=True, slots=True)
class FolderUsage:
    """Bytes and regular files in a folder (finished files only)."""

    used_bytes: int
    """Sum of file sizes."""
    file_count: int
    """Number of regular files."""


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    """Space on the whole volume."""

    capacity_bytes: int
    """Total capacity; 0 when the backend has none (object stores)."""
    used_bytes: int
    """Bytes used; 0 when unknown."""


class ReadStream(Protocol):
    """File bytes in pieces of at most :data:`CHUNK_SIZE`. Call :meth:`aclose` when done
    (``contextlib.aclosing``): a stream holds a descriptor or a connection until then."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterates over the pieces."""
        ...

    async def aclose(self) -> None:
        """Releases the stream (idempotent)."""
        ...


@runtime_checkable
class LocalFileStream(ReadStream, Protocol):
    """A :class:`ReadStream` over a local file: transports may send its bytes zero-copy
    (``sendfile(2)``) instead of iterating; the stream still owns the descriptor."""

    def file_region(self) -> tuple[int, int, int]:
        """``(fd, start, end)``: the open file and the byte range still to send."""
        ...


class SocketBody(Protocol):
    """A request body the transport can hand over whole, straight from its socket (an HTTP
    PATCH with a ``Content-Length``), so a local file can be filled with ``splice(2)``."""

    length: int
    """Bytes in the body."""

    async def splice_to(self, fd: int, offset: int) -> None:
        """Writes the body into ``fd`` at ``offset`` without passing it through Python; stops
        early (raising ``ConnectionError``) when the client goes away."""
        ...


@runtime_checkable
class SpliceWriter(Protocol):
    """An :class:`UploadWriter` that can take a :class:`SocketBody` zero-copy (fs)."""

    async def write_body(self, body: SocketBody) -> None:
        """Appends the whole body (after size and quota checks, as :meth:`write`)."""
        ...


class UploadWriter(Protocol):
    """One open, resumable upload to a hidden partial file.

    Nothing is visible in the folder until :meth:`commit`. Bytes accepted by :meth:`write`
    survive :meth:`suspend` (and, once :meth:`flush`\\ ed, a crash of the proxy): the next
    ``open_upload`` with ``offset`` equal to :attr:`offset` continues after them.
    """

    @property
    def offset(self) -> int:
        """Bytes received so far."""
        ...

    async def write(self, data: bytes) -> None:
        """Appends ``data``. Raises QUOTA_EXCEEDED (and discards the partial upload) when the
        folder would exceed its quota, UPLOAD_SIZE_MISMATCH past the declared total."""
        ...

    async def flush(self) -> None:
        """Makes every byte written so far durable in the partial upload."""
        ...

    async def commit(self) -> FileEntry:
        """Publishes the partial upload at its path atomically and closes the writer."""
        ...

    async def suspend(self) -> None:
        """Flushes and closes the writer, keeping the partial upload for a later resume."""
        ...

    async def discard(self) -> None:
        """Closes the writer and deletes the partial upload."""
        ...


class VolumeBackend(Protocol):
    """One storage volume: folders of files on a filesystem or an object store.

    Every method raises :mod:`bai.storage.errors` errors: FOLDER_NOT_FOUND for an unknown
    folder, FILE_NOT_FOUND, FILE_ALREADY_EXISTS, NOT_A_DIRECTORY, IS_A_DIRECTORY,
    DIRECTORY_NOT_EMPTY, PATH_ESCAPES_FOLDER, BACKEND_UNAVAILABLE.
    """

    kind: str
    """Backend type: ``fs``, ``s3``, ``azure`` or ``gcs``."""
    mountable: bool
    """Whether folders can be bind-mounted into containers (fs only)."""
    capabilities: frozenset[str]
    """Backend.AI capability names (``vfolder``, ``quota``, ``fast-fs-size``)."""

    async def start(self) -> None:
        """Connects (object stores) or prepares directories (fs)."""
        ...

    async def stop(self) -> None:
        """Releases connections."""
        ...

    async def usage(self) -> VolumeUsage:
        """Capacity and usage of the volume."""
        ...

    def mount_path(self, folder: UUID) -> str | None:
        """Host path of a folder for bind mounts; ``None`` when not mountable."""
        ...

    async def create_folder(self, folder: UUID) -> None:
        """Creates an empty folder; FOLDER_ALREADY_EXISTS if it exists."""
        ...

    async def folder_exists(self, folder: UUID) -> bool:
        """Whether the folder exists."""
        ...

    async def delete_folder(self, folder: UUID) -> None:
        """Deletes a folder with its files, partial uploads and quota."""
        ...

    async def clone_folder(self, source: UUID, target: UUID) -> None:
        """Copies ``source``'s files into the new folder ``target`` (not its quota)."""
        ...

    async def folder_usage(self, folder: UUID) -> FolderUsage:
        """Scans a folder's files."""
        ...

    async def get_quota(self, folder: UUID) -> int:
        """The folder's quota in bytes; 0 = none."""
        ...

    async def set_quota(self, folder: UUID, quota_bytes: int) -> None:
        """Sets (or with 0 clears) the folder's quota."""
        ...

    async def stat(self, folder: UUID, path: Parts) -> FileEntry:
        """Describes one entry, not following a final symlink."""
        ...

    async def list_dir(self, folder: UUID, path: Parts) -> list[FileEntry]:
        """All entries of one directory, sorted by name."""
        ...

    async def mkdir(self, folder: UUID, path: Parts, *, parents: bool, exist_ok: bool) -> FileEntry:
        """Creates a directory."""
        ...

    async def move(self, folder: UUID, src: Parts, dst: Parts) -> FileEntry:
        """Renames ``src`` to ``dst`` (which must not exist; its parent must)."""
        ...

    async def delete(self, folder: UUID, paths: Sequence[Parts], *, recursive: bool) -> None:
        """Deletes entries after checking that all of them can be deleted."""
        ...

    async def upload_offset(self, folder: UUID, path: Parts) -> int:
        """Bytes held by the partial upload of ``path``; 0 when none."""
        ...

    async def open_upload(
        self, folder: UUID, path: Parts, *, offset: int, total_size: int
    ) -> UploadWriter:
        """Opens (offset 0: restarts) the partial upload of ``path``.

        ``offset`` must equal :meth:`upload_offset` (else UPLOAD_OFFSET_MISMATCH).
        ``total_size`` (0 = unknown) is checked against the quota at once.
        """
        ...

    async def open_read(
        self, folder: UUID, path: Parts, *, offset: int, length: int | None
    ) -> tuple[FileEntry, ReadStream]:
        """Opens a regular file (following in-folder symlinks) for ``length`` bytes (``None``:
        to the end) from ``offset``; the range is checked before this returns."""
        ...


@dataclass(slots=True)
class _FolderAccount:
    used: int
    """Bytes in the folder's finished files: scanned when the first upload opened, then moved
    by every commit made through the ledger."""
    reserved: dict[int, int] = field(default_factory=dict)
    """Reservation id -> bytes that upload may still publish."""


class QuotaLedger:
    """Per-folder quota accounting of the uploads in flight in this process.

    Without it, two concurrent uploads each compare the folder's usage on disk with the quota,
    both fit, and together they exceed it. Here every open upload holds a reservation (its
    declared size, or the bytes received so far when the size is unknown) and every check counts
    the folder's finished bytes plus all other reservations, in one step of the event loop, so
    check-and-reserve is atomic. A commit turns a reservation into used bytes in the same step.

    The folder's usage is scanned when its first upload opens and reused while any upload of
    it is open (a delete during that time is seen once they all finish: the ledger errs on the
    side of refusing). Atomic within one proxy process; two proxies sharing a volume do not
    see each other's reservations.
    """

    def __init__(self) -> None:
        self._accounts: dict[UUID, _FolderAccount] = {}
        self._scanning: dict[UUID, asyncio.Lock] = {}
        self._ids = itertools.count(1)

    async def reserve(
        self,
        folder: UUID,
        quota: int,
        *,
        replaced: int,
        amount: int,
        scan: Callable[[], Awaitable[int]],
    ) -> QuotaReservation:
        """Reserves ``amount`` bytes for an upload replacing a file of ``replaced`` bytes.

        ``scan`` measures the folder's finished bytes; it runs only when no upload of the
        folder is open. Raises QUOTA_EXCEEDED (reserving nothing) when it does not fit.
        """
        if not quota:
            return QuotaReservation(self, folder, 0, replaced, 0)
        lock = self._scanning.setdefault(folder, asyncio.Lock())
        async with lock:  # one scan per folder at a time
            if folder not in self._accounts:
                used = await scan()
                # keep an account that appeared meanwhile (it may hold reservations already)
                self._accounts.setdefault(folder, _FolderAccount(used=used))
        account = self._accounts[folder]  # no await since: registering below is atomic
        reservation = QuotaReservation(self, folder, quota, replaced, next(self._ids))
        account.reserved[reservation.id] = 0
        try:
            reservation.grow(amount)
        except BaseException:
            reservation.release()
            raise
        return reservation

    def _account(self, folder: UUID) -> _FolderAccount | None:
        return self._accounts.get(folder)

    def _drop(self, folder: UUID, reservation_id: int) -> None:
        account = self._accounts.get(folder)
        if account is None:
            return
        account.reserved.pop(reservation_id, None)
        if not account.reserved:
            del self._accounts[folder]
            lock = self._scanning.get(folder)
            if lock is not None and not lock.locked():
                del self._scanning[folder]

    def reserved_bytes(self, folder: UUID) -> int:
        """Bytes reserved by the folder's open uploads (for tests and diagnostics)."""
        account = self._accounts.get(folder)
        return sum(account.reserved.values()) if account else 0


class QuotaReservation:
    """One upload's share of a folder's quota (see :class:`QuotaLedger`); id 0 = no quota."""

    def __init__(
        self, ledger: QuotaLedger, folder: UUID, quota: int, replaced: int, reservation_id: int
    ) -> None:
        self._ledger = ledger
        self._folder = folder
        self.quota = quota
        self._replaced = replaced
        self.id = reservation_id
        self.amount = 0
        self._released = False

    def grow(self, amount: int) -> None:
        """Makes sure ``amount`` bytes are reserved; QUOTA_EXCEEDED when they do not fit."""
        if amount <= self.amount or not self.quota:
            return
        account = self._ledger._account(self._folder)
        if account is None or self._released:
            raise RuntimeError("quota reservation used after release")
        others = sum(v for k, v in account.reserved.items() if k != self.id)
        need = account.used - self._replaced + others + amount
        if need > self.quota:
            raise errors.quota_exceeded(self.quota, need)
        account.reserved[self.id] = self.amount = amount

    def commit(self, size: int) -> None:
        """The upload was published with ``size`` bytes: count them as used, then release."""
        account = self._ledger._account(self._folder)
        if self.quota and not self._released and account is not None:
            account.used += size - self._replaced
        self.release()

    def release(self) -> None:
        """Gives the reservation back (idempotent)."""
        if self.quota and not self._released:
            self._ledger._drop(self._folder, self.id)
        self._released = True
