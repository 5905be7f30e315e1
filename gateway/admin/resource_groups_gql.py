"""GraphQL for resource groups: Backend.AI's ``scaling_group(s)`` queries and scaling-group
mutations, each resolver one call to the manager's ResourceGroupService.

Names, arguments and payloads are Backend.AI's (``create_scaling_group(name, props)`` returning
``{ok msg scaling_group}``, ``associate_scaling_group_with_domain(scaling_group, domain)``...), so
the official client's ``admin scaling-group`` commands work unchanged. As in tenancy_gql, a
refused change is ``ok: false`` with ``"REASON: message"`` in ``msg``; an authentication or
permission failure is a GraphQL error with ``extensions.code`` / ``extensions.reason``.

Mapping to bai: Backend.AI picks the agent selector with ``scheduler_opts.agent_selection_strategy``
(``dispersed``, ``concentrated``, ``roundrobin``); here it becomes the group's ``agent_selector``
(also readable as its own field). bai has no scaling drivers, private groups, host networking or
per-group app proxies: ``driver`` must be ``static`` with empty ``driver_opts``, and the other
options are refused when set to anything but their defaults rather than silently ignored.
Beyond Backend.AI's fields, a group shows ``agent_selector``, ``allowed_domains``,
``allowed_projects``, ``agent_count`` and ``pending_session_count``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import grpc
import strawberry
from bai.common import rpc
from bai.common.struct_values import plain
from bai.gateway.admin.calls import graphql_error
from bai.gateway.admin.tenancy_gql_types import SimplePayload, timestamp
from bai.gateway.upstream import Unary, method_path
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import resource_group_service_pb2 as pb
from bai.pb.manager.v1 import tenancy_service_pb2 as tenancy_pb
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from graphql import GraphQLError

__all__ = ["ResourceGroupMutation", "ResourceGroupQuery", "ScalingGroup"]

_SERVICE = pb.DESCRIPTOR.services_by_name["ResourceGroupService"]
_RAISED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_SELECTORS = {"roundrobin": "round-robin"}
"""Backend.AI's agent_selection_strategy names that differ from bai's plugin names."""
_ALL = admin_pb.PageRequest(limit=1000)


@dataclass(frozen=True, slots=True)
class Failed:
    """A refused change: the payload's ``msg``."""

    msg: str


async def _raw(info: strawberry.Info[Any, None], method: str, request: Message) -> Any:
    ctx = info.context
    descriptor = _SERVICE.methods_by_name[method]
    call: Unary[Any] = Unary(ctx.up.channel, method_path(descriptor),
                             getattr(pb, descriptor.output_type.name))
    return await call(request, metadata=ctx.metadata, deadline=ctx.up.config.call_timeout)


async def _tenancy(info: strawberry.Info[Any, None], method: str, request: Message) -> Any:
    ctx = info.context
    try:
        return await ctx.calls.tenancy(method, request, ctx.metadata)
    except grpc.aio.AioRpcError as exc:
        raise graphql_error(exc) from None


async def _call(info: strawberry.Info[Any, None], method: str, request: Message) -> Any:
    try:
        return await _raw(info, method, request)
    except grpc.aio.AioRpcError as exc:
        raise graphql_error(exc) from None


