"""Backend.AI's per-folder actions under ``/folders/{ref}/...`` (wire doc §6 "other vfolder").

Payloads as the official client (``ai.backend.client.func.vfolder``) sends them; answers carry
the keys its CLI reads (``invited_ids``, ``shared_emails``, ``unshared_emails``; no
``bgtask_id`` from clone: the copy is done when the call returns).
"""

from __future__ import annotations

import posixpath
from typing import Any

from bai.common import errors
from bai.gateway.compat.folder_wire import (
    PERMISSIONS,
    body_of,
    bool_of,
    call,
    file_json,
    folder_json,
    permission_of,
    str_of,
    strings_of,
)
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])


@router.post("/folders/{ref}/rename", status_code=201, summary="Rename a folder {new_name}")
async def rename(ref: str, request: Request, up: UpstreamDep) -> JSONResponse:
    new_name = str_of(await body_of(request), "new_name")
    resp = await call(up, request, "RenameVFolder",
                      pb.RenameVFolderRequest(vfolder_ref=ref, new_name=new_name))
    return JSONResponse(folder_json(resp.vfolder), status_code=201)


@router.post("/folders/{ref}/update-options", status_code=201,
             summary="Change a folder's permission and cloneable flag")
async def update_options(ref: str, request: Request, up: UpstreamDep) -> JSONResponse:
    body = await body_of(request)
    message = pb.UpdateVFolderOptionsRequest(vfolder_ref=ref)
    if body.get("permission") is not None:
        message.permission = permission_of(body, "permission")
    if body.get("cloneable") is not None:
        message.cloneable = bool_of(body, "cloneable")
    resp = await call(up, request, "UpdateVFolderOptions", message)
    return JSONResponse(folder_json(resp.vfolder), status_code=201)


@router.post("/folders/{ref}/clone", status_code=201, summary="Copy a folder into a new one")
async def clone(ref: str, request: Request, up: UpstreamDep) -> JSONResponse:
    body = await body_of(request)
    message = pb.CloneVFolderRequest(
        vfolder_ref=ref, target_name=str_of(body, "target_name"),
        target_volume=str_of(body, "target_host"), permission=permission_of(body, "permission"),
        usage_mode=str_of(body, "usage_mode"))
    resp = await call(up, request, "CloneVFolder", message)
    return JSONResponse(folder_json(resp.vfolder), status_code=201)


@router.delete("/folders/{ref}/force", status_code=204,
               summary="Delete a live folder for good (trash, then purge)")
async def force_delete(ref: str, request: Request, up: UpstreamDep) -> Response:
    info = await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))
    await call(up, request, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=info.vfolder.id))
    await call(up, request, "PurgeVFolder", pb.PurgeVFolderRequest(vfolder_ref=info.vfolder.id))
    return Response(status_code=204)


@router.get("/folders/{ref}/usage", summary="Bytes and files in a folder")
async def usage(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    if ref == "_":  # Backend.AI's /folders/_/usage?folder_host=&id=
        ref = request.query_params.get("id", "")
    resp = await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))
    f = resp.vfolder
    return {"used_bytes": f.used_bytes, "file_count": f.file_count,
            "quota_bytes": f.quota_bytes or None}


@router.get("/folders/{ref}/quota", summary="A folder's quota and usage")
async def get_quota(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    if ref == "_":
        ref = request.query_params.get("id", "") or str_of(await body_of(request), "id")
    resp = await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))
    return {"used_bytes": resp.vfolder.used_bytes, "limit_bytes": resp.vfolder.quota_bytes}


