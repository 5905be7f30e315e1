"""Wire helpers of the ``/folders`` routes: calling VFolderService, reading Backend.AI's JSON
bodies (also on GET/DELETE, as the official client sends them) and shaping its JSON answers."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime
from typing import Any

from bai.common import errors
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from google.protobuf.message import Message
from starlette.requests import Request

__all__ = [
    "FROM_TEXT",
    "PERMISSIONS",
    "SERVICE",
    "body_of",
    "bool_of",
    "call",
    "file_json",
    "folder_json",
    "hex_id",
    "hex_or_empty",
    "invitation_json",
    "permission_of",
    "str_of",
    "strings_of",
    "ts_of",
]

SERVICE = "bai.manager.v1.VFolderService."
PERMISSIONS = {
    pb.FOLDER_PERMISSION_READ_ONLY: "ro",
    pb.FOLDER_PERMISSION_READ_WRITE: "rw",
    pb.FOLDER_PERMISSION_READ_WRITE_DELETE: "wd",
}
FROM_TEXT = {v: k for k, v in PERMISSIONS.items()}


async def call(up: UpstreamDep, request: Request, method: str, message: Message) -> Any:
    return await up.unary[SERVICE + method](
        message, metadata=up.metadata(request), deadline=up.config.call_timeout)


async def body_of(request: Request) -> dict[str, Any]:
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


def str_of(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.InvalidArgument(f"{key} must be a string")
    return value


def bool_of(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.InvalidArgument(f"{key} must be a boolean")
    return value


def strings_of(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if isinstance(value, str):
        value = [value]
    if not value or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidArgument(f"{key} must be a non-empty list of strings")
    return value


def permission_of(body: dict[str, Any], key: str) -> pb.FolderPermission:
    text = str_of(body, key, "rw") or "rw"
    if text not in FROM_TEXT:
        raise errors.InvalidArgument(f"{key} {text!r} is not ro, rw or wd")
    return FROM_TEXT[text]


def ts_of(message: Any, field: str) -> str:
    if not message.HasField(field):
        return datetime.fromtimestamp(0, UTC).isoformat()
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value.isoformat()


def hex_id(folder_id: str) -> str:
    return uuid.UUID(folder_id).hex


def hex_or_empty(ref: str) -> str:
    try:
        return uuid.UUID(ref).hex
    except ValueError:
        return ""


def folder_json(f: pb.VFolder) -> dict[str, Any]:
    """A folder as Backend.AI's list/info routes describe it (``permission`` is the caller's)."""
    permission = PERMISSIONS.get(f.access_permission or f.permission, "rw")
    is_user = bool(f.owner_user_id)
    return {
        "id": hex_id(f.id),
        "name": f.name,
        "host": f.volume,
        "quota_scope_id": (f"user:{f.owner_user_id}" if is_user
                           else f"project:{f.owner_project_id}"),
        "usage_mode": f.usage_mode,
        "created_at": ts_of(f, "create_time"),
        "is_owner": f.is_owner,
        "permission": permission,
        "user": f.owner_user_id or None,
        "group": f.owner_project_id or None,
        "creator": f.creator_email,
        "user_email": f.creator_email if is_user else None,
        "group_name": f.project_name or None,
        "ownership_type": "user" if is_user else "group",
        "type": "user" if is_user else "group",
        "status": f.status,
        "cloneable": f.cloneable,
        "max_files": 0,
        "max_size": f.quota_bytes // 2**20 if f.quota_bytes else None,
        "quota_bytes": f.quota_bytes or None,
        "cur_size": f.used_bytes,
        "numFiles": f.file_count,
        "mountable": f.mountable,
    }


def invitation_json(i: pb.VFolderInvitation) -> dict[str, Any]:
    return {
        "id": i.id,
        "inviter": i.inviter_email,
        "invitee": i.invitee_email,
        "perm": PERMISSIONS.get(i.permission, "rw"),
        "state": i.state,
        "created_at": ts_of(i, "create_time"),
        "modified_at": None,
        "vfolder_id": i.vfolder_id,
        "vfolder_name": i.vfolder_name,
    }


def file_json(f: pb.VFolderFile) -> dict[str, Any]:
    kind = {"directory": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(f.type, stat.S_IFREG)
    return {
        "name": f.name,
        "type": {"directory": "DIRECTORY", "symlink": "SYMLINK"}.get(f.type, "FILE"),
        "size": f.size_bytes,
        "mode": stat.filemode(kind | f.mode),
        "created": ts_of(f, "modify_time"),
        "modified": ts_of(f, "modify_time"),
    }