async def _change(info: strawberry.Info[Any, None], method: str, request: Message) -> Any:
    """Like :func:`_call`, but a refusal other than auth/permission becomes ``Failed``."""
    try:
        return await _raw(info, method, request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in _RAISED:
            raise graphql_error(exc) from None
        err = rpc.error_from_rpc(exc)
        return Failed(f"{err.reason}: {err.message}")


def _simple(result: Any) -> SimplePayload:
    if isinstance(result, Failed):
        return SimplePayload(ok=False, msg=result.msg)
    return SimplePayload(ok=True, msg="success")


def _invalid(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_ARGUMENT"})


def _options(value: str | None) -> dict[str, Any] | None:
    """A JSON object of options (the client sends them JSON-encoded); None when absent."""
    if value is None:
        return None
    try:
        parsed = json.loads(value) if value.strip() else {}
    except ValueError:
        raise _invalid("scheduler_opts is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _invalid("scheduler_opts must be a JSON object")
    return parsed


def _split_selector(options: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Backend.AI keeps the agent selector in the options; bai keeps it beside them."""
    options = dict(options)
    strategy = options.pop("agent_selection_strategy", None)
    if strategy is None:
        return options, None
    name = str(strategy).lower()
    return options, _SELECTORS.get(name, name)


def _struct(options: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(options)
    return struct


def _unsupported(driver: str | None, driver_opts: str | None, is_public: bool | None,
                 use_host_network: bool | None, wsproxy_addr: str | None,
                 wsproxy_api_token: str | None) -> None:
    if driver not in (None, "", "static"):
        raise _invalid(f"driver {driver!r} is not supported by this server (only 'static')")
    if driver_opts not in (None, "", "{}") and _options(driver_opts):
        raise _invalid("driver_opts are not supported by this server")
    if is_public is False:
        raise _invalid("private scaling groups are not supported by this server")
    if use_host_network:
        raise _invalid("use_host_network is not supported by this server")
    if wsproxy_addr or wsproxy_api_token:
        raise _invalid("per-group wsproxy settings are not supported by this server "
                       "(the app proxy is configured on the manager)")


# ---- types ---------------------------------------------------------------------------------


@strawberry.type
class ScalingGroup:
    name: str
    description: str
    is_active: bool
    is_public: bool
    created_at: datetime | None
    driver: str
    driver_opts: str
    """JSON text (always ``{}``)."""
    scheduler: str
    scheduler_opts: str
    """JSON text."""
    use_host_network: bool
    wsproxy_addr: str | None
    wsproxy_api_token: str | None
    agent_selector: str
    allowed_domains: list[str]
    allowed_projects: list[str]
    """``domain/project`` names."""
    agent_count: int
    pending_session_count: int

    @classmethod
    def of(cls, g: pb.ResourceGroup) -> ScalingGroup:
        return cls(
            name=g.name, description=g.description, is_active=g.is_active, is_public=True,
            created_at=timestamp(g.create_time), driver="static", driver_opts="{}",
            scheduler=g.scheduler,
            scheduler_opts=json.dumps(plain(json_format.MessageToDict(g.scheduler_options))),
            use_host_network=False, wsproxy_addr=None, wsproxy_api_token=None,
            agent_selector=g.agent_selector, allowed_domains=list(g.allowed_domains),
            allowed_projects=list(g.allowed_projects), agent_count=g.agent_count,
            pending_session_count=g.pending_session_count)


@strawberry.input
class CreateScalingGroupInput:
    description: str | None = ""
    is_active: bool | None = True
    is_public: bool | None = True
    driver: str | None = "static"
    driver_opts: str | None = "{}"
    scheduler: str | None = "fifo"
    scheduler_opts: str | None = "{}"
    """JSON text; ``agent_selection_strategy`` in it picks the agent selector."""
    use_host_network: bool | None = False
    wsproxy_addr: str | None = None
    wsproxy_api_token: str | None = None


@strawberry.input
class ModifyScalingGroupInput:
    description: str | None = None
    is_active: bool | None = None
    is_public: bool | None = None
    driver: str | None = None
    driver_opts: str | None = None
    scheduler: str | None = None
    scheduler_opts: str | None = None
    use_host_network: bool | None = None
    wsproxy_addr: str | None = None
    wsproxy_api_token: str | None = None


@strawberry.type
class CreateScalingGroupPayload:
    ok: bool
    msg: str
    scaling_group: ScalingGroup | None


# ---- queries -------------------------------------------------------------------------------


async def _groups(info: strawberry.Info[Any, None]) -> list[pb.ResourceGroup]:
    reply = await _call(info, "ListResourceGroups", pb.ListResourceGroupsRequest(page=_ALL))
    return list(reply.resource_groups)


@strawberry.type
class ResourceGroupQuery:
    @strawberry.field(description="Resource (scaling) groups visible to the caller.")  # type: ignore[untyped-decorator]
    async def scaling_groups(self, info: strawberry.Info[Any, None], name: str | None = None,
                             is_active: bool | None = None) -> list[ScalingGroup]:
        return [ScalingGroup.of(g) for g in await _groups(info)
                if (is_active is None or g.is_active == is_active)
                and (name is None or g.name == name)]

    @strawberry.field(description="One resource (scaling) group; null when not visible.")  # type: ignore[untyped-decorator]
    async def scaling_group(self, info: strawberry.Info[Any, None],
                            name: str | None = None) -> ScalingGroup | None:
        if not name:
            raise _invalid("name is required")
        try:
            reply = await _raw(info, "GetResourceGroup", pb.GetResourceGroupRequest(name=name))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise graphql_error(exc) from None
        return ScalingGroup.of(reply.resource_group)

    @strawberry.field(description="Groups a domain may use (listed, or open to all).")  # type: ignore[untyped-decorator]
    async def scaling_groups_for_domain(self, info: strawberry.Info[Any, None], domain: str,
                                        is_active: bool | None = None) -> list[ScalingGroup]:
        return [ScalingGroup.of(g) for g in await _groups(info)
                if (not g.allowed_domains or domain in g.allowed_domains)
                and (not g.allowed_projects
                     or any(p.startswith(f"{domain}/") for p in g.allowed_projects))
                and (is_active is None or g.is_active == is_active)]


    @strawberry.field(description="Groups a project (user group, by id) may use.")  # type: ignore[untyped-decorator]
    async def scaling_groups_for_user_group(
            self, info: strawberry.Info[Any, None], user_group: str,
            is_active: bool | None = None) -> list[ScalingGroup]:
        found = await _tenancy(info, "GetProject", tenancy_pb.GetProjectRequest(id=user_group))
        key = f"{found.project.domain}/{found.project.name}"
        return [ScalingGroup.of(g) for g in await _groups(info)
                if (not g.allowed_domains or found.project.domain in g.allowed_domains)
                and (not g.allowed_projects or key in g.allowed_projects)
                and (is_active is None or g.is_active == is_active)]


# ---- mutations -----------------------------------------------------------------------------


def _create_request(name: str, props: CreateScalingGroupInput) -> pb.CreateResourceGroupRequest:
    _unsupported(props.driver, props.driver_opts, props.is_public, props.use_host_network,
                 props.wsproxy_addr, props.wsproxy_api_token)
    options, selector = _split_selector(_options(props.scheduler_opts) or {})
    return pb.CreateResourceGroupRequest(
        name=name, description=props.description or "",
        is_active=props.is_active is not False, scheduler=props.scheduler or "",
        agent_selector=selector or "", scheduler_options=_struct(options))


def _modify_request(name: str, props: ModifyScalingGroupInput) -> pb.UpdateResourceGroupRequest:
    _unsupported(props.driver, props.driver_opts, props.is_public, props.use_host_network,
                 props.wsproxy_addr, props.wsproxy_api_token)
    request = pb.UpdateResourceGroupRequest(name=name)
    for field in ("description", "is_active", "scheduler"):
        value = getattr(props, field)
        if value is not None:
            setattr(request, field, value)
    parsed = _options(props.scheduler_opts)
    if parsed is not None:
        options, selector = _split_selector(parsed)
        request.scheduler_options.CopyFrom(_struct(options))
        if selector is not None:
            request.agent_selector = selector
    return request


async def _remove_everywhere(info: strawberry.Info[Any, None], *, domain: str = "",
                             project: str = "") -> SimplePayload:
    """Takes one domain or project off every group's list (Backend.AI's disassociate_all)."""
    for group in await _groups(info):
        listed = group.allowed_domains if domain else group.allowed_projects
        if not listed:
            continue
        result = await _change(info, "RemoveResourceGroupAccess",
                               pb.RemoveResourceGroupAccessRequest(
                                   name=group.name, domains=[domain] if domain else [],
                                   projects=[project] if project else []))
        if isinstance(result, Failed):
            return _simple(result)
    return SimplePayload(ok=True, msg="success")


@strawberry.type
class ResourceGroupMutation:
    @strawberry.mutation
    async def create_scaling_group(self, info: strawberry.Info[Any, None], name: str,
                                   props: CreateScalingGroupInput) -> CreateScalingGroupPayload:
        reply = await _change(info, "CreateResourceGroup", _create_request(name, props))
        if isinstance(reply, Failed):
            return CreateScalingGroupPayload(ok=False, msg=reply.msg, scaling_group=None)
        return CreateScalingGroupPayload(ok=True, msg="success",
                                         scaling_group=ScalingGroup.of(reply.resource_group))

    @strawberry.mutation
    async def modify_scaling_group(self, info: strawberry.Info[Any, None], name: str,
                                   props: ModifyScalingGroupInput) -> SimplePayload:
        return _simple(await _change(info, "UpdateResourceGroup", _modify_request(name, props)))

    @strawberry.mutation
    async def delete_scaling_group(self, info: strawberry.Info[Any, None],
                                   name: str) -> SimplePayload:
        return _simple(await _change(info, "DeleteResourceGroup",
                                     pb.DeleteResourceGroupRequest(name=name)))

    @strawberry.mutation
    async def associate_scaling_group_with_domain(
            self, info: strawberry.Info[Any, None], scaling_group: str,
            domain: str) -> SimplePayload:
        return _simple(await _change(info, "AddResourceGroupAccess",
                                     pb.AddResourceGroupAccessRequest(name=scaling_group,
                                                                      domains=[domain])))

    @strawberry.mutation
    async def disassociate_scaling_group_with_domain(
            self, info: strawberry.Info[Any, None], scaling_group: str,
            domain: str) -> SimplePayload:
        return _simple(await _change(info, "RemoveResourceGroupAccess",
                                     pb.RemoveResourceGroupAccessRequest(name=scaling_group,
                                                                         domains=[domain])))

    @strawberry.mutation
    async def associate_scaling_group_with_user_group(
            self, info: strawberry.Info[Any, None], scaling_group: str,
            user_group: UUID) -> SimplePayload:
        return _simple(await _change(info, "AddResourceGroupAccess",
                                     pb.AddResourceGroupAccessRequest(
                                         name=scaling_group, projects=[str(user_group)])))

    @strawberry.mutation(description="user_group: a project id, typed String because the "  # type: ignore[untyped-decorator]
                                      "official client declares it so for this mutation.")
    async def disassociate_scaling_group_with_user_group(
            self, info: strawberry.Info[Any, None], scaling_group: str,
            user_group: str) -> SimplePayload:
        return _simple(await _change(info, "RemoveResourceGroupAccess",
                                     pb.RemoveResourceGroupAccessRequest(
                                         name=scaling_group, projects=[str(user_group)])))

    @strawberry.mutation
    async def disassociate_all_scaling_groups_with_domain(
            self, info: strawberry.Info[Any, None], domain: str) -> SimplePayload:
        return await _remove_everywhere(info, domain=domain)

    @strawberry.mutation
    async def disassociate_all_scaling_groups_with_group(
            self, info: strawberry.Info[Any, None], user_group: UUID) -> SimplePayload:
        return await _remove_everywhere(info, project=str(user_group))
