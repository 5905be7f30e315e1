"""GraphQL for user and project resource policies: Backend.AI's ``user_resource_policy(s)`` and
``project_resource_policy(s)`` queries and their ``create_/modify_/delete_`` mutations, each one
call to the manager's TenancyService (kinds USER and PROJECT).

Names, arguments and payloads are Backend.AI's (``create_user_resource_policy(name, props)``
returning ``{ok msg resource_policy}``, ``modify_...`` and ``delete_...`` returning ``{ok msg}``),
so the official client's ``UserResourcePolicy`` functions work unchanged. Refusals follow
:mod:`bai.gateway.admin.tenancy_gql`: ``ok: false`` with ``"REASON: message"`` (an unknown
policy is ``RESOURCE_POLICY_NOT_FOUND``, one still referenced ``RESOURCE_POLICY_IN_USE``), and
a GraphQL error for authentication and permission failures (only superadmins change policies).
Backend.AI's deprecated ``max_vfolder_size`` is read as ``max_quota_scope_size`` when that is not
given, and answered with the same value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from bai.gateway.admin.tenancy_gql import Failed, call, change, simple
from bai.gateway.admin.tenancy_gql_types import SimplePayload, timestamp
from bai.gateway.admin.vfolders_gql import BigInt
from bai.pb.manager.v1 import tenancy_service_pb2 as pb

__all__ = [
    "CreateProjectResourcePolicyInput",
    "CreateProjectResourcePolicyPayload",
    "CreateUserResourcePolicyInput",
    "CreateUserResourcePolicyPayload",
    "ModifyProjectResourcePolicyInput",
    "ModifyUserResourcePolicyInput",
    "PolicyMutation",
    "PolicyQuery",
    "ProjectResourcePolicy",
    "UserResourcePolicy",
]

_USER, _PROJECT = pb.RESOURCE_POLICY_KIND_USER, pb.RESOURCE_POLICY_KIND_PROJECT
_USER_LIMITS = ("max_vfolder_count", "max_quota_scope_size",
                "max_session_count_per_model_session", "max_customized_image_count")
_PROJECT_LIMITS = ("max_vfolder_count", "max_quota_scope_size", "max_network_count")


@strawberry.type
class UserResourcePolicy:
    id: strawberry.ID
    """The name (Backend.AI's id of a user resource policy)."""
    name: str
    created_at: datetime | None
    max_vfolder_count: int
    max_quota_scope_size: BigInt
    """Bytes; -1 = unlimited."""
    max_vfolder_size: BigInt
    """Deprecated alias of max_quota_scope_size."""
    max_session_count_per_model_session: int
    max_customized_image_count: int

    @classmethod
    def of(cls, p: pb.ResourcePolicy) -> UserResourcePolicy:
        limits = dict(p.limits)
        quota = BigInt(limits.get("max_quota_scope_size", -1))
        return cls(id=strawberry.ID(p.name), name=p.name, created_at=timestamp(p.create_time),
                   max_vfolder_count=limits.get("max_vfolder_count", 0),
                   max_quota_scope_size=quota, max_vfolder_size=quota,
                   max_session_count_per_model_session=limits.get(
                       "max_session_count_per_model_session", 0),
                   max_customized_image_count=limits.get("max_customized_image_count", 0))


@strawberry.type
class ProjectResourcePolicy:
    id: strawberry.ID
    """The name (Backend.AI's id of a project resource policy)."""
    name: str
    created_at: datetime | None
    max_vfolder_count: int
    max_quota_scope_size: BigInt
    """Bytes; -1 = unlimited."""
    max_vfolder_size: BigInt
    """Deprecated alias of max_quota_scope_size."""
    max_network_count: int

    @classmethod
    def of(cls, p: pb.ResourcePolicy) -> ProjectResourcePolicy:
        limits = dict(p.limits)
        quota = BigInt(limits.get("max_quota_scope_size", -1))
        return cls(id=strawberry.ID(p.name), name=p.name, created_at=timestamp(p.create_time),
                   max_vfolder_count=limits.get("max_vfolder_count", 0),
                   max_quota_scope_size=quota, max_vfolder_size=quota,
                   max_network_count=limits.get("max_network_count", 0))


@strawberry.input
class CreateUserResourcePolicyInput:
    """Omitted limits take the manager's defaults (0 folders, unlimited quota, 10, 3)."""

    max_vfolder_count: int | None = None
    max_quota_scope_size: BigInt | None = None
    max_vfolder_size: BigInt | None = None
    max_session_count_per_model_session: int | None = None
    max_customized_image_count: int | None = None


@strawberry.input
class ModifyUserResourcePolicyInput:
    max_vfolder_count: int | None = None
    max_quota_scope_size: BigInt | None = None
    max_vfolder_size: BigInt | None = None
    max_session_count_per_model_session: int | None = None
    max_customized_image_count: int | None = None


@strawberry.input
class CreateProjectResourcePolicyInput:
    """Omitted limits take the manager's defaults (0 folders, unlimited quota, 3 networks)."""

    max_vfolder_count: int | None = None
    max_quota_scope_size: BigInt | None = None
    max_vfolder_size: BigInt | None = None
    max_network_count: int | None = None


@strawberry.input
class ModifyProjectResourcePolicyInput:
    max_vfolder_count: int | None = None
    max_quota_scope_size: BigInt | None = None
    max_vfolder_size: BigInt | None = None
    max_network_count: int | None = None


@strawberry.type
class CreateUserResourcePolicyPayload:
    ok: bool
    msg: str
    resource_policy: UserResourcePolicy | None


@strawberry.type
class CreateProjectResourcePolicyPayload:
    ok: bool
    msg: str
    resource_policy: ProjectResourcePolicy | None


def _limits(props: Any, names: tuple[str, ...]) -> dict[str, int]:
    """The limits the input sets (the deprecated max_vfolder_size stands in for the quota)."""
    limits = {n: int(getattr(props, n)) for n in names if getattr(props, n) is not None}
    if "max_quota_scope_size" not in limits and props.max_vfolder_size is not None:
        limits["max_quota_scope_size"] = int(props.max_vfolder_size)
    return limits


async def _list(info: strawberry.Info[Any, None],
                kind: pb.ResourcePolicyKind) -> list[pb.ResourcePolicy]:
    reply = await call(info, "ListResourcePolicies", pb.ListResourcePoliciesRequest(kind=kind))
    return list(reply.resource_policies)


async def _create(info: strawberry.Info[Any, None], kind: pb.ResourcePolicyKind, name: str,
                  limits: dict[str, int]) -> pb.ResourcePolicy | Failed:
    reply = await change(info, "CreateResourcePolicy", pb.CreateResourcePolicyRequest(
        resource_policy=pb.ResourcePolicy(kind=kind, name=name, limits=limits)))
    return reply if isinstance(reply, Failed) else reply.resource_policy


async def _modify(info: strawberry.Info[Any, None], kind: pb.ResourcePolicyKind, name: str,
                  limits: dict[str, int]) -> SimplePayload:
    return simple(await change(info, "UpdateResourcePolicy", pb.UpdateResourcePolicyRequest(
        kind=kind, name=name, limits=limits)))


async def _delete(info: strawberry.Info[Any, None], kind: pb.ResourcePolicyKind,
                  name: str) -> SimplePayload:
    return simple(await change(info, "DeleteResourcePolicy", pb.DeleteResourcePolicyRequest(
        kind=kind, name=name)))


@strawberry.type
class PolicyQuery:
    @strawberry.field(description="User resource policies.")  # type: ignore[untyped-decorator]
    async def user_resource_policies(
            self, info: strawberry.Info[Any, None]) -> list[UserResourcePolicy]:
        return [UserResourcePolicy.of(p) for p in await _list(info, _USER)]

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="One user resource policy by name (the caller's when none is given).")
    async def user_resource_policy(self, info: strawberry.Info[Any, None],
                                   name: str | None = None) -> UserResourcePolicy | None:
        if name is None:
            own = await call(info, "GetUser", pb.GetUserRequest())  # the caller
            name = own.user.resource_policy or "default"
        return next((UserResourcePolicy.of(p) for p in await _list(info, _USER)
                     if p.name == name), None)

    @strawberry.field(description="Project resource policies.")  # type: ignore[untyped-decorator]
    async def project_resource_policies(
            self, info: strawberry.Info[Any, None]) -> list[ProjectResourcePolicy]:
        return [ProjectResourcePolicy.of(p) for p in await _list(info, _PROJECT)]

    @strawberry.field(description="One project resource policy by name.")  # type: ignore[untyped-decorator]
    async def project_resource_policy(self, info: strawberry.Info[Any, None],
                                      name: str) -> ProjectResourcePolicy | None:
        return next((ProjectResourcePolicy.of(p) for p in await _list(info, _PROJECT)
                     if p.name == name), None)