@router.post("/folders/{ref}/quota", summary="Set a folder's quota {input: {size_bytes}}")
async def set_quota(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    if ref == "_":
        ref = str_of(body, "id")
    raw = body.get("input")
    size = raw.get("size_bytes") if isinstance(raw, dict) else body.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.InvalidArgument("input.size_bytes must be a non-negative integer")
    resp = await call(up, request, "SetVFolderQuota",
                      pb.SetVFolderQuotaRequest(vfolder_ref=ref, quota_bytes=size))
    return {"size_bytes": resp.vfolder.quota_bytes}


@router.post("/folders/{ref}/rename-file", summary="Rename a file {target_path, new_name}")
async def rename_file(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    target, new_name = str_of(body, "target_path"), str_of(body, "new_name")
    if not target or not new_name:
        raise errors.InvalidArgument("target_path and new_name are required")
    if "/" in new_name or new_name in (".", ".."):
        raise errors.InvalidArgument("new_name must be a plain file name (use move-file to move)",
                                     reason="INVALID_PATH")
    dst = posixpath.join(posixpath.dirname(target.rstrip("/")), new_name)
    resp = await call(up, request, "MoveFile",
                      pb.MoveFileRequest(vfolder_ref=ref, src_path=target, dst_path=dst))
    return file_json(resp.file)


@router.post("/folders/{ref}/move-file", summary="Move a file or directory {src, dst}")
async def move_file(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    resp = await call(up, request, "MoveFile", pb.MoveFileRequest(
        vfolder_ref=ref, src_path=str_of(body, "src"), dst_path=str_of(body, "dst")))
    return file_json(resp.file)


@router.delete("/folders/{ref}/delete-files", summary="Delete files {files, recursive}")
async def delete_files(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    await call(up, request, "DeleteFiles", pb.DeleteFilesRequest(
        vfolder_ref=ref, paths=strings_of(body, "files"),
        recursive=bool_of(body, "recursive")))
    return {}


@router.post("/folders/{ref}/invite", status_code=201,
             summary="Invite users by email {perm, user_ids}")
async def invite(ref: str, request: Request, up: UpstreamDep) -> JSONResponse:
    body = await body_of(request)
    emails = strings_of(body, "user_ids" if "user_ids" in body else "emails")
    resp = await call(up, request, "InviteToVFolder", pb.InviteToVFolderRequest(
        vfolder_ref=ref, permission=permission_of(body, "perm"), emails=emails))
    return JSONResponse({"invited_ids": list(resp.invited_emails)}, status_code=201)


@router.post("/folders/{ref}/share", status_code=201,
             summary="Share a folder with users {permission, emails}")
async def share(ref: str, request: Request, up: UpstreamDep) -> JSONResponse:
    body = await body_of(request)
    resp = await call(up, request, "ShareVFolder", pb.ShareVFolderRequest(
        vfolder_ref=ref, permission=permission_of(body, "permission"),
        emails=strings_of(body, "emails")))
    return JSONResponse({"shared_emails": list(resp.shared_emails)}, status_code=201)


@router.delete("/folders/{ref}/unshare", summary="Withdraw shares {emails}")
async def unshare(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    resp = await call(up, request, "UnshareVFolder", pb.UnshareVFolderRequest(
        vfolder_ref=ref, emails=strings_of(body, "emails")))
    return {"unshared_emails": list(resp.unshared_emails)}


@router.get("/folders/_/shared", summary="Who a folder is shared with (?vfolder_id=)")
async def list_shares(request: Request, up: UpstreamDep) -> dict[str, Any]:
    ref = request.query_params.get("vfolder_id", "")
    if not ref:
        raise errors.InvalidArgument("vfolder_id is required")
    info = (await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))).vfolder
    resp = await call(up, request, "ListVFolderShares",
                      pb.ListVFolderSharesRequest(vfolder_ref=info.id))
    owner = info.creator_email if info.owner_user_id else info.project_name
    return {"shared": [{
        "vfolder_id": info.id, "vfolder_name": info.name, "status": info.status,
        "owner": owner, "type": "user" if info.owner_user_id else "group",
        "shared_to": {"uuid": s.user_id, "email": s.email},
        "perm": PERMISSIONS.get(s.permission, "rw")} for s in resp.shares]}


@router.post("/folders/{ref}/leave", summary="Give up the caller's share of a folder")
async def leave(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    if body.get("shared_user_uuid"):
        raise errors.InvalidArgument("leaving on behalf of another user is not supported",
                                     reason="UNSUPPORTED_PARAMETER")
    await call(up, request, "LeaveVFolder", pb.LeaveVFolderRequest(vfolder_ref=ref))
    return {}
