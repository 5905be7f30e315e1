"""GraphQL for tenancy: Backend.AI's domain/group/user/keypair/keypair-resource-policy queries
and admin mutations (``purge_user`` included), and the audit log, each resolver one call to the
manager's TenancyService. User and project resource policies are in
:mod:`bai.gateway.admin.policies_gql`, which shares :func:`call`, :func:`change` and
:func:`simple` from here.

Mutation names, arguments and payloads are Backend.AI's (``create_user(email, props)`` returning
``{ok msg user}``, ``modify_keypair(access_key, props)``, ``modify_group(gid, props)`` with
``user_update_mode``...), so the official client's ``admin`` commands work unchanged. A refused
change comes back as ``ok: false`` with the manager's reason and message in ``msg`` (what the
client prints), except an authentication or permission failure, which is a GraphQL error with
``extensions.code`` / ``extensions.reason``. Unknown input fields and wrong types are rejected by
the GraphQL validator before anything runs. The manager answers lists with joined queries, so no
resolver here issues a call per item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import grpc
import strawberry
from bai.common import rpc
from bai.gateway.admin.calls import graphql_error
from bai.gateway.admin.tenancy_gql_types import (
    AuditLog,
    AuditLogList,
    CreateDomainPayload,
    CreateGroupPayload,
    CreateKeyPairPayload,
    CreateKeyPairResourcePolicyInput,
    CreateKeyPairResourcePolicyPayload,
    Domain,
    DomainInput,
    GroupDetail,
    GroupInput,
    KeyPairCreated,
    KeyPairInput,
    KeyPairResourcePolicy,
    ModifyDomainInput,
    ModifyGroupInput,
    ModifyKeyPairInput,
    ModifyKeyPairResourcePolicyInput,
    ModifyUserInput,
    PurgeUserInput,
    SimplePayload,
    UserInput,
    UserPayload,
    UserPayloadUser,
    timestamp,
)
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as pb
from graphql import GraphQLError

__all__ = ["Failed", "TenancyMutation", "TenancyQuery", "call", "change", "simple"]

_RAISED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_KEYPAIR = pb.RESOURCE_POLICY_KIND_KEYPAIR


@dataclass(frozen=True, slots=True)
class Failed:
    """A refused change: the payload's ``msg``."""

    msg: str


async def call(info: strawberry.Info[Any, None], method: str, request: Any) -> Any:
    ctx = info.context
    try:
        return await ctx.calls.tenancy(method, request, ctx.metadata)
    except grpc.aio.AioRpcError as exc:
        raise graphql_error(exc) from None


async def change(info: strawberry.Info[Any, None], method: str, request: Any) -> Any:
    """Like :func:`call`, but a refusal other than auth/permission becomes ``Failed``."""
    ctx = info.context
    try:
        return await ctx.calls.tenancy(method, request, ctx.metadata)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in _RAISED:
            raise graphql_error(exc) from None
        err = rpc.error_from_rpc(exc)
        return Failed(f"{err.reason}: {err.message}")


def _slots_in(value: str | None) -> dict[str, str]:
    """A JSON object of slot amounts (Backend.AI sends resource slots as JSON text)."""
    if value is None or value == "":
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        raise GraphQLError("total_resource_slots is not valid JSON",
                           extensions={"code": "INVALID_ARGUMENT"}) from None
    if not isinstance(parsed, dict):
        raise GraphQLError("total_resource_slots must be a JSON object",
                           extensions={"code": "INVALID_ARGUMENT"})
    return {str(k): str(v) for k, v in parsed.items()}


_POLICY_LIMIT_NAMES = ("max_session_lifetime", "max_concurrent_sessions",
                       "max_containers_per_session", "idle_timeout",
                       "max_pending_session_count", "max_concurrent_sftp_sessions")


def _ignored(**values: Any) -> None:
    """Backend.AI options bai does not model must not silently change meaning: refuse them."""
    for name, value in values.items():
        if value not in (None, False, [], "", "{}"):
            raise GraphQLError(f"{name} is not supported by this server",
                               extensions={"code": "INVALID_ARGUMENT"})