@strawberry.type
class PolicyMutation:
    @strawberry.mutation
    async def create_user_resource_policy(
            self, info: strawberry.Info[Any, None], name: str,
            props: CreateUserResourcePolicyInput) -> CreateUserResourcePolicyPayload:
        made = await _create(info, _USER, name, _limits(props, _USER_LIMITS))
        if isinstance(made, Failed):
            return CreateUserResourcePolicyPayload(ok=False, msg=made.msg, resource_policy=None)
        return CreateUserResourcePolicyPayload(ok=True, msg="success",
                                               resource_policy=UserResourcePolicy.of(made))

    @strawberry.mutation
    async def modify_user_resource_policy(self, info: strawberry.Info[Any, None], name: str,
                                          props: ModifyUserResourcePolicyInput) -> SimplePayload:
        return await _modify(info, _USER, name, _limits(props, _USER_LIMITS))

    @strawberry.mutation
    async def delete_user_resource_policy(self, info: strawberry.Info[Any, None],
                                          name: str) -> SimplePayload:
        return await _delete(info, _USER, name)

    @strawberry.mutation
    async def create_project_resource_policy(
            self, info: strawberry.Info[Any, None], name: str,
            props: CreateProjectResourcePolicyInput) -> CreateProjectResourcePolicyPayload:
        made = await _create(info, _PROJECT, name, _limits(props, _PROJECT_LIMITS))
        if isinstance(made, Failed):
            return CreateProjectResourcePolicyPayload(ok=False, msg=made.msg,
                                                      resource_policy=None)
        return CreateProjectResourcePolicyPayload(
            ok=True, msg="success", resource_policy=ProjectResourcePolicy.of(made))

    @strawberry.mutation
    async def modify_project_resource_policy(
            self, info: strawberry.Info[Any, None], name: str,
            props: ModifyProjectResourcePolicyInput) -> SimplePayload:
        return await _modify(info, _PROJECT, name, _limits(props, _PROJECT_LIMITS))

    @strawberry.mutation
    async def delete_project_resource_policy(self, info: strawberry.Info[Any, None],
                                             name: str) -> SimplePayload:
        return await _delete(info, _PROJECT, name)
