"""The ``azure`` backend: an :class:`~bai.storage.backends.objects.ObjectStore` on Azure Blob
Storage (``azure-storage-blob``'s asyncio client).

Options: ``container`` (required) and either ``connection_string`` or ``account_url`` with
``account_name`` + ``account_key``; ``prefix``, ``create_container`` (default false),
``segment_bytes``.

``concat`` stages each segment as a block of the destination blob and commits the block list,
so the file appears at once. The segments' bytes pass through the proxy on the way, because
Put Block From URL (server-side) is not implemented by Azurite, the emulator the tests use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobProperties
from azure.storage.blob.aio import BlobPrefix, ContainerClient
from bai.storage import errors
from bai.storage.backends.base import CHUNK_SIZE
from bai.storage.backends.objects import DEFAULT_SEGMENT_BYTES, ObjectInfo, ObjectVolume

__all__ = ["AzureStore", "azure_volume"]

_DELETE_CONCURRENCY = 16


@contextlib.contextmanager
def _border(what: str) -> Iterator[None]:
    """Turns Azure SDK failures into BACKEND_UNAVAILABLE."""
    try:
        yield
    except AzureError as exc:
        raise errors.backend_unavailable("azure", f"{what}: {type(exc).__name__}") from exc


class AzureStore:
    """Blobs in one container."""

    kind = "azure"
    min_part_size = 0

    def __init__(self, container: ContainerClient, *, create_container: bool = False) -> None:
        self._container = container
        self._create = create_container

    async def start(self) -> None:
        if self._create:
            with _border("create container"), contextlib.suppress(ResourceExistsError):
                await self._container.create_container()

    async def stop(self) -> None:
        await self._container.close()

    async def put(self, key: str, data: bytes) -> None:
        with _border(f"put {key}"):
            await self._container.upload_blob(key, data, overwrite=True)

    async def head(self, key: str) -> ObjectInfo | None:
        with _border(f"head {key}"):
            try:
                props = await self._container.get_blob_client(key).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return ObjectInfo(key=key, size=props.size, mtime=props.last_modified)

    async def get(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        with _border(f"get {key}"):
            stream = await self._container.download_blob(
                key, offset=start, length=end - start, max_concurrency=1
            )
            async for chunk in stream.chunks():
                for i in range(0, len(chunk), CHUNK_SIZE):
                    yield chunk[i : i + CHUNK_SIZE]

    async def scan(self, prefix: str) -> AsyncGenerator[ObjectInfo, None]:
        with _border(f"list {prefix}"):
            async for blob in self._container.list_blobs(name_starts_with=prefix):
                yield ObjectInfo(key=blob.name, size=blob.size, mtime=blob.last_modified)

    async def list_dir(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        with _border(f"list {prefix}"):
            async for item in self._container.walk_blobs(name_starts_with=prefix, delimiter="/"):
                if isinstance(item, BlobPrefix):
                    prefixes.append(item.name)
                elif isinstance(item, BlobProperties):
                    objects.append(ObjectInfo(item.name, item.size, item.last_modified))
        return objects, prefixes

    async def delete(self, keys: Sequence[str]) -> None:
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(key: str) -> None:
            async with limit:
                with contextlib.suppress(ResourceNotFoundError):
                    await self._container.delete_blob(key)

        with _border("delete"):
            await asyncio.gather(*(one(k) for k in keys))

    async def copy(self, src: str, dst: str) -> None:
        source = self._container.get_blob_client(src).url
        target = self._container.get_blob_client(dst)
        with _border(f"copy to {dst}"):
            await target.start_copy_from_url(source)
            for _ in range(600):  # same-account copies finish quickly; poll up to a minute
                props = await target.get_blob_properties()
                if props.copy.status != "pending":
                    break
                await asyncio.sleep(0.1)
            if props.copy.status not in (None, "success"):
                raise errors.backend_unavailable("azure", f"copy to {dst}: {props.copy.status}")

    async def concat(self, dst: str, parts: Sequence[ObjectInfo]) -> None:
        target = self._container.get_blob_client(dst)
        blocks = []
        with _border(f"stage {dst}"):
            for number, part in enumerate(parts):
                block_id = base64.b64encode(f"{number:08d}".encode()).decode()
                data = b"".join([c async for c in self.get(part.key, 0, part.size)])
                await target.stage_block(block_id, data, length=len(data))
                blocks.append(BlobBlock(block_id=block_id))
            await target.commit_block_list(blocks)


def azure_volume(options: dict[str, Any]) -> ObjectVolume:
    """Builds an Azure volume from its config options (see the module docstring)."""
    container = options.get("container")
    if not isinstance(container, str) or not container:
        raise ValueError("azure volume needs a 'container' option")
    if conn := options.get("connection_string"):
        client = ContainerClient.from_connection_string(conn, container)
    elif options.get("account_url"):
        key = {"account_name": options["account_name"], "account_key": options["account_key"]}
        client = ContainerClient(options["account_url"], container, credential=key)
    else:
        raise ValueError("azure volume needs 'connection_string' or 'account_url'")
    store = AzureStore(client, create_container=bool(options.get("create_container", False)))
    return ObjectVolume(
        store,
        prefix=options.get("prefix", ""),
        segment_bytes=int(options.get("segment_bytes", DEFAULT_SEGMENT_BYTES)),
    )
