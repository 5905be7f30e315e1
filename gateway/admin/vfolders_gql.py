"""GraphQL ``vfolder_list`` (wire doc §10), the query the official client's ``vfolder list`` sends,
and its ``vfolder_own_list`` / ``vfolder_invited_list`` / ``vfolder_project_list`` siblings.

One ListVFolders (and one ListTrashedVFolders) call to the manager with the client's forwarded
signature; the manager decides what the caller sees. Paged here: the manager returns the
caller's folders whole (a user's folders are few). Trashed folders appear with status
``delete-pending``, as in Backend.AI. Kept apart from ``graphql.py`` (which merges this
``VFolderQuery`` into its root Query) so the vfolder and admin types evolve separately.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NewType, Protocol
from uuid import UUID

import grpc
import strawberry
from bai.gateway.admin.calls import graphql_error
from bai.gateway.auth import Metadata
from bai.gateway.upstream import Upstream
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from graphql import GraphQLError

__all__ = ["BigInt", "VFolderQuery", "VirtualFolder", "VirtualFolderList"]

_SERVICE = "bai.manager.v1.VFolderService."
_PERMISSIONS = {
    pb.FOLDER_PERMISSION_READ_ONLY: "ro",
    pb.FOLDER_PERMISSION_READ_WRITE: "rw",
    pb.FOLDER_PERMISSION_READ_WRITE_DELETE: "wd",
}
_MAX_LIMIT = 1000
BigInt = NewType("BigInt", int)  # the same scalar graphql.py maps (scalar_map is by object)


class _Context(Protocol):
    """What graphql.py's Context provides."""

    up: Upstream
    metadata: Metadata


@strawberry.type(description="A virtual folder (Backend.AI's VirtualFolder, the common fields).")
class VirtualFolder:
    id: UUID
    host: str
    quota_scope_id: str
    name: str
    user: UUID | None
    user_email: str | None
    group: UUID | None
    group_name: str | None
    creator: str
    unmanaged_path: str | None
    usage_mode: str
    permission: str
    ownership_type: str
    max_files: int
    max_size: BigInt | None
    created_at: datetime | None
    last_used: datetime | None
    num_files: int
    cur_size: BigInt
    cloneable: bool
    status: str

    @classmethod
    def of(cls, f: pb.VFolder) -> VirtualFolder:
        is_user = bool(f.owner_user_id)
        created = f.create_time.ToDatetime(tzinfo=UTC) if f.HasField("create_time") else None
        return cls(
            id=UUID(f.id), host=f.volume,
            quota_scope_id=(f"user:{f.owner_user_id}" if is_user
                            else f"project:{f.owner_project_id}"),
            name=f.name, user=UUID(f.owner_user_id) if is_user else None,
            user_email=f.creator_email if is_user else None,
            group=None if is_user else UUID(f.owner_project_id),
            group_name=f.project_name or None, creator=f.creator_email, unmanaged_path=None,
            usage_mode=f.usage_mode,
            permission=_PERMISSIONS.get(f.access_permission or f.permission, "rw"),
            ownership_type="user" if is_user else "group", max_files=0,
            max_size=BigInt(f.quota_bytes // 2**20) if f.quota_bytes else None,
            created_at=created, last_used=None, num_files=f.file_count,
            cur_size=BigInt(f.used_bytes), cloneable=f.cloneable, status=f.status)


@strawberry.type
class VirtualFolderList:
    items: list[VirtualFolder]
    total_count: int


async def _call(ctx: _Context, method: str, message: Any) -> Any:
    try:
        return await ctx.up.unary[_SERVICE + method](
            message, metadata=ctx.metadata, deadline=ctx.up.config.call_timeout)
    except grpc.aio.AioRpcError as exc:
        raise graphql_error(exc) from None


def _check_page(limit: int, offset: int, **unsupported: Any) -> None:
    for name, value in unsupported.items():
        if value is not None:
            raise GraphQLError(f"argument {name!r} is not supported by this server",
                               extensions={"code": "INVALID_ARGUMENT"})
    if not 1 <= limit <= _MAX_LIMIT or offset < 0:
        raise GraphQLError(f"limit must be between 1 and {_MAX_LIMIT}, offset >= 0",
                           extensions={"code": "INVALID_ARGUMENT"})


async def _folders(info: strawberry.Info[Any, None], project: str,
                   trash: bool) -> list[pb.VFolder]:
    ctx: _Context = info.context
    live = await _call(ctx, "ListVFolders", pb.ListVFoldersRequest(project_id=project))
    folders = list(live.vfolders)
    if trash:
        trashed = await _call(ctx, "ListTrashedVFolders", pb.ListTrashedVFoldersRequest())
        folders += [f for f in trashed.vfolders if not project or f.owner_project_id == project]
    return folders


def _page(folders: list[pb.VFolder], limit: int, offset: int) -> VirtualFolderList:
    items = [VirtualFolder.of(f) for f in folders]
    return VirtualFolderList(items=items[offset:offset + limit], total_count=len(items))


@strawberry.type
class VFolderQuery:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Folders the caller may access (live, then trashed), by name.")
    async def vfolder_list(
        self, info: strawberry.Info[Any, None], limit: int, offset: int,
        group_id: UUID | None = None, filter: str | None = None, order: str | None = None,
        domain_name: str | None = None, user_id: UUID | None = None,
    ) -> VirtualFolderList:
        _check_page(limit, offset, filter=filter, order=order, user_id=user_id)
        folders = await _folders(info, str(group_id) if group_id else "", trash=True)
        return _page(folders, limit, offset)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="The caller's own user folders (``vfolder list-own``).")
    async def vfolder_own_list(
        self, info: strawberry.Info[Any, None], limit: int, offset: int,
        filter: str | None = None, order: str | None = None, domain_name: str | None = None,
    ) -> VirtualFolderList:
        _check_page(limit, offset, filter=filter, order=order)
        folders = await _folders(info, "", trash=True)
        return _page([f for f in folders if f.is_owner], limit, offset)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="User folders shared with the caller (``vfolder list-invited``).")
    async def vfolder_invited_list(
        self, info: strawberry.Info[Any, None], limit: int, offset: int,
        filter: str | None = None, order: str | None = None, domain_name: str | None = None,
    ) -> VirtualFolderList:
        _check_page(limit, offset, filter=filter, order=order)
        folders = await _folders(info, "", trash=False)
        return _page([f for f in folders if f.owner_user_id and not f.is_owner], limit, offset)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Project folders of the caller's projects (``vfolder list-project``).")
    async def vfolder_project_list(
        self, info: strawberry.Info[Any, None], limit: int, offset: int,
        filter: str | None = None, order: str | None = None, domain_name: str | None = None,
    ) -> VirtualFolderList:
        _check_page(limit, offset, filter=filter, order=order)
        folders = await _folders(info, "", trash=True)
        return _page([f for f in folders if f.owner_project_id], limit, offset)
