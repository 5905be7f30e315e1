"""The storage proxy's use cases over its configured volumes.

Every entry point takes client-supplied strings (volume name, folder id, path), validates them
here (:func:`~bai.storage.backends.base.split_path`, :func:`parse_folder_id`) and calls one
backend method. Uploads are serialized per file: a second concurrent upload of the same path
is UPLOAD_IN_PROGRESS rather than interleaving bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from bai.common.errors import InvalidArgument
from bai.storage import errors
from bai.storage.backends.base import (
    FileEntry,
    FolderUsage,
    ReadStream,
    SocketBody,
    SpliceWriter,
    UploadWriter,
    VolumeBackend,
    VolumeUsage,
    join_path,
    split_path,
)
from bai.storage.domain.tokens import OPERATIONS, TransferClaims, TransferTokens

__all__ = [
    "FolderView",
    "StorageService",
    "UploadResult",
    "VolumeView",
    "parse_folder_id",
]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_TTL = 24 * 3600


def parse_folder_id(value: str) -> UUID:
    """A folder id from its dashed or 32-hex-digit form; INVALID_FOLDER_ID otherwise."""
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise errors.invalid_folder_id(value) from None


@dataclass(frozen=True, slots=True)
class VolumeView:
    """A volume as reported to the manager."""

    name: str
    """Configured name."""
    backend: str
    """Backend type."""
    capabilities: frozenset[str]
    """Capability names."""
    mountable: bool
    """Whether folders can be bind-mounted."""
    usage: VolumeUsage
    """Capacity and usage."""


@dataclass(frozen=True, slots=True)
class FolderView:
    """A folder as reported to the manager."""

    volume: str
    """Volume name."""
    folder: UUID
    """Folder id."""
    mount_path: str | None
    """Host path for bind mounts (fs volumes)."""
    quota_bytes: int
    """Quota; 0 = none."""


@dataclass(frozen=True, slots=True)
class UploadResult:
    """How an upload call ended."""

    complete: bool
    """Whether the file was published."""
    offset: int
    """Bytes received so far."""
    entry: FileEntry | None
    """The published file."""


def _encode_page_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def _decode_page_token(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("malformed page token", reason="INVALID_PAGE_TOKEN") from exc
    if not isinstance(after, str):
        raise InvalidArgument("malformed page token", reason="INVALID_PAGE_TOKEN")
    return after


class StorageService:
    """Folders and files on named volumes; transfer tokens for the HTTP endpoint."""

    def __init__(
        self,
        volumes: Mapping[str, VolumeBackend],
        tokens: TransferTokens,
        transfer_url: str,
    ) -> None:
        self._volumes = dict(volumes)
        self._tokens = tokens
        self._transfer_url = transfer_url.rstrip("/")
        self._uploading: set[tuple[str, UUID, str]] = set()

    @property
    def tokens(self) -> TransferTokens:
        return self._tokens

    def backend(self, volume: str) -> VolumeBackend:
        try:
            return self._volumes[volume]
        except KeyError:
            raise errors.volume_not_found(volume) from None

    # volumes ------------------------------------------------------------------------------

    async def _view(self, name: str, backend: VolumeBackend) -> VolumeView:
        return VolumeView(
            name=name,
            backend=backend.kind,
            capabilities=backend.capabilities,
            mountable=backend.mountable,
            usage=await backend.usage(),
        )

    async def list_volumes(self) -> list[VolumeView]:
        return [await self._view(name, backend) for name, backend in self._volumes.items()]

    async def get_volume(self, volume: str) -> VolumeView:
        return await self._view(volume, self.backend(volume))

    # folders ------------------------------------------------------------------------------

    async def _folder_view(self, volume: str, folder: UUID) -> FolderView:
        backend = self.backend(volume)
        quota = await backend.get_quota(folder)
        return FolderView(volume, folder, backend.mount_path(folder), quota)

    async def create_folder(self, volume: str, folder_id: str, quota_bytes: int) -> FolderView:
        backend, folder = self.backend(volume), parse_folder_id(folder_id)
        if quota_bytes < 0:
            raise InvalidArgument("quota_bytes must not be negative", reason="INVALID_QUOTA")
        await backend.create_folder(folder)
        if quota_bytes:
            await backend.set_quota(folder, quota_bytes)
        log.info("created folder %s on volume %s (quota %d)", folder, volume, quota_bytes)
        return await self._folder_view(volume, folder)

    async def get_folder(self, volume: str, folder_id: str) -> FolderView:
        return await self._folder_view(volume, parse_folder_id(folder_id))

    async def delete_folder(self, volume: str, folder_id: str) -> None:
        backend, folder = self.backend(volume), parse_folder_id(folder_id)
        await backend.delete_folder(folder)
        log.info("deleted folder %s on volume %s", folder, volume)

    async def clone_folder(self, volume: str, folder_id: str, target_id: str) -> FolderView:
        backend = self.backend(volume)
        source, target = parse_folder_id(folder_id), parse_folder_id(target_id)
        await backend.clone_folder(source, target)
        log.info("cloned folder %s to %s on volume %s", source, target, volume)
        return await self._folder_view(volume, target)

    async def folder_usage(self, volume: str, folder_id: str) -> FolderUsage:
        return await self.backend(volume).folder_usage(parse_folder_id(folder_id))

    async def set_quota(self, volume: str, folder_id: str, quota_bytes: int) -> int:
        backend, folder = self.backend(volume), parse_folder_id(folder_id)
        if quota_bytes < 0:
            raise InvalidArgument("quota_bytes must not be negative", reason="INVALID_QUOTA")
        await backend.set_quota(folder, quota_bytes)
        log.info("set quota of folder %s on volume %s to %d", folder, volume, quota_bytes)
        return quota_bytes

    async def get_quota(self, volume: str, folder_id: str) -> tuple[int, int]:
        """(quota, used bytes) of a folder."""
        backend, folder = self.backend(volume), parse_folder_id(folder_id)
        quota = await backend.get_quota(folder)
        return quota, (await backend.folder_usage(folder)).used_bytes

    # files --------------------------------------------------------------------------------

    async def list_files(
        self, volume: str, folder_id: str, path: str, page_size: int, page_token: str
    ) -> tuple[list[FileEntry], str]:
        """One page of a directory's entries and the next page's token ("" on the last)."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="INVALID_PAGE_SIZE")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        backend = self.backend(volume)
        entries = await backend.list_dir(parse_folder_id(folder_id), split_path(path))
        if page_token:
            after = _decode_page_token(page_token).encode("utf-8", "surrogateescape")
            entries = [e for e in entries if e.name.encode("utf-8", "surrogateescape") > after]
        page = entries[:size]
        next_token = _encode_page_token(page[-1].name) if len(entries) > size else ""
        return page, next_token

    async def get_file(self, volume: str, folder_id: str, path: str) -> FileEntry:
        backend = self.backend(volume)
        return await backend.stat(parse_folder_id(folder_id), split_path(path))

    async def make_directory(
        self, volume: str, folder_id: str, path: str, *, parents: bool, exist_ok: bool
    ) -> FileEntry:
        backend = self.backend(volume)
        return await backend.mkdir(
            parse_folder_id(folder_id), split_path(path), parents=parents, exist_ok=exist_ok
        )

    async def move_file(self, volume: str, folder_id: str, src: str, dst: str) -> FileEntry:
        backend = self.backend(volume)
        return await backend.move(parse_folder_id(folder_id), split_path(src), split_path(dst))

    async def delete_files(
        self, volume: str, folder_id: str, paths: Sequence[str], *, recursive: bool
    ) -> None:
        if not paths:
            raise InvalidArgument("no paths to delete", reason="INVALID_PATH")
        backend, folder = self.backend(volume), parse_folder_id(folder_id)
        await backend.delete(folder, [split_path(p) for p in paths], recursive=recursive)
        log.info("deleted %d path(s) in folder %s on volume %s", len(paths), folder, volume)

    # transfers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, volume: str, folder: UUID, path: str) -> Iterator[None]:
        key = (volume, folder, path)
        if key in self._uploading:
            raise errors.upload_in_progress(path)
        self._uploading.add(key)
        try:
            yield
        finally:
            self._uploading.discard(key)

    async def upload_offset(self, volume: str, folder_id: str, path: str) -> int:
        backend = self.backend(volume)
        return await backend.upload_offset(parse_folder_id(folder_id), split_path(path))

    async def upload(
        self,
        volume: str,
        folder_id: str,
        path: str,
        *,
        offset: int,
        total_size: int,
        chunks: AsyncIterator[bytes],
        end_of_file: Callable[[], bool] = lambda: True,
        socket_body: SocketBody | None = None,
    ) -> UploadResult:
        """Appends ``chunks`` at ``offset`` to the partial upload of ``path``.

        Publishes the file once ``total_size`` bytes are there or, when that is 0 (unknown),
        when ``chunks`` ends and ``end_of_file()`` says the client declared the end. Otherwise
        the bytes are kept for a resume (``complete=False``). When ``chunks`` raises (the client
        went away), they are kept too and the error propagates. ``socket_body`` is the same
        body offered whole: a backend that can splice it from the socket (fs) takes it instead
        of iterating ``chunks``.
        """
        if offset < 0 or total_size < 0:
            raise InvalidArgument("offset and size must not be negative", reason="INVALID_RANGE")
        backend, folder, parts = self.backend(volume), parse_folder_id(folder_id), split_path(path)
        if not parts:
            raise errors.is_a_directory("")
        with self._exclusive(volume, folder, join_path(parts)):
            writer = await backend.open_upload(folder, parts, offset=offset, total_size=total_size)
            await self._receive(writer, chunks, socket_body)
            done = writer.offset == total_size if total_size else end_of_file()
            if not done:
                await asyncio.shield(writer.suspend())
                return UploadResult(complete=False, offset=writer.offset, entry=None)
            entry = await writer.commit()
        log.info(
            "uploaded %s (%d bytes) to folder %s on %s", entry.path, entry.size, folder, volume
        )
        return UploadResult(complete=True, offset=entry.size, entry=entry)

    @staticmethod
    async def _receive(
        writer: UploadWriter, chunks: AsyncIterator[bytes], socket_body: SocketBody | None
    ) -> None:
        try:
            if socket_body is not None and isinstance(writer, SpliceWriter):
                await writer.write_body(socket_body)
                return
            async for chunk in chunks:
                await writer.write(chunk)
        except errors.ResourceExhausted:
            raise  # the writer already discarded the partial upload
        except BaseException:
            # keep what arrived for a resume; shielded so a cancelled call still saves it
            await asyncio.shield(writer.suspend())
            raise

    async def open_download(
        self, volume: str, folder_id: str, path: str, *, offset: int, length: int | None
    ) -> tuple[FileEntry, ReadStream]:
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument("offset and length must not be negative", reason="INVALID_RANGE")
        backend = self.backend(volume)
        return await backend.open_read(
            parse_folder_id(folder_id), split_path(path), offset=offset, length=length
        )

    async def create_transfer_token(
        self,
        volume: str,
        folder_id: str,
        path: str,
        *,
        op: str,
        size_bytes: int,
        ttl_seconds: int,
    ) -> tuple[str, str, int]:
        """(endpoint URL, token, expiry in Unix seconds) for one upload or download."""
        if op not in OPERATIONS:
            raise InvalidArgument(f"unknown transfer operation {op!r}", reason="INVALID_OPERATION")
        ttl = ttl_seconds or DEFAULT_TOKEN_TTL
        if not 0 < ttl <= MAX_TOKEN_TTL:
            raise InvalidArgument(f"ttl must be 1..{MAX_TOKEN_TTL} s", reason="INVALID_TTL")
        if size_bytes < 0:
            raise InvalidArgument("size_bytes must not be negative", reason="INVALID_RANGE")
        backend, folder, parts = self.backend(volume), parse_folder_id(folder_id), split_path(path)
        if not parts:
            raise errors.is_a_directory("")
        if op == "download":
            _, stream = await backend.open_read(folder, parts, offset=0, length=0)
            await stream.aclose()  # it exists and is a file
        else:
            await self._prepare_upload(backend, volume, folder, parts, size_bytes)
        expires = self._tokens.now() + ttl
        claims = TransferClaims(op, volume, str(folder), join_path(parts), size_bytes, expires)
        return f"{self._transfer_url}/{op}", self._tokens.issue(claims), expires

    async def _prepare_upload(
        self, backend: VolumeBackend, volume: str, folder: UUID, parts: tuple[str, ...], size: int
    ) -> None:
        """Checks the folder, the path and the quota at token time, not at the first PATCH."""
        with self._exclusive(volume, folder, join_path(parts)):
            held = await backend.upload_offset(folder, parts)
            writer = await backend.open_upload(folder, parts, offset=held, total_size=size)
            if size == 0:
                await writer.commit()  # the official client sends nothing for an empty file
            else:
                await writer.suspend()
