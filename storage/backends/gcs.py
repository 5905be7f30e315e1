"""The ``gcs`` backend: an :class:`~bai.storage.backends.objects.ObjectStore` on Google Cloud
Storage through ``gcloud-aio-storage`` (the JSON API over aiohttp).

Options: ``bucket`` (required), ``service_file`` (a service-account JSON key; default:
application default credentials), ``api_root`` (an emulator's URL, e.g.
``http://127.0.0.1:9023``: no credentials are sent then), ``prefix``, ``create_bucket`` (at
start, emulators only; default false), ``segment_bytes``.

``concat`` is GCS compose, 32 sources per call, composed again in rounds for longer chains.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from bai.storage import errors
from bai.storage.backends.base import CHUNK_SIZE
from bai.storage.backends.objects import DEFAULT_SEGMENT_BYTES, ObjectInfo, ObjectVolume
from gcloud.aio.storage import Storage

__all__ = ["GcsStore", "gcs_volume"]

_COMPOSE_MAX = 32
_TIMEOUT = 60
_OCTETS = "application/octet-stream"


@contextlib.contextmanager
def _border(what: str) -> Iterator[None]:
    """Turns HTTP failures into BACKEND_UNAVAILABLE."""
    try:
        yield
    except aiohttp.ClientResponseError as exc:
        raise errors.backend_unavailable("gcs", f"{what}: HTTP {exc.status}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.backend_unavailable("gcs", f"{what}: {type(exc).__name__}") from exc


def _info(item: dict[str, Any]) -> ObjectInfo:
    updated = item.get("updated")
    mtime = datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None
    return ObjectInfo(key=item["name"], size=int(item.get("size", 0)), mtime=mtime)


class GcsStore:
    """Objects in one GCS bucket."""

    kind = "gcs"
    min_part_size = 0

    def __init__(
        self,
        bucket: str,
        *,
        service_file: str | None = None,
        api_root: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self._service_file = service_file
        self._api_root = api_root
        self._create_bucket = create_bucket
        self._session: aiohttp.ClientSession | None = None
        self._storage: Storage | None = None

    @property
    def _s(self) -> Storage:
        assert self._storage is not None, "start() first"
        return self._storage

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        session: Any = self._session  # the library types its own session wrapper
        self._storage = Storage(
            service_file=self._service_file, session=session, api_root=self._api_root
        )
        if self._create_bucket and self._api_root:
            await self._ensure_bucket()

    async def _ensure_bucket(self) -> None:
        assert self._session is not None
        url = f"{self._api_root}/storage/v1/b"
        with _border(f"bucket {self.bucket}"):
            async with self._session.get(f"{url}/{self.bucket}") as resp:
                if resp.status == 200:
                    return
            async with self._session.post(url, json={"name": self.bucket}) as resp:
                if resp.status not in (200, 409):
                    resp.raise_for_status()

    async def stop(self) -> None:
        if self._storage is not None:
            await self._storage.close()
        if self._session is not None:
            await self._session.close()

    async def put(self, key: str, data: bytes) -> None:
        # A multipart upload (chosen by passing metadata) for empty objects: the emulator
        # cannot take an empty simple upload; GCS takes either.
        metadata = None if data else {"contentType": _OCTETS}
        with _border(f"put {key}"):
            await self._s.upload(
                self.bucket, key, data, content_type=_OCTETS, metadata=metadata, timeout=_TIMEOUT
            )

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            with _border(f"head {key}"):
                meta = await self._s.download_metadata(self.bucket, key)
        except errors.Unavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientResponseError) and cause.status == 404:
                return None
            raise
        return _info(meta)

    async def get(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        with _border(f"get {key}"):
            stream = await self._s.download_stream(
                self.bucket, key, headers={"Range": f"bytes={start}-{end - 1}"}, timeout=_TIMEOUT
            )
            async with stream:
                while chunk := await stream.read(CHUNK_SIZE):
                    yield chunk

    async def _pages(self, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        token = ""
        while True:
            query = {**params, "pageToken": token} if token else dict(params)
            with _border(f"list {params.get('prefix')}"):
                page = await self._s.list_objects(self.bucket, params=query, timeout=_TIMEOUT)
            yield page
            token = page.get("nextPageToken", "")
            if not token:
                return

    async def scan(self, prefix: str) -> AsyncGenerator[ObjectInfo, None]:
        async for page in self._pages({"prefix": prefix}):
            for item in page.get("items") or ():
                yield _info(item)

    async def list_dir(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        async for page in self._pages({"prefix": prefix, "delimiter": "/"}):
            objects.extend(_info(item) for item in page.get("items") or ())
            prefixes.extend(page.get("prefixes") or ())
        return objects, prefixes

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                with _border(f"delete {key}"):
                    await self._s.delete(self.bucket, key, timeout=_TIMEOUT)
            except errors.Unavailable as exc:
                cause = exc.__cause__
                if not (isinstance(cause, aiohttp.ClientResponseError) and cause.status == 404):
                    raise

    async def copy(self, src: str, dst: str) -> None:
        with _border(f"copy to {dst}"):
            await self._s.copy(self.bucket, src, self.bucket, new_name=dst, timeout=_TIMEOUT)

    async def concat(self, dst: str, parts: Sequence[ObjectInfo]) -> None:
        names = [p.key for p in parts]
        temporaries: list[str] = []
        try:
            while len(names) > _COMPOSE_MAX:  # compose in rounds of 32 into temporaries
                round_names = []
                for i in range(0, len(names), _COMPOSE_MAX):
                    # beside the segments, never in the folder's key space
                    tmp = f"{parts[0].key}.compose-{uuid.uuid4().hex}"
                    await self._compose(tmp, names[i : i + _COMPOSE_MAX])
                    temporaries.append(tmp)
                    round_names.append(tmp)
                names = round_names
            if len(names) == 1:
                await self.copy(names[0], dst)
            else:
                await self._compose(dst, names)
        finally:
            await self.delete(temporaries)

    async def _compose(self, dst: str, names: list[str]) -> None:
        with _border(f"compose {dst}"):
            await self._s.compose(self.bucket, dst, names, content_type=_OCTETS, timeout=_TIMEOUT)


def gcs_volume(options: dict[str, Any]) -> ObjectVolume:
    """Builds a GCS volume from its config options (see the module docstring)."""
    bucket = options.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise ValueError("gcs volume needs a 'bucket' option")
    store = GcsStore(
        bucket,
        service_file=options.get("service_file"),
        api_root=options.get("api_root"),
        create_bucket=bool(options.get("create_bucket", False)),
    )
    return ObjectVolume(
        store,
        prefix=options.get("prefix", ""),
        segment_bytes=int(options.get("segment_bytes", DEFAULT_SEGMENT_BYTES)),
    )
