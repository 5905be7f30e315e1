"""The ``s3`` backend: an :class:`~bai.storage.backends.objects.ObjectStore` on aiobotocore.

Options (``[volumes.options]``): ``bucket`` (required), ``endpoint_url`` (for S3-compatible
stores: MinIO, Ceph RGW, moto), ``region`` (default ``us-east-1``), ``access_key`` /
``secret_key`` (default: botocore's credential chain), ``prefix`` (key prefix of the volume),
``create_bucket`` (create it at start when missing; default false), ``segment_bytes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from bai.storage import errors
from bai.storage.backends.base import CHUNK_SIZE
from bai.storage.backends.objects import DEFAULT_SEGMENT_BYTES, ObjectInfo, ObjectVolume
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["S3Store", "s3_volume"]

_MAX_COPY = 5 << 30  # CopyObject / UploadPartCopy limit per call
_MISSING = ("404", "NoSuchKey", "NotFound")


@contextlib.contextmanager
def _border(what: str) -> Iterator[None]:
    """Turns botocore failures into BACKEND_UNAVAILABLE."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise errors.backend_unavailable("s3", f"{what}: {code}") from exc
    except BotoCoreError as exc:
        raise errors.backend_unavailable("s3", f"{what}: {exc}") from exc


class S3Store:
    """Objects in one S3 bucket."""

    kind = "s3"
    min_part_size = 5 << 20

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._create_bucket = create_bucket
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        creator = get_session().create_client(
            "s3",
            endpoint_url=self._endpoint_url,
            region_name=self._region,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            config=config,
        )
        self._client = await self._stack.enter_async_context(creator)
        with _border(f"bucket {self.bucket}"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if not self._create_bucket or exc.response["Error"]["Code"] not in _MISSING:
                    raise
                await self._client.create_bucket(Bucket=self.bucket)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def put(self, key: str, data: bytes) -> None:
        with _border(f"put {key}"):
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def head(self, key: str) -> ObjectInfo | None:
        with _border(f"head {key}"):
            try:
                resp = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    return None
                raise
        return ObjectInfo(key=key, size=resp["ContentLength"], mtime=resp.get("LastModified"))

    async def get(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        with _border(f"get {key}"):
            resp = await self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
            async with resp["Body"] as body:
                while chunk := await body.read(CHUNK_SIZE):
                    yield chunk

    async def scan(self, prefix: str) -> AsyncGenerator[ObjectInfo, None]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _border(f"list {prefix}"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"], item["Size"], item.get("LastModified"))

    async def list_dir(self, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        paginator = self._client.get_paginator("list_objects_v2")
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        with _border(f"list {prefix}"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for item in page.get("Contents", ()):
                    objects.append(ObjectInfo(item["Key"], item["Size"], item.get("LastModified")))
                prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return objects, prefixes

    async def delete(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            with _border("delete"):
                resp = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if failed := resp.get("Errors"):
                raise errors.backend_unavailable("s3", f"delete {failed[0].get('Key')} failed")

    async def copy(self, src: str, dst: str) -> None:
        info = await self.head(src)
        if info is None:
            raise errors.file_not_found(src)
        await self.concat(dst, [info])

    async def concat(self, dst: str, parts: Sequence[ObjectInfo]) -> None:
        if len(parts) == 1 and parts[0].size <= _MAX_COPY:
            with _border(f"copy to {dst}"):
                source = {"Bucket": self.bucket, "Key": parts[0].key}
                await self._client.copy_object(Bucket=self.bucket, Key=dst, CopySource=source)
            return
        with _border(f"multipart {dst}"):
            upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=dst)
        upload_id = upload["UploadId"]
        try:
            done = []
            for number, (key, byte_range) in enumerate(_copy_ranges(parts), start=1):
                with _border(f"part {number} of {dst}"):
                    resp = await self._client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=dst,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceRange=byte_range,
                    )
                done.append({"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]})
            with _border(f"complete {dst}"):
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=dst,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=dst, UploadId=upload_id
                )
            raise


def _copy_ranges(parts: Sequence[ObjectInfo]) -> Iterator[tuple[str, str]]:
    """(source key, ``bytes=a-b``) pieces of at most 5 GiB covering every part in order."""
    for part in parts:
        for start in range(0, max(part.size, 1), _MAX_COPY):
            end = min(part.size, start + _MAX_COPY) - 1
            yield part.key, f"bytes={start}-{max(end, start)}"


def s3_volume(options: dict[str, Any]) -> ObjectVolume:
    """Builds an S3 volume from its config options (see the module docstring)."""
    bucket = options.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise ValueError("s3 volume needs a 'bucket' option")
    store = S3Store(
        bucket,
        endpoint_url=options.get("endpoint_url"),
        region=options.get("region", "us-east-1"),
        access_key=options.get("access_key"),
        secret_key=options.get("secret_key"),
        create_bucket=bool(options.get("create_bucket", False)),
    )
    return ObjectVolume(
        store,
        prefix=options.get("prefix", ""),
        segment_bytes=int(options.get("segment_bytes", DEFAULT_SEGMENT_BYTES)),
    )
