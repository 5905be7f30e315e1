"""Backend.AI's vfolder routes (wire doc §6 ``/folders`` rows, §7), each one manager call.

Folder-level actions (rename, share, clone, file moves...) live in :mod:`.folder_ops`, included
at the end so that the static ``/folders/_/...`` and ``/folders/invitations/...`` routes win.

``{ref}`` is a folder id (32 hex digits, as the client sends it, or dashed) or a name; the
manager resolves it and checks permissions. File bytes never pass through the gateway:
request-upload / request-download return the storage proxy's transfer URL and a token.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from bai.common import errors
from bai.gateway.compat.folder_ops import router as ops_router
from bai.gateway.compat.folder_wire import (
    FROM_TEXT,
    body_of,
    bool_of,
    call,
    file_json,
    folder_json,
    hex_id,
    hex_or_empty,
    invitation_json,
    str_of,
)
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])


@router.get("/folders/_/hosts", summary="Storage volumes folders can be created on")
async def list_hosts(request: Request, up: UpstreamDep) -> dict[str, Any]:
    resp = await call(up, request, "ListVolumes", pb.ListVolumesRequest())
    return {"default": resp.default_volume, "allowed": list(resp.volumes),
            "volume_info": {v: {} for v in resp.volumes}}


@router.get("/folders/_/all_hosts", summary="Every storage volume")
async def list_all_hosts(request: Request, up: UpstreamDep) -> dict[str, Any]:
    return await list_hosts(request, up)


@router.get("/folders/_/allowed_types", summary="Folder ownership types this server allows")
async def allowed_types() -> list[str]:
    return ["user", "group"]


@router.get("/folders/invitations/list", summary="Invitations sent to the caller")
async def list_invitations(request: Request, up: UpstreamDep) -> dict[str, Any]:
    resp = await call(up, request, "ListInvitations", pb.ListInvitationsRequest())
    return {"invitations": [invitation_json(i) for i in resp.invitations]}


@router.post("/folders/invitations/accept", summary="Accept an invitation {inv_id}")
async def accept_invitation(request: Request, up: UpstreamDep) -> dict[str, Any]:
    inv_id = str_of(await body_of(request), "inv_id")
    if not inv_id:
        raise errors.InvalidArgument("inv_id is required")
    await call(up, request, "AcceptInvitation",
                pb.AcceptInvitationRequest(invitation_id=inv_id))
    return {}


@router.delete("/folders/invitations/delete", summary="Reject (or withdraw) an invitation")
async def delete_invitation(request: Request, up: UpstreamDep) -> dict[str, Any]:
    inv_id = str_of(await body_of(request), "inv_id")
    if not inv_id:
        raise errors.InvalidArgument("inv_id is required")
    await call(up, request, "RejectInvitation",
                pb.RejectInvitationRequest(invitation_id=inv_id))
    return {}


async def _body_ref(request: Request) -> str:
    body = await body_of(request)
    ref = str_of(body, "id") or str_of(body, "name")
    if not ref:
        raise errors.InvalidArgument("id is required")
    return ref


@router.post("/folders/purge", status_code=204, summary="Delete a trashed folder for good")
async def purge(request: Request, up: UpstreamDep) -> Response:
    ref = await _body_ref(request)
    await call(up, request, "PurgeVFolder", pb.PurgeVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.post("/folders/delete-from-trash-bin", status_code=204,
             summary="Delete a trashed folder for good (same as purge)")
async def delete_from_trash(request: Request, up: UpstreamDep) -> Response:
    return await purge(request, up)


@router.post("/folders/restore-from-trash-bin", status_code=204,
             summary="Bring a trashed folder back")
async def restore(request: Request, up: UpstreamDep) -> Response:
    ref = await _body_ref(request)
    await call(up, request, "RestoreVFolder", pb.RestoreVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.get("/folders/_/id", summary="A folder's id by name (JSON body {name} on a GET)")
async def folder_id(request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    name = str_of(body, "name") or request.query_params.get("name", "")
    if not name:
        raise errors.InvalidArgument("name is required")
    try:
        resp = await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=name))
    except grpc.aio.AioRpcError as exc:
        # restore / purge look their (trashed) folder up by name first
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        trash = await call(up, request, "ListTrashedVFolders", pb.ListTrashedVFoldersRequest())
        trashed = [f for f in trash.vfolders
                   if f.name == name or hex_id(f.id) == hex_or_empty(name)]
        if not trashed:
            raise
        return {"id": trashed[0].id}
    return {"id": resp.vfolder.id}


@router.post("/folders", status_code=201, summary="Create a virtual folder")
async def create(request: Request, up: UpstreamDep) -> JSONResponse:
    body = await body_of(request)
    if body.get("unmanaged_path"):
        raise errors.InvalidArgument("unmanaged folders are not supported",
                                     reason="UNSUPPORTED_PARAMETER")
    permission = str_of(body, "permission", "rw") or "rw"
    if permission not in FROM_TEXT:
        raise errors.InvalidArgument(f"permission {permission!r} is not ro, rw or wd")
    quota = body.get("quota", 0) or 0
    if not isinstance(quota, int) or isinstance(quota, bool) or quota < 0:
        raise errors.InvalidArgument("quota must be a non-negative integer (bytes)")
    message = pb.CreateVFolderRequest(
        name=str_of(body, "name"), volume=str_of(body, "host") or str_of(body, "folder_host"),
        permission=FROM_TEXT[permission], usage_mode=str_of(body, "usage_mode", "general"),
        project=str_of(body, "group"), quota_bytes=quota, cloneable=bool_of(body, "cloneable"))
    resp = await call(up, request, "CreateVFolder", message)
    return JSONResponse(folder_json(resp.vfolder), status_code=201)


@router.get("/folders", summary="The caller's virtual folders")
async def list_folders(request: Request, up: UpstreamDep) -> list[dict[str, Any]]:
    project_id = request.query_params.get("group_id", "")
    resp = await call(up, request, "ListVFolders", pb.ListVFoldersRequest(project_id=project_id))
    return [folder_json(f) for f in resp.vfolders]


@router.delete("/folders", status_code=204,
               summary="Move a folder to the trash (JSON body {id})")
async def delete_by_body(request: Request, up: UpstreamDep) -> Response:
    body = await body_of(request)
    ref = str_of(body, "id") or str_of(body, "name")
    if not ref:
        raise errors.InvalidArgument("id is required")
    await call(up, request, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.get("/folders/{ref}", summary="Folder information")
async def info(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    resp = await call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))
    return folder_json(resp.vfolder)


@router.delete("/folders/{ref}", status_code=204, summary="Move a folder to the trash")
async def delete(ref: str, request: Request, up: UpstreamDep) -> Response:
    await call(up, request, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.get("/folders/{ref}/files", summary="List a directory of a folder")
async def list_files(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    path = request.query_params.get("path") or str_of(await body_of(request), "path", ".")
    resp = await call(up, request, "ListFiles",
                       pb.ListFilesRequest(vfolder_ref=ref, path=path))
    items = [file_json(f) for f in resp.files]
    return {"items": items, "files": json.dumps(items), "error_msg": ""}


@router.post("/folders/{ref}/mkdir", status_code=201, summary="Create directories")
async def mkdir(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    raw = body.get("path")
    paths = [raw] if isinstance(raw, str) else raw
    if not paths or not all(isinstance(p, str) for p in paths):
        raise errors.InvalidArgument("path must be a string or a list of strings")
    parents, exist_ok = bool(body.get("parents", False)), bool(body.get("exist_ok", False))
    success: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for path in paths:
        message = pb.MakeDirectoryRequest(vfolder_ref=ref, path=path, parents=parents,
                                          exist_ok=exist_ok)
        try:
            await call(up, request, "MakeDirectory", message)
        except grpc.aio.AioRpcError as exc:
            if len(paths) == 1:
                raise  # one path: its error is the answer (400/404/409)
            failed.append({"item": path, "msg": exc.details() or exc.code().name})
            continue
        success.append({"item": path, "msg": ""})
    return {"results": {"success": success, "failed": failed}}


@router.post("/folders/{ref}/request-upload", summary="A token to upload one file (TUS)")
async def request_upload(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    size = body.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.InvalidArgument("size must be a non-negative integer")
    message = pb.CreateUploadTokenRequest(vfolder_ref=ref, path=str_of(body, "path"),
                                          size_bytes=size)
    resp = await call(up, request, "CreateUploadToken", message)
    return {"url": resp.grant.url, "token": resp.grant.token}


@router.post("/folders/{ref}/request-download", summary="A token to download one file")
async def request_download(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await body_of(request)
    message = pb.CreateDownloadTokenRequest(vfolder_ref=ref, path=str_of(body, "path"))
    resp = await call(up, request, "CreateDownloadToken", message)
    return {"url": resp.grant.url, "token": resp.grant.token}


router.include_router(ops_router)
