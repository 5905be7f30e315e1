"""The contract every storage backend implements, and the value types it speaks.

A backend is one volume: it keeps folders (named by UUID) and, inside them, files addressed by
already-split relative paths (:data:`Parts`, produced by :func:`split_path`, which rejects
anything that could leave the folder lexically). Backends check again what only they can see
(symlinks on a real filesystem) and raise :mod:`bai.storage.errors` errors, never their library's.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from bai.storage import errors

__all__ = [
    "CHUNK_SIZE",
    "FileEntry",
    "FileType",
    "FolderUsage",
    "Parts",
    "QuotaGuard",
    "ReadStream",
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


@dataclass(frozen=True, slots=True)
class QuotaGuard:
    """Counts an upload's bytes against a folder quota."""

    quota: int
    """Quota in bytes; 0 = none."""
    base: int
    """Folder usage without the file the upload replaces."""

    def check(self, upload_size: int) -> None:
        """Raises QUOTA_EXCEEDED when an upload of ``upload_size`` bytes would not fit."""
        if self.quota and self.base + upload_size > self.quota:
            raise errors.quota_exceeded(self.quota, self.base + upload_size)