def simple(result: Any) -> SimplePayload:
    if isinstance(result, Failed):
        return SimplePayload(ok=False, msg=result.msg)
    return SimplePayload(ok=True, msg="success")


# ---- queries -------------------------------------------------------------------------------


async def _all_projects(info: strawberry.Info[Any, None], domain: str | None,
                        is_active: bool | None) -> list[pb.Project]:
    request = pb.ListProjectsRequest(page=admin_pb.PageRequest(limit=1000),
                                     domain=domain or "")
    if is_active is not None:
        request.is_active = is_active
    return list((await call(info, "ListProjects", request)).projects)


@strawberry.type
class TenancyQuery:
    @strawberry.field(description="Domains visible to the caller.")  # type: ignore[untyped-decorator]
    async def domains(self, info: strawberry.Info[Any, None],
                      is_active: bool | None = None) -> list[Domain]:
        reply = await call(info, "ListDomains", pb.ListDomainsRequest(
            page=admin_pb.PageRequest(limit=1000)))
        return [Domain.of(d) for d in reply.domains
                if is_active is None or d.is_active == is_active]

    @strawberry.field(description="One domain (the caller's when no name is given).")  # type: ignore[untyped-decorator]
    async def domain(self, info: strawberry.Info[Any, None],
                     name: str | None = None) -> Domain | None:
        reply = await call(info, "ListDomains", pb.ListDomainsRequest(
            page=admin_pb.PageRequest(limit=1000)))
        if name is None:
            own = await call(info, "GetUser", pb.GetUserRequest())  # the caller
            name = own.user.domain
        return next((Domain.of(d) for d in reply.domains if d.name == name), None)

    @strawberry.field(description="Projects (groups) visible to the caller.")  # type: ignore[untyped-decorator]
    async def groups(self, info: strawberry.Info[Any, None], domain_name: str | None = None,
                     is_active: bool | None = None,
                     type: list[str] | None = None) -> list[GroupDetail]:
        return [GroupDetail.of(p) for p in await _all_projects(info, domain_name, is_active)]

    @strawberry.field(description="Projects (groups) by name.")  # type: ignore[untyped-decorator]
    async def groups_by_name(self, info: strawberry.Info[Any, None], name: str,
                             domain_name: str | None = None) -> list[GroupDetail]:
        return [GroupDetail.of(p) for p in await _all_projects(info, domain_name, None)
                if p.name == name]

    @strawberry.field(description="One project (group) by id.")  # type: ignore[untyped-decorator]
    async def group(self, info: strawberry.Info[Any, None], id: UUID,
                    domain_name: str | None = None) -> GroupDetail | None:
        try:
            reply = await call(info, "GetProject", pb.GetProjectRequest(id=str(id)))
        except GraphQLError as exc:
            if (exc.extensions or {}).get("code") == "NOT_FOUND":
                return None
            raise
        if domain_name is not None and reply.project.domain != domain_name:
            return None
        return GroupDetail.of(reply.project)

    @strawberry.field(description="One user by e-mail (the caller when none is given).")  # type: ignore[untyped-decorator]
    async def user(self, info: strawberry.Info[Any, None], domain_name: str | None = None,
                   email: str | None = None) -> UserPayloadUser | None:
        return await _user_by(info, email or "", domain_name)

    @strawberry.field(description="One user by id (the caller when none is given).")  # type: ignore[untyped-decorator]
    async def user_from_uuid(self, info: strawberry.Info[Any, None],
                             domain_name: str | None = None,
                             user_id: strawberry.ID | None = None) -> UserPayloadUser | None:
        if user_id is not None:
            try:
                UUID(str(user_id))
            except ValueError:
                raise GraphQLError(f"user_id {user_id!r} is not a UUID",
                                   extensions={"code": "INVALID_ARGUMENT"}) from None
        return await _user_by(info, str(user_id or ""), domain_name)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Users visible to the caller, oldest first (Backend.AI's unpaged list).")
    async def users(self, info: strawberry.Info[Any, None], domain_name: str | None = None,
                    group_id: UUID | None = None, is_active: bool | None = None,
                    status: str | None = None) -> list[UserPayloadUser]:
        found: list[UserPayloadUser] = []
        while True:  # every page: Backend.AI's ``users`` is not paged
            request = admin_pb.ListUsersRequest(
                page=admin_pb.PageRequest(limit=1000, offset=len(found)), status=status or "",
                project_id=str(group_id) if group_id else "")
            ctx = info.context
            try:
                reply = await ctx.calls.list_users(request, metadata=ctx.metadata,
                                                   deadline=ctx.up.config.call_timeout)
            except grpc.aio.AioRpcError as exc:
                raise graphql_error(exc) from None
            found.extend(UserPayloadUser.of(u) for u in reply.users)
            if not reply.users or len(found) >= reply.total_count:
                break
        return [u for u in found if (domain_name is None or u.domain_name == domain_name)
                and (is_active is None or u.is_active == is_active)]

    @strawberry.field(description="Keypair resource policies.")  # type: ignore[untyped-decorator]
    async def keypair_resource_policies(
            self, info: strawberry.Info[Any, None]) -> list[KeyPairResourcePolicy]:
        reply = await call(info, "ListResourcePolicies",
                            pb.ListResourcePoliciesRequest(kind=_KEYPAIR))
        return [KeyPairResourcePolicy.of(p) for p in reply.resource_policies]

    @strawberry.field(description="One keypair resource policy by name.")  # type: ignore[untyped-decorator]
    async def keypair_resource_policy(self, info: strawberry.Info[Any, None],
                                      name: str | None = None) -> KeyPairResourcePolicy | None:
        reply = await call(info, "ListResourcePolicies",
                            pb.ListResourcePoliciesRequest(kind=_KEYPAIR))
        wanted = name or "default"
        return next((KeyPairResourcePolicy.of(p) for p in reply.resource_policies
                     if p.name == wanted), None)

    @strawberry.field(description="Audit log entries, newest first (admins).")  # type: ignore[untyped-decorator]
    async def audit_log_list(self, info: strawberry.Info[Any, None], limit: int, offset: int,
                             action_prefix: str | None = None, target_type: str | None = None,
                             target_id: str | None = None) -> AuditLogList:
        if not 1 <= limit <= 1000 or offset < 0:
            raise GraphQLError("limit must be between 1 and 1000 and offset not negative",
                               extensions={"code": "INVALID_ARGUMENT"})
        reply = await call(info, "ListAuditLogs", pb.ListAuditLogsRequest(
            page=admin_pb.PageRequest(limit=limit, offset=offset),
            action_prefix=action_prefix or "", target_type=target_type or "",
            target_id=target_id or ""))
        return AuditLogList(items=[AuditLog.of(e) for e in reply.entries],
                            total_count=reply.total_count)


# ---- mutations -----------------------------------------------------------------------------


async def _user_by(info: strawberry.Info[Any, None], ref: str,
                   domain_name: str | None) -> UserPayloadUser | None:
    """One user by e-mail or id (the caller for ""); None when unseen or of another domain."""
    try:
        reply = await call(info, "GetUser", pb.GetUserRequest(ref=ref))
    except GraphQLError as exc:
        if (exc.extensions or {}).get("code") == "NOT_FOUND":
            return None
        raise
    if domain_name is not None and reply.user.domain != domain_name:
        return None
    return UserPayloadUser.of(reply.user)


def _user_request(email: str, props: UserInput) -> pb.CreateUserRequest:
    _ignored(allowed_client_ip=props.allowed_client_ip, totp_activated=props.totp_activated,
             sudo_session_enabled=props.sudo_session_enabled, container_uid=props.container_uid,
             container_main_gid=props.container_main_gid, container_gids=props.container_gids)
    status = props.status or ("inactive" if props.is_active is False else "active")
    return pb.CreateUserRequest(
        email=email, username=props.username or "", password=props.password,
        role=props.role or "user", domain=props.domain_name, status=status,
        full_name=props.full_name or "", description=props.description or "",
        need_password_change=props.need_password_change,
        project_ids=list(props.group_ids or []), resource_policy=props.resource_policy or "")


def _modify_user_request(email: str, props: ModifyUserInput) -> pb.UpdateUserRequest:
    _ignored(allowed_client_ip=props.allowed_client_ip, totp_activated=props.totp_activated,
             sudo_session_enabled=props.sudo_session_enabled, container_uid=props.container_uid,
             container_main_gid=props.container_main_gid, container_gids=props.container_gids,
             group_ids=props.group_ids, main_access_key=props.main_access_key,
             domain_name=props.domain_name)
    request = pb.UpdateUserRequest(ref=email)
    for name in ("username", "password", "role", "full_name", "description",
                 "need_password_change", "resource_policy", "status"):
        value = getattr(props, name)
        if value is not None:
            setattr(request, name, value)
    if props.is_active is not None and props.status is None:
        request.status = "active" if props.is_active else "inactive"
    return request


def _policy_limits(props: Any) -> dict[str, int]:
    return {name: getattr(props, name) for name in _POLICY_LIMIT_NAMES
            if getattr(props, name) is not None}


@strawberry.type
class TenancyMutation:
    @strawberry.mutation
    async def create_user(self, info: strawberry.Info[Any, None], email: str,
                          props: UserInput) -> UserPayload:
        reply = await change(info, "CreateUser", _user_request(email, props))
        if isinstance(reply, Failed):
            return UserPayload(ok=False, msg=reply.msg, user=None)
        return UserPayload(ok=True, msg="success", user=UserPayloadUser.of(reply.user))

    @strawberry.mutation
    async def modify_user(self, info: strawberry.Info[Any, None], email: str,
                          props: ModifyUserInput) -> UserPayload:
        reply = await change(info, "UpdateUser", _modify_user_request(email, props))
        if isinstance(reply, Failed):
            return UserPayload(ok=False, msg=reply.msg, user=None)
        return UserPayload(ok=True, msg="success", user=UserPayloadUser.of(reply.user))

    @strawberry.mutation
    async def delete_user(self, info: strawberry.Info[Any, None], email: str) -> SimplePayload:
        return simple(await change(info, "DeleteUser", pb.DeleteUserRequest(ref=email)))

    @strawberry.mutation
    async def purge_user(self, info: strawberry.Info[Any, None], email: str,
                         props: PurgeUserInput) -> SimplePayload:
        """Deletes a user for good (the manager's PurgeUser): refused while it has live
        sessions or unshared folders not yet purged; shared folders pass to the caller.
        ``delegate_endpoint_ownership`` is accepted and moot (bai has no serving endpoints)."""
        return simple(await change(info, "PurgeUser", pb.PurgeUserRequest(
            ref=email, purge_shared_vfolders=props.purge_shared_vfolders)))

    @strawberry.mutation
    async def create_keypair(self, info: strawberry.Info[Any, None], user_id: str,
                             props: KeyPairInput) -> CreateKeyPairPayload:
        _ignored(concurrency_limit=props.concurrency_limit)
        reply = await change(info, "CreateKeypair", pb.CreateKeypairRequest(
            user_ref=user_id, is_active=props.is_active, is_admin=props.is_admin,
            resource_policy=props.resource_policy or "", rate_limit=props.rate_limit or 0))
        if isinstance(reply, Failed):
            return CreateKeyPairPayload(ok=False, msg=reply.msg, keypair=None)
        k = reply.keypair
        return CreateKeyPairPayload(ok=True, msg="success", keypair=KeyPairCreated(
            access_key=k.access_key, secret_key=k.secret_key, is_active=k.is_active,
            is_admin=k.is_admin, user_id=k.user_email, resource_policy=k.resource_policy,
            rate_limit=k.rate_limit, created_at=timestamp(k.create_time)))

    @strawberry.mutation
    async def modify_keypair(self, info: strawberry.Info[Any, None], access_key: str,
                             props: ModifyKeyPairInput) -> SimplePayload:
        _ignored(concurrency_limit=props.concurrency_limit)
        request = pb.UpdateKeypairRequest(access_key=access_key)
        for name in ("is_active", "is_admin", "resource_policy", "rate_limit"):
            value = getattr(props, name)
            if value is not None:
                setattr(request, name, value)
        return simple(await change(info, "UpdateKeypair", request))

    @strawberry.mutation
    async def delete_keypair(self, info: strawberry.Info[Any, None],
                             access_key: str) -> SimplePayload:
        return simple(await change(info, "DeleteKeypair",
                                     pb.DeleteKeypairRequest(access_key=access_key)))

    @strawberry.mutation
    async def create_group(self, info: strawberry.Info[Any, None], name: str,
                           props: GroupInput) -> CreateGroupPayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 integration_id=props.integration_id, container_registry=props.container_registry)
        if props.type not in (None, "GENERAL", "general"):
            return CreateGroupPayload(ok=False, msg=f"INVALID_ARGUMENT: group type {props.type!r}"
                                      " is not supported (only GENERAL)", group=None)
        reply = await change(info, "CreateProject", pb.CreateProjectRequest(
            name=name, domain=props.domain_name, description=props.description,
            is_active=props.is_active,
            total_resource_slots=_slots_in(props.total_resource_slots),
            resource_policy=props.resource_policy or ""))
        if isinstance(reply, Failed):
            return CreateGroupPayload(ok=False, msg=reply.msg, group=None)
        return CreateGroupPayload(ok=True, msg="success", group=GroupDetail.of(reply.project))

    @strawberry.mutation
    async def modify_group(self, info: strawberry.Info[Any, None], gid: UUID,
                           props: ModifyGroupInput) -> CreateGroupPayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 integration_id=props.integration_id, domain_name=props.domain_name,
                 container_registry=props.container_registry)
        reply: Any = None
        if props.user_update_mode is not None or props.user_uuids is not None:
            if props.user_update_mode not in ("add", "remove"):
                return CreateGroupPayload(ok=False, msg="INVALID_ARGUMENT: user_update_mode "
                                          "must be 'add' or 'remove'", group=None)
            users = list(props.user_uuids or [])
            if props.user_update_mode == "add":
                reply = await change(info, "AddProjectMembers", pb.AddProjectMembersRequest(
                    project_id=str(gid), user_ids=users))
            else:
                reply = await change(info, "RemoveProjectMembers",
                                      pb.RemoveProjectMembersRequest(project_id=str(gid),
                                                                     user_ids=users))
            if isinstance(reply, Failed):
                return CreateGroupPayload(ok=False, msg=reply.msg, group=None)
        request = pb.UpdateProjectRequest(id=str(gid))
        for name in ("name", "description", "is_active", "resource_policy"):
            value = getattr(props, name)
            if value is not None:
                setattr(request, name, value)
        if props.total_resource_slots is not None:
            request.replace_total_resource_slots = True
            request.total_resource_slots.update(_slots_in(props.total_resource_slots))
        if reply is None or len(request.ListFields()) > 1:
            reply = await change(info, "UpdateProject", request)
            if isinstance(reply, Failed):
                return CreateGroupPayload(ok=False, msg=reply.msg, group=None)
        return CreateGroupPayload(ok=True, msg="success", group=GroupDetail.of(reply.project))

    @strawberry.mutation
    async def delete_group(self, info: strawberry.Info[Any, None], gid: UUID) -> SimplePayload:
        """Backend.AI only deactivates here; ``purge_group`` deletes."""
        return simple(await change(info, "UpdateProject", pb.UpdateProjectRequest(
            id=str(gid), is_active=False)))

    @strawberry.mutation
    async def purge_group(self, info: strawberry.Info[Any, None], gid: UUID) -> SimplePayload:
        return simple(await change(info, "DeleteProject", pb.DeleteProjectRequest(
            id=str(gid))))

    @strawberry.mutation
    async def create_domain(self, info: strawberry.Info[Any, None], name: str,
                            props: DomainInput) -> CreateDomainPayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 allowed_docker_registries=props.allowed_docker_registries,
                 integration_id=props.integration_id)
        reply = await change(info, "CreateDomain", pb.CreateDomainRequest(
            name=name, description=props.description, is_active=props.is_active,
            total_resource_slots=_slots_in(props.total_resource_slots)))
        if isinstance(reply, Failed):
            return CreateDomainPayload(ok=False, msg=reply.msg, domain=None)
        return CreateDomainPayload(ok=True, msg="success", domain=Domain.of(reply.domain))

    @strawberry.mutation
    async def modify_domain(self, info: strawberry.Info[Any, None], name: str,
                            props: ModifyDomainInput) -> CreateDomainPayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 allowed_docker_registries=props.allowed_docker_registries,
                 integration_id=props.integration_id)
        if props.name not in (None, name):
            return CreateDomainPayload(ok=False, msg="INVALID_ARGUMENT: domains cannot be "
                                       "renamed", domain=None)
        request = pb.UpdateDomainRequest(name=name)
        if props.description is not None:
            request.description = props.description
        if props.is_active is not None:
            request.is_active = props.is_active
        if props.total_resource_slots is not None:
            request.replace_total_resource_slots = True
            request.total_resource_slots.update(_slots_in(props.total_resource_slots))
        reply = await change(info, "UpdateDomain", request)
        if isinstance(reply, Failed):
            return CreateDomainPayload(ok=False, msg=reply.msg, domain=None)
        return CreateDomainPayload(ok=True, msg="success", domain=Domain.of(reply.domain))

    @strawberry.mutation
    async def delete_domain(self, info: strawberry.Info[Any, None], name: str) -> SimplePayload:
        """Backend.AI only deactivates here; ``purge_domain`` deletes."""
        return simple(await change(info, "UpdateDomain", pb.UpdateDomainRequest(
            name=name, is_active=False)))

    @strawberry.mutation
    async def purge_domain(self, info: strawberry.Info[Any, None], name: str) -> SimplePayload:
        return simple(await change(info, "DeleteDomain", pb.DeleteDomainRequest(name=name)))

    @strawberry.mutation
    async def create_keypair_resource_policy(
            self, info: strawberry.Info[Any, None], name: str,
            props: CreateKeyPairResourcePolicyInput) -> CreateKeyPairResourcePolicyPayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 max_pending_session_resource_slots=props.max_pending_session_resource_slots)
        reply = await change(info, "CreateResourcePolicy", pb.CreateResourcePolicyRequest(
            resource_policy=pb.ResourcePolicy(
                kind=_KEYPAIR, name=name, limits=_policy_limits(props),
                total_resource_slots=_slots_in(props.total_resource_slots),
                default_for_unspecified=props.default_for_unspecified)))
        if isinstance(reply, Failed):
            return CreateKeyPairResourcePolicyPayload(ok=False, msg=reply.msg,
                                                      resource_policy=None)
        return CreateKeyPairResourcePolicyPayload(
            ok=True, msg="success", resource_policy=KeyPairResourcePolicy.of(
                reply.resource_policy))

    @strawberry.mutation
    async def modify_keypair_resource_policy(
            self, info: strawberry.Info[Any, None], name: str,
            props: ModifyKeyPairResourcePolicyInput) -> SimplePayload:
        _ignored(allowed_vfolder_hosts=props.allowed_vfolder_hosts,
                 max_pending_session_resource_slots=props.max_pending_session_resource_slots)
        request = pb.UpdateResourcePolicyRequest(
            kind=_KEYPAIR, name=name, limits=_policy_limits(props),
            default_for_unspecified=props.default_for_unspecified or "")
        if props.total_resource_slots is not None:
            request.replace_total_resource_slots = True
            request.total_resource_slots.update(_slots_in(props.total_resource_slots))
        return simple(await change(info, "UpdateResourcePolicy", request))

    @strawberry.mutation
    async def delete_keypair_resource_policy(self, info: strawberry.Info[Any, None],
                                             name: str) -> SimplePayload:
        return simple(await change(info, "DeleteResourcePolicy",
                                     pb.DeleteResourcePolicyRequest(kind=_KEYPAIR, name=name)))
