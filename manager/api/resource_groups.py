"""ResourceGroupService servicer: convert, call one domain method, convert back."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from bai.common.struct_values import plain
from bai.manager.api.admin import _ts, agent_to_proto
from bai.manager.api.interceptor import principal
from bai.manager.domain.admin import page_of
from bai.manager.domain.resource_groups import (
    NewResourceGroup,
    ResourceGroupService,
    ResourceGroupView,
    WeightView,
)
from bai.pb.manager.v1 import resource_group_service_pb2 as pb
from bai.pb.manager.v1 import resource_group_service_pb2_grpc as pb_grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

__all__ = ["ResourceGroupServicer", "group_to_proto", "weight_to_proto"]

Context: TypeAlias = grpc.aio.ServicerContext
_SCOPES = {pb.FAIR_SHARE_SCOPE_PROJECT: "project", pb.FAIR_SHARE_SCOPE_USER: "user"}
_SCOPE_VALUES = {v: k for k, v in _SCOPES.items()}


def options_from_proto(struct: Struct) -> dict[str, Any]:
    return {str(k): plain(v) for k, v in json_format.MessageToDict(struct).items()}


def _struct(options: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(options)
    return struct


def group_to_proto(g: ResourceGroupView) -> pb.ResourceGroup:
    return pb.ResourceGroup(
        name=g.name, description=g.description, is_active=g.is_active, scheduler=g.scheduler,
        agent_selector=g.agent_selector, scheduler_options=_struct(g.scheduler_opts),
        allowed_domains=g.allowed_domains, allowed_projects=g.allowed_projects,
        create_time=_ts(g.created_at), agent_count=g.agent_count,
        pending_session_count=g.pending_session_count)


def weight_to_proto(w: WeightView) -> pb.FairShareWeight:
    return pb.FairShareWeight(scope=_SCOPE_VALUES[w.scope], subject=w.subject,
                              weight=str(w.weight))


def _changes(request: pb.UpdateResourceGroupRequest) -> dict[str, Any]:
    changes: dict[str, Any] = {n: getattr(request, n) for n in (
        "description", "is_active", "scheduler", "agent_selector") if request.HasField(n)}
    if request.HasField("scheduler_options"):
        changes["scheduler_opts"] = options_from_proto(request.scheduler_options)
    if request.replace_allowed_domains:
        changes["allowed_domains"] = list(request.allowed_domains)
    if request.replace_allowed_projects:
        changes["allowed_projects"] = list(request.allowed_projects)
    return changes


class ResourceGroupServicer(pb_grpc.ResourceGroupServiceServicer):
    def __init__(self, groups: ResourceGroupService) -> None:
        self._g = groups

    async def ListResourceGroups(self, request: pb.ListResourceGroupsRequest,
                                 context: Context) -> pb.ListResourceGroupsResponse:
        is_active = request.is_active if request.HasField("is_active") else None
        items, total = await self._g.list_groups(
            principal(), is_active, page_of(request.page.offset, request.page.limit))
        return pb.ListResourceGroupsResponse(resource_groups=[group_to_proto(g) for g in items],
                                             total_count=total)

    async def GetResourceGroup(self, request: pb.GetResourceGroupRequest,
                               context: Context) -> pb.GetResourceGroupResponse:
        group = await self._g.get_group(principal(), request.name)
        return pb.GetResourceGroupResponse(resource_group=group_to_proto(group))

    async def CreateResourceGroup(self, request: pb.CreateResourceGroupRequest,
                                  context: Context) -> pb.CreateResourceGroupResponse:
        group = await self._g.create_group(principal(), NewResourceGroup(
            name=request.name, description=request.description,
            is_active=request.is_active if request.HasField("is_active") else True,
            scheduler=request.scheduler, agent_selector=request.agent_selector,
            scheduler_opts=options_from_proto(request.scheduler_options),
            allowed_domains=tuple(request.allowed_domains),
            allowed_projects=tuple(request.allowed_projects)))
        return pb.CreateResourceGroupResponse(resource_group=group_to_proto(group))

    async def UpdateResourceGroup(self, request: pb.UpdateResourceGroupRequest,
                                  context: Context) -> pb.UpdateResourceGroupResponse:
        group = await self._g.update_group(principal(), request.name, _changes(request))
        return pb.UpdateResourceGroupResponse(resource_group=group_to_proto(group))

    async def DeleteResourceGroup(self, request: pb.DeleteResourceGroupRequest,
                                  context: Context) -> pb.DeleteResourceGroupResponse:
        await self._g.delete_group(principal(), request.name)
        return pb.DeleteResourceGroupResponse()

    async def AddResourceGroupAccess(self, request: pb.AddResourceGroupAccessRequest,
                                     context: Context) -> pb.AddResourceGroupAccessResponse:
        group = await self._g.change_access(principal(), request.name, add=True,
                                            domains=list(request.domains),
                                            projects=list(request.projects))
        return pb.AddResourceGroupAccessResponse(resource_group=group_to_proto(group))

    async def RemoveResourceGroupAccess(
            self, request: pb.RemoveResourceGroupAccessRequest,
            context: Context) -> pb.RemoveResourceGroupAccessResponse:
        group = await self._g.change_access(principal(), request.name, add=False,
                                            domains=list(request.domains),
                                            projects=list(request.projects))
        return pb.RemoveResourceGroupAccessResponse(resource_group=group_to_proto(group))

    async def ListResourceGroupAgents(
            self, request: pb.ListResourceGroupAgentsRequest,
            context: Context) -> pb.ListResourceGroupAgentsResponse:
        items, total = await self._g.agents(principal(), request.name,
                                            page_of(request.page.offset, request.page.limit))
        return pb.ListResourceGroupAgentsResponse(agents=[agent_to_proto(a) for a in items],
                                                  total_count=total)

    async def ListFairShareWeights(self, request: pb.ListFairShareWeightsRequest,
                                   context: Context) -> pb.ListFairShareWeightsResponse:
        scope = None if request.scope == pb.FAIR_SHARE_SCOPE_UNSPECIFIED else _SCOPES.get(
            request.scope, f"#{request.scope}")  # an unknown number: the domain refuses it
        items, total = await self._g.weights(principal(), scope,
                                             page_of(request.page.offset, request.page.limit))
        return pb.ListFairShareWeightsResponse(weights=[weight_to_proto(w) for w in items],
                                               total_count=total)

    async def SetFairShareWeight(self, request: pb.SetFairShareWeightRequest,
                                 context: Context) -> pb.SetFairShareWeightResponse:
        weight = await self._g.set_weight(principal(), _SCOPES.get(request.scope, "unspecified"),
                                          request.subject, request.weight)
        return pb.SetFairShareWeightResponse(weight=weight_to_proto(weight))
