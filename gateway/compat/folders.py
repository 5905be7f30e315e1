"""Backend.AI's vfolder routes (wire doc §6 ``/folders`` rows, §7), each one manager call.

``{ref}`` is a folder id (32 hex digits, as the client sends it, or dashed) or a name; the
manager resolves it and checks permissions. File bytes never pass through the gateway:
request-upload / request-download return the storage proxy's transfer URL and a token.
"""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from bai.common import errors
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from fastapi import APIRouter
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])
_SERVICE = "bai.manager.v1.VFolderService."
_PERMISSIONS = {
    pb.FOLDER_PERMISSION_READ_ONLY: "ro",
    pb.FOLDER_PERMISSION_READ_WRITE: "rw",
    pb.FOLDER_PERMISSION_READ_WRITE_DELETE: "wd",
}
_FROM_TEXT = {v: k for k, v in _PERMISSIONS.items()}


async def _call(up: UpstreamDep, request: Request, method: str, message: Message) -> Any:
    return await up.unary[_SERVICE + method](
        message, metadata=up.metadata(request), deadline=up.config.call_timeout)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object body (also of GET/DELETE, which the official client sends)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.InvalidArgument("the request body is not valid JSON",
                                     reason="MALFORMED_REQUEST") from exc
    if not isinstance(body, dict):
        raise errors.InvalidArgument("the request body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.InvalidArgument(f"{key} must be a string")
    return value


def _ts(message: Any, field: str) -> str:
    if not message.HasField(field):
        return datetime.fromtimestamp(0, UTC).isoformat()
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value.isoformat()


def _hex(folder_id: str) -> str:
    return uuid.UUID(folder_id).hex


def folder_json(f: pb.VFolder) -> dict[str, Any]:
    """A folder as Backend.AI's list/info routes describe it."""
    permission = _PERMISSIONS.get(f.permission, "rw")
    return {
        "id": _hex(f.id),
        "name": f.name,
        "host": f.volume,
        "quota_scope_id": f"user:{f.owner_user_id}" if f.owner_user_id else "",
        "usage_mode": f.usage_mode,
        "created_at": _ts(f, "create_time"),
        "is_owner": True,
        "permission": permission,
        "user": f.owner_user_id or None,
        "group": f.owner_project_id or None,
        "creator": f.owner_user_id,
        "user_email": None,
        "group_name": None,
        "ownership_type": "user" if f.owner_user_id else "group",
        "type": "user" if f.owner_user_id else "group",
        "status": f.status,
        "cloneable": False,
        "max_files": 0,
        "max_size": None,
        "cur_size": f.used_bytes,
        "numFiles": f.file_count,
        "mountable": f.mountable,
    }


def _file_json(f: pb.VFolderFile) -> dict[str, Any]:
    kind = {"directory": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(f.type, stat.S_IFREG)
    return {
        "name": f.name,
        "type": {"directory": "DIRECTORY", "symlink": "SYMLINK"}.get(f.type, "FILE"),
        "size": f.size_bytes,
        "mode": stat.filemode(kind | f.mode),
        "created": _ts(f, "modify_time"),
        "modified": _ts(f, "modify_time"),
    }


@router.get("/folders/_/hosts", summary="Storage volumes folders can be created on")
async def list_hosts(request: Request, up: UpstreamDep) -> dict[str, Any]:
    resp = await _call(up, request, "ListVolumes", pb.ListVolumesRequest())
    return {"default": resp.default_volume, "allowed": list(resp.volumes),
            "volume_info": {v: {} for v in resp.volumes}}


@router.get("/folders/_/id", summary="A folder's id by name (JSON body {name} on a GET)")
async def folder_id(request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await _body(request)
    name = _str(body, "name") or request.query_params.get("name", "")
    if not name:
        raise errors.InvalidArgument("name is required")
    resp = await _call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=name))
    return {"id": resp.vfolder.id}


@router.post("/folders", status_code=201, summary="Create a virtual folder")
async def create(request: Request, up: UpstreamDep) -> JSONResponse:
    body = await _body(request)
    if body.get("unmanaged_path"):
        raise errors.InvalidArgument("unmanaged folders are not supported",
                                     reason="UNSUPPORTED_PARAMETER")
    if body.get("group"):
        raise errors.InvalidArgument("project (group) folders are not supported yet",
                                     reason="UNSUPPORTED_PARAMETER")
    permission = _str(body, "permission", "rw") or "rw"
    if permission not in _FROM_TEXT:
        raise errors.InvalidArgument(f"permission {permission!r} is not ro, rw or wd")
    message = pb.CreateVFolderRequest(
        name=_str(body, "name"), volume=_str(body, "host") or _str(body, "folder_host"),
        permission=_FROM_TEXT[permission], usage_mode=_str(body, "usage_mode", "general"))
    resp = await _call(up, request, "CreateVFolder", message)
    return JSONResponse(folder_json(resp.vfolder), status_code=201)


@router.get("/folders", summary="The caller's virtual folders")
async def list_folders(request: Request, up: UpstreamDep) -> list[dict[str, Any]]:
    resp = await _call(up, request, "ListVFolders", pb.ListVFoldersRequest())
    return [folder_json(f) for f in resp.vfolders]


@router.delete("/folders", status_code=204, summary="Delete a folder (JSON body {id})")
async def delete_by_body(request: Request, up: UpstreamDep) -> Response:
    body = await _body(request)
    ref = _str(body, "id") or _str(body, "name")
    if not ref:
        raise errors.InvalidArgument("id is required")
    await _call(up, request, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.get("/folders/{ref}", summary="Folder information")
async def info(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    resp = await _call(up, request, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=ref))
    return folder_json(resp.vfolder)


@router.delete("/folders/{ref}", status_code=204, summary="Delete a folder")
async def delete(ref: str, request: Request, up: UpstreamDep) -> Response:
    await _call(up, request, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=ref))
    return Response(status_code=204)


@router.get("/folders/{ref}/files", summary="List a directory of a folder")
async def list_files(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    path = request.query_params.get("path") or _str(await _body(request), "path", ".")
    resp = await _call(up, request, "ListFiles",
                       pb.ListFilesRequest(vfolder_ref=ref, path=path))
    items = [_file_json(f) for f in resp.files]
    return {"items": items, "files": json.dumps(items), "error_msg": ""}


@router.post("/folders/{ref}/mkdir", status_code=201, summary="Create directories")
async def mkdir(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await _body(request)
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
            await _call(up, request, "MakeDirectory", message)
        except grpc.aio.AioRpcError as exc:
            if len(paths) == 1:
                raise  # one path: its error is the answer (400/404/409)
            failed.append({"item": path, "msg": exc.details() or exc.code().name})
            continue
        success.append({"item": path, "msg": ""})
    return {"results": {"success": success, "failed": failed}}


@router.post("/folders/{ref}/request-upload", summary="A token to upload one file (TUS)")
async def request_upload(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await _body(request)
    size = body.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.InvalidArgument("size must be a non-negative integer")
    message = pb.CreateUploadTokenRequest(vfolder_ref=ref, path=_str(body, "path"),
                                          size_bytes=size)
    resp = await _call(up, request, "CreateUploadToken", message)
    return {"url": resp.grant.url, "token": resp.grant.token}


@router.post("/folders/{ref}/request-download", summary="A token to download one file")
async def request_download(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    body = await _body(request)
    message = pb.CreateDownloadTokenRequest(vfolder_ref=ref, path=_str(body, "path"))
    resp = await _call(up, request, "CreateDownloadToken", message)
    return {"url": resp.grant.url, "token": resp.grant.token}
