"""VFolderService servicer: convert, call one domain method, convert back."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import grpc
from bai.manager.api.interceptor import principal
from bai.manager.domain.vfolders import (
    FileEntry,
    Permission,
    TransferGrant,
    VFolderRecord,
    VFolderService,
)
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from bai.pb.manager.v1 import vfolder_service_pb2_grpc as pb_grpc
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["VFolderServicer"]

Context: TypeAlias = grpc.aio.ServicerContext

_PERMISSIONS = {
    Permission.READ_ONLY: pb.FOLDER_PERMISSION_READ_ONLY,
    Permission.READ_WRITE: pb.FOLDER_PERMISSION_READ_WRITE,
    Permission.READ_WRITE_DELETE: pb.FOLDER_PERMISSION_READ_WRITE_DELETE,
}
_FROM_PROTO = {v: k for k, v in _PERMISSIONS.items()}


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def vfolder_to_proto(r: VFolderRecord) -> pb.VFolder:
    return pb.VFolder(
        id=str(r.id), name=r.name, volume=r.volume,
        owner_user_id=str(r.owner_user_id) if r.owner_user_id else "",
        owner_project_id=str(r.owner_project_id) if r.owner_project_id else "",
        permission=_PERMISSIONS[r.permission], usage_mode=r.usage_mode, status=r.status,
        create_time=_ts(r.created_at), mountable=r.mountable, used_bytes=r.used_bytes,
        file_count=r.file_count)


def file_to_proto(f: FileEntry) -> pb.VFolderFile:
    return pb.VFolderFile(name=f.name, path=f.path, type=f.type, size_bytes=f.size_bytes,
                          modify_time=_ts(f.modify_time), mode=f.mode)


def _grant(g: TransferGrant) -> pb.TransferGrant:
    return pb.TransferGrant(url=g.url, token=g.token, expire_time=_ts(g.expire_time))


class VFolderServicer(pb_grpc.VFolderServiceServicer):
    def __init__(self, vfolders: VFolderService) -> None:
        self._vfolders = vfolders

    async def CreateVFolder(
        self, request: pb.CreateVFolderRequest, context: Context
    ) -> pb.CreateVFolderResponse:
        permission = _FROM_PROTO.get(request.permission, Permission.READ_WRITE)
        record = await self._vfolders.create(principal(), request.name, request.volume,
                                             permission, request.usage_mode)
        return pb.CreateVFolderResponse(vfolder=vfolder_to_proto(record))

    async def ListVFolders(
        self, request: pb.ListVFoldersRequest, context: Context
    ) -> pb.ListVFoldersResponse:
        records = await self._vfolders.list_folders(principal())
        return pb.ListVFoldersResponse(vfolders=[vfolder_to_proto(r) for r in records])

    async def GetVFolder(
        self, request: pb.GetVFolderRequest, context: Context
    ) -> pb.GetVFolderResponse:
        record = await self._vfolders.get(principal(), request.vfolder_ref)
        return pb.GetVFolderResponse(vfolder=vfolder_to_proto(record))

    async def DeleteVFolder(
        self, request: pb.DeleteVFolderRequest, context: Context
    ) -> pb.DeleteVFolderResponse:
        await self._vfolders.delete(principal(), request.vfolder_ref)
        return pb.DeleteVFolderResponse()

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: Context
    ) -> pb.ListFilesResponse:
        files = await self._vfolders.list_files(principal(), request.vfolder_ref, request.path)
        return pb.ListFilesResponse(files=[file_to_proto(f) for f in files])

    async def MakeDirectory(
        self, request: pb.MakeDirectoryRequest, context: Context
    ) -> pb.MakeDirectoryResponse:
        entry = await self._vfolders.make_directory(
            principal(), request.vfolder_ref, request.path, parents=request.parents,
            exist_ok=request.exist_ok)
        return pb.MakeDirectoryResponse(file=file_to_proto(entry))

    async def CreateUploadToken(
        self, request: pb.CreateUploadTokenRequest, context: Context
    ) -> pb.CreateUploadTokenResponse:
        grant = await self._vfolders.upload_token(principal(), request.vfolder_ref,
                                                  request.path, request.size_bytes)
        return pb.CreateUploadTokenResponse(grant=_grant(grant))

    async def CreateDownloadToken(
        self, request: pb.CreateDownloadTokenRequest, context: Context
    ) -> pb.CreateDownloadTokenResponse:
        grant = await self._vfolders.download_token(principal(), request.vfolder_ref,
                                                    request.path)
        return pb.CreateDownloadTokenResponse(grant=_grant(grant))

    async def ListVolumes(
        self, request: pb.ListVolumesRequest, context: Context
    ) -> pb.ListVolumesResponse:
        volumes = await self._vfolders.list_volumes()
        return pb.ListVolumesResponse(volumes=[v.name for v in volumes],
                                      default_volume=volumes[0].name)
