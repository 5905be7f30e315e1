"""The gRPC ``bai.storage.v1.StorageService``: converts, calls one domain method, converts back.

Domain errors propagate to :class:`~bai.common.rpc.DomainErrorInterceptor`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from bai.common.errors import InvalidArgument
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc
from bai.storage.api.convert import file_to_proto, folder_to_proto, volume_to_proto
from bai.storage.domain import StorageService
from google.protobuf import timestamp_pb2

__all__ = ["SERVICE_NAME", "StorageServicer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StorageService"].full_name
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_OPERATIONS = {pb.TRANSFER_OPERATION_UPLOAD: "upload", pb.TRANSFER_OPERATION_DOWNLOAD: "download"}


class _UploadStream:
    """The chunks of an UploadFile stream after its header, and whether ``finish`` came."""

    def __init__(self, messages: AsyncIterator[pb.UploadFileRequest]) -> None:
        self._messages = messages
        self.finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for message in self._messages:
            kind = message.WhichOneof("payload")
            if self.finished or kind == "header":
                raise InvalidArgument("only chunks may follow the header, none after finish")
            if kind == "finish":
                self.finished = message.finish
            else:
                yield message.chunk


class StorageServicer(pb_grpc.StorageServiceServicer):
    """Serves StorageService over one :class:`StorageService` domain object."""

    def __init__(self, storage: StorageService) -> None:
        self._storage = storage

    async def ListVolumes(
        self, request: pb.ListVolumesRequest, context: Context
    ) -> pb.ListVolumesResponse:
        views = await self._storage.list_volumes()
        return pb.ListVolumesResponse(volumes=[volume_to_proto(v) for v in views])

    async def GetVolume(
        self, request: pb.GetVolumeRequest, context: Context
    ) -> pb.GetVolumeResponse:
        return pb.GetVolumeResponse(
            volume=volume_to_proto(await self._storage.get_volume(request.volume))
        )

    async def CreateFolder(
        self, request: pb.CreateFolderRequest, context: Context
    ) -> pb.CreateFolderResponse:
        view = await self._storage.create_folder(
            request.volume, request.folder_id, request.quota_bytes
        )
        return pb.CreateFolderResponse(folder=folder_to_proto(view))

    async def GetFolder(
        self, request: pb.GetFolderRequest, context: Context
    ) -> pb.GetFolderResponse:
        view = await self._storage.get_folder(request.volume, request.folder_id)
        return pb.GetFolderResponse(folder=folder_to_proto(view))

    async def DeleteFolder(
        self, request: pb.DeleteFolderRequest, context: Context
    ) -> pb.DeleteFolderResponse:
        await self._storage.delete_folder(request.volume, request.folder_id)
        return pb.DeleteFolderResponse()

    async def CloneFolder(
        self, request: pb.CloneFolderRequest, context: Context
    ) -> pb.CloneFolderResponse:
        view = await self._storage.clone_folder(
            request.volume, request.folder_id, request.target_folder_id
        )
        return pb.CloneFolderResponse(folder=folder_to_proto(view))

    async def GetFolderUsage(
        self, request: pb.GetFolderUsageRequest, context: Context
    ) -> pb.GetFolderUsageResponse:
        usage = await self._storage.folder_usage(request.volume, request.folder_id)
        return pb.GetFolderUsageResponse(used_bytes=usage.used_bytes, file_count=usage.file_count)

    async def SetQuota(self, request: pb.SetQuotaRequest, context: Context) -> pb.SetQuotaResponse:
        quota = await self._storage.set_quota(
            request.volume, request.folder_id, request.quota_bytes
        )
        return pb.SetQuotaResponse(quota_bytes=quota)

    async def GetQuota(self, request: pb.GetQuotaRequest, context: Context) -> pb.GetQuotaResponse:
        quota, used = await self._storage.get_quota(request.volume, request.folder_id)
        return pb.GetQuotaResponse(quota_bytes=quota, used_bytes=used)

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: Context
    ) -> pb.ListFilesResponse:
        entries, token = await self._storage.list_files(
            request.volume, request.folder_id, request.path, request.page_size, request.page_token
        )
        return pb.ListFilesResponse(
            files=[file_to_proto(e) for e in entries], next_page_token=token
        )

    async def GetFile(self, request: pb.GetFileRequest, context: Context) -> pb.GetFileResponse:
        entry = await self._storage.get_file(request.volume, request.folder_id, request.path)
        return pb.GetFileResponse(file=file_to_proto(entry))

    async def MakeDirectory(
        self, request: pb.MakeDirectoryRequest, context: Context
    ) -> pb.MakeDirectoryResponse:
        entry = await self._storage.make_directory(
            request.volume,
            request.folder_id,
            request.path,
            parents=request.parents,
            exist_ok=request.exist_ok,
        )
        return pb.MakeDirectoryResponse(file=file_to_proto(entry))

    async def MoveFile(self, request: pb.MoveFileRequest, context: Context) -> pb.MoveFileResponse:
        entry = await self._storage.move_file(
            request.volume, request.folder_id, request.src_path, request.dst_path
        )
        return pb.MoveFileResponse(file=file_to_proto(entry))

    async def DeleteFiles(
        self, request: pb.DeleteFilesRequest, context: Context
    ) -> pb.DeleteFilesResponse:
        await self._storage.delete_files(
            request.volume, request.folder_id, list(request.paths), recursive=request.recursive
        )
        return pb.DeleteFilesResponse()

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: Context
    ) -> pb.UploadFileResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first UploadFile message must carry the header")
        h = first.header
        stream = _UploadStream(request_iterator)
        result = await self._storage.upload(
            h.volume,
            h.folder_id,
            h.path,
            offset=h.offset,
            total_size=h.total_size_bytes,
            chunks=stream.chunks(),
            end_of_file=lambda: stream.finished,
        )
        file = file_to_proto(result.entry) if result.entry is not None else None
        return pb.UploadFileResponse(complete=result.complete, offset=result.offset, file=file)

    async def GetUploadOffset(
        self, request: pb.GetUploadOffsetRequest, context: Context
    ) -> pb.GetUploadOffsetResponse:
        offset = await self._storage.upload_offset(request.volume, request.folder_id, request.path)
        return pb.GetUploadOffsetResponse(offset=offset)

    async def DownloadFile(
        self, request: pb.DownloadFileRequest, context: Context
    ) -> AsyncIterator[pb.DownloadFileResponse]:
        entry, stream = await self._storage.open_download(
            request.volume,
            request.folder_id,
            request.path,
            offset=request.offset,
            length=request.length or None,
        )
        offset, first = request.offset, True
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                file = file_to_proto(entry) if first else None
                yield pb.DownloadFileResponse(file=file, offset=offset, chunk=chunk)
                offset, first = offset + len(chunk), False
        if first:  # an empty range still tells the caller about the file
            yield pb.DownloadFileResponse(file=file_to_proto(entry), offset=offset)

    async def CreateTransferToken(
        self, request: pb.CreateTransferTokenRequest, context: Context
    ) -> pb.CreateTransferTokenResponse:
        url, token, expires = await self._storage.create_transfer_token(
            request.volume,
            request.folder_id,
            request.path,
            op=_OPERATIONS.get(request.operation, ""),
            size_bytes=request.size_bytes,
            ttl_seconds=int(request.ttl.ToTimedelta().total_seconds()),
        )
        expire_time = timestamp_pb2.Timestamp(seconds=expires)
        return pb.CreateTransferTokenResponse(url=url, token=token, expire_time=expire_time)
