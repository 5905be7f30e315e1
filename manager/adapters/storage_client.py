"""The storage proxy's StorageService behind :class:`bai.manager.domain.vfolders.StoragePort`.

One channel, the internal service token on every call, a deadline on every call; failures
come back as bai.common.errors (the proxy's reason, e.g. PATH_ESCAPES_FOLDER, is kept).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from bai.common.rpc import SERVICE_TOKEN_KEY, error_from_rpc
from bai.manager.domain.vfolders import FileEntry, TransferGrant, VolumeInfo
from bai.pb.storage.v1 import storage_pb2
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["GrpcStorageClient"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_TYPES = {
    storage_pb2.File.TYPE_FILE: "file",
    storage_pb2.File.TYPE_DIRECTORY: "directory",
    storage_pb2.File.TYPE_SYMLINK: "symlink",
}


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _entry(f: storage_pb2.File) -> FileEntry:
    return FileEntry(name=f.name, path=f.path, type=_TYPES.get(f.type, "file"),
                     size_bytes=f.size_bytes,
                     modify_time=_time(f.modify_time, f.HasField("modify_time")), mode=f.mode)


class GrpcStorageClient:
    def __init__(self, address: str, service_token: str, *, call_timeout: float = 30.0,
                 long_call_timeout: float = 3600.0) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._stub: Any = pb_grpc.StorageServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._md = ((SERVICE_TOKEN_KEY, service_token),)
        self._timeout = call_timeout
        self._long_timeout = long_call_timeout
        """For calls that copy or delete whole folders (clone, recursive delete)."""

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, *,
                    deadline_s: float | None = None) -> T:
        try:
            return await method(request, metadata=self._md,
                                timeout=deadline_s or self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def volumes(self) -> list[VolumeInfo]:
        resp = await self._call(self._stub.ListVolumes, pb.ListVolumesRequest())
        return [VolumeInfo(name=v.name, backend=v.backend, mountable=v.mountable)
                for v in resp.volumes]

    async def create_folder(self, volume: str, folder_id: uuid.UUID,
                            quota_bytes: int = 0) -> None:
        await self._call(self._stub.CreateFolder, pb.CreateFolderRequest(
            volume=volume, folder_id=str(folder_id), quota_bytes=quota_bytes))

    async def clone_folder(self, volume: str, folder_id: uuid.UUID,
                           target_id: uuid.UUID) -> None:
        await self._call(self._stub.CloneFolder, pb.CloneFolderRequest(
            volume=volume, folder_id=str(folder_id), target_folder_id=str(target_id)),
            deadline_s=self._long_timeout)

    async def set_quota(self, volume: str, folder_id: uuid.UUID, quota_bytes: int) -> None:
        await self._call(self._stub.SetQuota, pb.SetQuotaRequest(
            volume=volume, folder_id=str(folder_id), quota_bytes=quota_bytes))

    async def delete_folder(self, volume: str, folder_id: uuid.UUID) -> None:
        await self._call(self._stub.DeleteFolder,
                         pb.DeleteFolderRequest(volume=volume, folder_id=str(folder_id)),
                         deadline_s=self._long_timeout)

    async def mount_path(self, volume: str, folder_id: uuid.UUID) -> str:
        resp = await self._call(self._stub.GetFolder,
                                pb.GetFolderRequest(volume=volume, folder_id=str(folder_id)))
        return str(resp.folder.mount_path)

    async def usage(self, volume: str, folder_id: uuid.UUID) -> tuple[int, int]:
        resp = await self._call(self._stub.GetFolderUsage,
                                pb.GetFolderUsageRequest(volume=volume, folder_id=str(folder_id)))
        return int(resp.used_bytes), int(resp.file_count)

    async def list_files(self, volume: str, folder_id: uuid.UUID, path: str) -> list[FileEntry]:
        entries: list[FileEntry] = []
        token = ""
        while True:
            resp = await self._call(self._stub.ListFiles, pb.ListFilesRequest(
                volume=volume, folder_id=str(folder_id), path=path, page_size=5000,
                page_token=token))
            entries.extend(_entry(f) for f in resp.files)
            token = resp.next_page_token
            if not token:
                return entries

    async def make_directory(self, volume: str, folder_id: uuid.UUID, path: str, *,
                             parents: bool, exist_ok: bool) -> FileEntry:
        resp = await self._call(self._stub.MakeDirectory, pb.MakeDirectoryRequest(
            volume=volume, folder_id=str(folder_id), path=path, parents=parents,
            exist_ok=exist_ok))
        return _entry(resp.file)

    async def move_file(self, volume: str, folder_id: uuid.UUID, src_path: str,
                        dst_path: str) -> FileEntry:
        resp = await self._call(self._stub.MoveFile, pb.MoveFileRequest(
            volume=volume, folder_id=str(folder_id), src_path=src_path, dst_path=dst_path))
        return _entry(resp.file)

    async def delete_files(self, volume: str, folder_id: uuid.UUID, paths: list[str], *,
                           recursive: bool) -> None:
        await self._call(self._stub.DeleteFiles, pb.DeleteFilesRequest(
            volume=volume, folder_id=str(folder_id), paths=paths, recursive=recursive),
            deadline_s=self._long_timeout)

    async def transfer_token(self, volume: str, folder_id: uuid.UUID, path: str, *,
                             upload: bool, size_bytes: int) -> TransferGrant:
        op = pb.TRANSFER_OPERATION_UPLOAD if upload else pb.TRANSFER_OPERATION_DOWNLOAD
        resp = await self._call(self._stub.CreateTransferToken, pb.CreateTransferTokenRequest(
            volume=volume, folder_id=str(folder_id), path=path, operation=op,
            size_bytes=size_bytes))
        expire = _time(resp.expire_time, resp.HasField("expire_time"))
        return TransferGrant(url=resp.url, token=resp.token, expire_time=expire)
