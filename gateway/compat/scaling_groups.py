"""``GET /scaling-groups?group=...``: the resource groups the caller may start sessions in for a
project (Backend.AI's ``list_available``; the WebUI and ``backend.ai admin scaling-group
get-available`` use it).

The manager decides which groups the caller may see; this route keeps the active ones whose
access lists admit the project (a project id, or a project name of the caller's domain).
"""

from __future__ import annotations

import uuid
from typing import Any

from bai.common import errors
from bai.gateway.deps import UpstreamDep
from bai.gateway.upstream import Unary, Upstream, method_path
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import resource_group_service_pb2 as rg_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as tenancy_pb
from fastapi import APIRouter
from google.protobuf.message import Message
from starlette.requests import Request

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])
_GROUPS = rg_pb.DESCRIPTOR.services_by_name["ResourceGroupService"]
_TENANCY = tenancy_pb.DESCRIPTOR.services_by_name["TenancyService"]


async def _call(up: Upstream, request: Request, service: Any, module: Any, method: str,
                message: Message) -> Any:
    descriptor = service.methods_by_name[method]
    call: Unary[Any] = Unary(up.channel, method_path(descriptor),
                             getattr(module, descriptor.output_type.name))
    return await call(message, metadata=up.metadata(request), deadline=up.config.call_timeout)


async def _project_key(up: Upstream, request: Request, group: str) -> tuple[str, str]:
    try:
        project_id = uuid.UUID(group)
    except ValueError:
        me = await _call(up, request, _TENANCY, tenancy_pb, "GetUser", tenancy_pb.GetUserRequest())
        return me.user.domain, group
    found = await _call(up, request, _TENANCY, tenancy_pb, "GetProject",
                        tenancy_pb.GetProjectRequest(id=str(project_id)))
    return found.project.domain, found.project.name


def _admits(g: rg_pb.ResourceGroup, domain: str, project: str) -> bool:
    if g.allowed_domains and domain not in g.allowed_domains:
        return False
    return not g.allowed_projects or f"{domain}/{project}" in g.allowed_projects


@router.get("/scaling-groups", summary="Resource groups usable in a project")
async def list_available(request: Request, up: UpstreamDep, group: str = "") -> dict[str, Any]:
    if not group.strip():
        raise errors.InvalidArgument("the query parameter 'group' (a project id or name) is "
                                     "required", reason="MISSING_PROJECT")
    domain, project = await _project_key(up, request, group.strip())
    reply = await _call(up, request, _GROUPS, rg_pb, "ListResourceGroups",
                        rg_pb.ListResourceGroupsRequest(page=admin_pb.PageRequest(limit=1000),
                                                        is_active=True))
    return {"scaling_groups": [{"name": g.name} for g in reply.resource_groups
                               if _admits(g, domain, project)]}
