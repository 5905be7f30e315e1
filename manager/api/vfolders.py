"""VFolderService servicer: convert, call one domain method, convert back."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import grpc
from bai.manager.api.interceptor import principal
from bai.manager.domain.vfolders import (
    FileEntry,
    InvalidVFolderRequest,
    Invitation,
    Permission,
    QuotaScope,
    ScopeType,
    Share,
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
_SCOPES = {ScopeType.USER: pb.QUOTA_SCOPE_TYPE_USER, ScopeType.PROJECT: pb.QUOTA_SCOPE_TYPE_PROJECT}
_SCOPE_FROM_PROTO = {v: k for k, v in _SCOPES.items()}


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _permission(value: int, default: Permission | None = Permission.READ_WRITE) -> Permission:
    chosen = _FROM_PROTO.get(value, default)  # type: ignore[call-overload]
    return chosen or Permission.READ_WRITE


def vfolder_to_proto(r: VFolderRecord) -> pb.VFolder:
    return pb.VFolder(
        id=str(r.id), name=r.name, volume=r.volume,
        owner_user_id=str(r.owner_user_id) if r.owner_user_id else "",
        owner_project_id=str(r.owner_project_id) if r.owner_project_id else "",
        permission=_PERMISSIONS[r.permission], usage_mode=r.usage_mode, status=r.status,
        create_time=_ts(r.created_at), mountable=r.mountable, used_bytes=r.used_bytes,
        file_count=r.file_count, cloneable=r.cloneable, quota_bytes=r.quota_bytes,
        is_owner=r.is_owner, access_permission=_PERMISSIONS[r.access or r.permission],
        creator_email=r.creator_email, project_name=r.project_name,
        delete_time=_ts(r.deleted_at))


def file_to_proto(f: FileEntry) -> pb.VFolderFile:
    return pb.VFolderFile(name=f.name, path=f.path, type=f.type, size_bytes=f.size_bytes,
                          modify_time=_ts(f.modify_time), mode=f.mode)


def invitation_to_proto(i: Invitation) -> pb.VFolderInvitation:
    return pb.VFolderInvitation(
        id=str(i.id), vfolder_id=str(i.vfolder_id), vfolder_name=i.vfolder_name,
        inviter_email=i.inviter_email, invitee_email=i.invitee_email,
        permission=_PERMISSIONS[i.permission], state=i.state, create_time=_ts(i.created_at))


def share_to_proto(s: Share) -> pb.VFolderShare:
    return pb.VFolderShare(user_id=str(s.user_id), email=s.email,
                           permission=_PERMISSIONS[s.permission], create_time=_ts(s.created_at))


def quota_scope_to_proto(q: QuotaScope) -> pb.QuotaScope:
    return pb.QuotaScope(scope_type=_SCOPES[q.scope_type], scope_id=str(q.scope_id),
                         max_bytes=q.max_bytes, used_bytes=q.used_bytes,
                         vfolder_count=q.vfolder_count)


def _grant(g: TransferGrant) -> pb.TransferGrant:
    return pb.TransferGrant(url=g.url, token=g.token, expire_time=_ts(g.expire_time))


class VFolderServicer(pb_grpc.VFolderServiceServicer):
    def __init__(self, vfolders: VFolderService) -> None:
        self._vfolders = vfolders
        self._sharing = vfolders.sharing

    async def CreateVFolder(
        self, request: pb.CreateVFolderRequest, context: Context
    ) -> pb.CreateVFolderResponse:
        record = await self._vfolders.create(
            principal(), request.name, request.volume, _permission(request.permission),
            request.usage_mode, project=request.project, quota_bytes=request.quota_bytes,
            cloneable=request.cloneable)
        return pb.CreateVFolderResponse(vfolder=vfolder_to_proto(record))

    async def ListVFolders(
        self, request: pb.ListVFoldersRequest, context: Context
    ) -> pb.ListVFoldersResponse:
        records = await self._vfolders.list_folders(principal(), request.project_id)
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

    async def RenameVFolder(
        self, request: pb.RenameVFolderRequest, context: Context
    ) -> pb.RenameVFolderResponse:
        record = await self._vfolders.rename(principal(), request.vfolder_ref, request.new_name)
        return pb.RenameVFolderResponse(vfolder=vfolder_to_proto(record))

    async def UpdateVFolderOptions(
        self, request: pb.UpdateVFolderOptionsRequest, context: Context
    ) -> pb.UpdateVFolderOptionsResponse:
        cloneable = request.cloneable if request.HasField("cloneable") else None
        record = await self._vfolders.update_options(
            principal(), request.vfolder_ref, _FROM_PROTO.get(request.permission), cloneable)
        return pb.UpdateVFolderOptionsResponse(vfolder=vfolder_to_proto(record))

    async def CloneVFolder(
        self, request: pb.CloneVFolderRequest, context: Context
    ) -> pb.CloneVFolderResponse:
        record = await self._vfolders.clone(
            principal(), request.vfolder_ref, request.target_name, request.target_volume,
            _permission(request.permission), request.usage_mode)
        return pb.CloneVFolderResponse(vfolder=vfolder_to_proto(record))

    async def RestoreVFolder(
        self, request: pb.RestoreVFolderRequest, context: Context
    ) -> pb.RestoreVFolderResponse:
        record = await self._vfolders.restore(principal(), request.vfolder_ref)
        return pb.RestoreVFolderResponse(vfolder=vfolder_to_proto(record))

    async def PurgeVFolder(
        self, request: pb.PurgeVFolderRequest, context: Context
    ) -> pb.PurgeVFolderResponse:
        await self._vfolders.purge(principal(), request.vfolder_ref)
        return pb.PurgeVFolderResponse()

    async def ListTrashedVFolders(
        self, request: pb.ListTrashedVFoldersRequest, context: Context
    ) -> pb.ListTrashedVFoldersResponse:
        records = await self._vfolders.list_trash(principal())
        return pb.ListTrashedVFoldersResponse(vfolders=[vfolder_to_proto(r) for r in records])

    async def MoveFile(self, request: pb.MoveFileRequest, context: Context) -> pb.MoveFileResponse:
        entry = await self._vfolders.move_file(principal(), request.vfolder_ref,
                                               request.src_path, request.dst_path)
        return pb.MoveFileResponse(file=file_to_proto(entry))

    async def DeleteFiles(
        self, request: pb.DeleteFilesRequest, context: Context
    ) -> pb.DeleteFilesResponse:
        await self._vfolders.delete_files(principal(), request.vfolder_ref, list(request.paths),
                                          recursive=request.recursive)
        return pb.DeleteFilesResponse()

    async def InviteToVFolder(
        self, request: pb.InviteToVFolderRequest, context: Context
    ) -> pb.InviteToVFolderResponse:
        invited = await self._sharing.invite(principal(), request.vfolder_ref,
                                             _permission(request.permission),
                                             list(request.emails))
        return pb.InviteToVFolderResponse(invited_emails=invited)

    async def ListInvitations(
        self, request: pb.ListInvitationsRequest, context: Context
    ) -> pb.ListInvitationsResponse:
        found = await self._sharing.invitations(principal())
        return pb.ListInvitationsResponse(invitations=[invitation_to_proto(i) for i in found])

    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Context
    ) -> pb.AcceptInvitationResponse:
        invitation = await self._sharing.accept(principal(), request.invitation_id)
        return pb.AcceptInvitationResponse(invitation=invitation_to_proto(invitation))

    async def RejectInvitation(
        self, request: pb.RejectInvitationRequest, context: Context
    ) -> pb.RejectInvitationResponse:
        invitation = await self._sharing.reject(principal(), request.invitation_id)
        return pb.RejectInvitationResponse(invitation=invitation_to_proto(invitation))

    async def ShareVFolder(
        self, request: pb.ShareVFolderRequest, context: Context
    ) -> pb.ShareVFolderResponse:
        shared = await self._sharing.share(principal(), request.vfolder_ref,
                                           _permission(request.permission),
                                           list(request.emails))
        return pb.ShareVFolderResponse(shared_emails=shared)

    async def UnshareVFolder(
        self, request: pb.UnshareVFolderRequest, context: Context
    ) -> pb.UnshareVFolderResponse:
        removed = await self._sharing.unshare(principal(), request.vfolder_ref,
                                              list(request.emails))
        return pb.UnshareVFolderResponse(unshared_emails=removed)

    async def ListVFolderShares(
        self, request: pb.ListVFolderSharesRequest, context: Context
    ) -> pb.ListVFolderSharesResponse:
        shares = await self._sharing.shares(principal(), request.vfolder_ref)
        return pb.ListVFolderSharesResponse(shares=[share_to_proto(s) for s in shares])

    async def LeaveVFolder(
        self, request: pb.LeaveVFolderRequest, context: Context
    ) -> pb.LeaveVFolderResponse:
        await self._sharing.leave(principal(), request.vfolder_ref)
        return pb.LeaveVFolderResponse()

    async def SetVFolderQuota(
        self, request: pb.SetVFolderQuotaRequest, context: Context
    ) -> pb.SetVFolderQuotaResponse:
        record = await self._vfolders.set_folder_quota(principal(), request.vfolder_ref,
                                                       request.quota_bytes)
        return pb.SetVFolderQuotaResponse(vfolder=vfolder_to_proto(record))

    async def SetQuotaScope(
        self, request: pb.SetQuotaScopeRequest, context: Context
    ) -> pb.SetQuotaScopeResponse:
        scope = await self._vfolders.set_scope_quota(
            principal(), _scope(request.scope_type), request.scope_ref, request.max_bytes)
        return pb.SetQuotaScopeResponse(quota_scope=quota_scope_to_proto(scope))

    async def GetQuotaScope(
        self, request: pb.GetQuotaScopeRequest, context: Context
    ) -> pb.GetQuotaScopeResponse:
        scope = await self._vfolders.get_scope_quota(
            principal(), _SCOPE_FROM_PROTO.get(request.scope_type), request.scope_ref)
        return pb.GetQuotaScopeResponse(quota_scope=quota_scope_to_proto(scope))


def _scope(value: int) -> ScopeType:
    scope: ScopeType | None = _SCOPE_FROM_PROTO.get(value)  # type: ignore[call-overload]
    if scope is None:
        raise InvalidVFolderRequest("scope_type must be USER or PROJECT")
    return scope
