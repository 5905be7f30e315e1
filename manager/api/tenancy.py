"""TenancyService and AuthService servicers: convert, call one domain method, convert back."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import grpc
from bai.manager.api.admin import _ts, keypair_to_proto, user_to_proto
from bai.manager.api.interceptor import principal
from bai.manager.domain.admin import page_of
from bai.manager.domain.audit import AuditEntry, AuditFilter, AuditQueries
from bai.manager.domain.auth import PasswordLogin
from bai.manager.domain.tenancy import DomainView, PolicyView, ProjectView, TenancyService
from bai.pb.manager.v1 import auth_service_pb2 as auth_pb
from bai.pb.manager.v1 import auth_service_pb2_grpc as auth_grpc
from bai.pb.manager.v1 import tenancy_service_pb2 as pb
from bai.pb.manager.v1 import tenancy_service_pb2_grpc as pb_grpc
from google.protobuf.message import Message

__all__ = ["AuthServicer", "TenancyServicer"]

Context: TypeAlias = grpc.aio.ServicerContext
_KINDS = {pb.RESOURCE_POLICY_KIND_KEYPAIR: "keypair", pb.RESOURCE_POLICY_KIND_USER: "user",
          pb.RESOURCE_POLICY_KIND_PROJECT: "project"}
_KIND_VALUES = {v: k for k, v in _KINDS.items()}


def _set(request: Message, *names: str) -> dict[str, Any]:
    """The optional fields the request actually carries, by name."""
    return {n: getattr(request, n) for n in names if request.HasField(n)}


def domain_to_proto(d: DomainView) -> pb.Domain:
    return pb.Domain(name=d.name, description=d.description, is_active=d.is_active,
                     create_time=_ts(d.created_at), total_resource_slots=d.total_resource_slots)


def project_to_proto(p: ProjectView) -> pb.Project:
    return pb.Project(id=str(p.id), name=p.name, domain=p.domain, description=p.description,
                      is_active=p.is_active, create_time=_ts(p.created_at),
                      total_resource_slots=p.total_resource_slots,
                      resource_policy=p.resource_policy,
                      members=[pb.ProjectMember(user_id=str(m.user_id), email=m.email,
                                                role=m.role) for m in p.members])


def policy_to_proto(p: PolicyView) -> pb.ResourcePolicy:
    return pb.ResourcePolicy(kind=_KIND_VALUES[p.kind], name=p.name,
                             create_time=_ts(p.created_at), limits=p.limits,
                             total_resource_slots=p.total_resource_slots,
                             default_for_unspecified=p.default_for_unspecified)


def audit_to_proto(e: AuditEntry) -> pb.AuditLogEntry:
    return pb.AuditLogEntry(id=e.id, time=_ts(e.at),
                            actor_user_id=str(e.actor_user_id) if e.actor_user_id else "",
                            actor_access_key=e.actor_access_key or "", actor_role=e.actor_role,
                            action=e.action, target_type=e.target_type, target_id=e.target_id,
                            success=e.success, error_reason=e.error_reason,
                            detail_json=json.dumps(e.detail, sort_keys=True))


def _slots_change(request: Any) -> dict[str, Any]:
    if request.replace_total_resource_slots:
        return {"total_resource_slots": dict(request.total_resource_slots)}
    return {}


class TenancyServicer(pb_grpc.TenancyServiceServicer):
    def __init__(self, tenancy: TenancyService, audit: AuditQueries) -> None:
        self._t = tenancy
        self._audit = audit

    async def ListDomains(self, request: pb.ListDomainsRequest, context: Context) -> (
            pb.ListDomainsResponse):
        items, total = await self._t.list_domains(
            principal(), page_of(request.page.offset, request.page.limit))
        return pb.ListDomainsResponse(domains=[domain_to_proto(d) for d in items],
                                      total_count=total)

    async def CreateDomain(self, request: pb.CreateDomainRequest, context: Context) -> (
            pb.CreateDomainResponse):
        domain = await self._t.create_domain(principal(), request.name, request.description,
                                             request.is_active,
                                             dict(request.total_resource_slots))
        return pb.CreateDomainResponse(domain=domain_to_proto(domain))

    async def UpdateDomain(self, request: pb.UpdateDomainRequest, context: Context) -> (
            pb.UpdateDomainResponse):
        changes = _set(request, "description", "is_active") | _slots_change(request)
        domain = await self._t.update_domain(principal(), request.name, changes)
        return pb.UpdateDomainResponse(domain=domain_to_proto(domain))

    async def DeleteDomain(self, request: pb.DeleteDomainRequest, context: Context) -> (
            pb.DeleteDomainResponse):
        await self._t.delete_domain(principal(), request.name)
        return pb.DeleteDomainResponse()

    async def ListProjects(self, request: pb.ListProjectsRequest, context: Context) -> (
            pb.ListProjectsResponse):
        is_active = request.is_active if request.HasField("is_active") else None
        items, total = await self._t.list_projects(
            principal(), request.domain, is_active,
            page_of(request.page.offset, request.page.limit))
        return pb.ListProjectsResponse(projects=[project_to_proto(p) for p in items],
                                       total_count=total)

    async def GetProject(self, request: pb.GetProjectRequest, context: Context) -> (
            pb.GetProjectResponse):
        project = await self._t.get_project(principal(), request.id)
        return pb.GetProjectResponse(project=project_to_proto(project))

    async def CreateProject(self, request: pb.CreateProjectRequest, context: Context) -> (
            pb.CreateProjectResponse):
        project = await self._t.create_project(
            principal(), request.name, request.domain, request.description, request.is_active,
            dict(request.total_resource_slots), request.resource_policy)
        return pb.CreateProjectResponse(project=project_to_proto(project))

    async def UpdateProject(self, request: pb.UpdateProjectRequest, context: Context) -> (
            pb.UpdateProjectResponse):
        changes = _set(request, "name", "description", "is_active", "resource_policy")
        project = await self._t.update_project(principal(), request.id,
                                               changes | _slots_change(request))
        return pb.UpdateProjectResponse(project=project_to_proto(project))

    async def DeleteProject(self, request: pb.DeleteProjectRequest, context: Context) -> (
            pb.DeleteProjectResponse):
        await self._t.delete_project(principal(), request.id)
        return pb.DeleteProjectResponse()

    async def AddProjectMembers(self, request: pb.AddProjectMembersRequest,
                                context: Context) -> pb.AddProjectMembersResponse:
        project = await self._t.add_members(principal(), request.project_id,
                                            list(request.user_ids), request.role)
        return pb.AddProjectMembersResponse(project=project_to_proto(project))

    async def RemoveProjectMembers(self, request: pb.RemoveProjectMembersRequest,
                                   context: Context) -> pb.RemoveProjectMembersResponse:
        project = await self._t.remove_members(principal(), request.project_id,
                                               list(request.user_ids))
        return pb.RemoveProjectMembersResponse(project=project_to_proto(project))

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> (
            pb.GetUserResponse):
        return pb.GetUserResponse(user=user_to_proto(
            await self._t.get_user(principal(), request.ref)))

    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> (
            pb.CreateUserResponse):
        user, keypair = await self._t.create_user(
            principal(), email=request.email, username=request.username,
            password=request.password, role=request.role, domain=request.domain,
            status=request.status, full_name=request.full_name,
            description=request.description, need_password_change=request.need_password_change,
            project_ids=list(request.project_ids), resource_policy=request.resource_policy,
            with_keypair=not request.skip_keypair)
        return pb.CreateUserResponse(user=user_to_proto(user),
                                     keypair=keypair_to_proto(keypair) if keypair else None)

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Context) -> (
            pb.UpdateUserResponse):
        changes = _set(request, "username", "password", "role", "status", "full_name",
                       "description", "need_password_change", "resource_policy")
        user = await self._t.update_user(principal(), request.ref, changes)
        return pb.UpdateUserResponse(user=user_to_proto(user))

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> (
            pb.DeleteUserResponse):
        await self._t.delete_user(principal(), request.ref)
        return pb.DeleteUserResponse()

    async def PurgeUser(self, request: pb.PurgeUserRequest, context: Context) -> (
            pb.PurgeUserResponse):
        report = await self._t.purge_user(principal(), request.ref,
                                          request.purge_shared_vfolders)
        return pb.PurgeUserResponse(
            transferred_vfolder_ids=[str(i) for i in report.transferred_vfolder_ids],
            deleted_keypair_count=report.deleted_keypair_count,
            deleted_session_count=report.deleted_session_count)

    async def LookupKeypair(self, request: pb.LookupKeypairRequest, context: Context) -> (
            pb.LookupKeypairResponse):
        keypair = await self._t.get_keypair(principal(), request.access_key)
        return pb.LookupKeypairResponse(keypair=keypair_to_proto(keypair))

    async def CreateKeypair(self, request: pb.CreateKeypairRequest, context: Context) -> (
            pb.CreateKeypairResponse):
        keypair = await self._t.create_keypair(
            principal(), request.user_ref, is_active=request.is_active,
            is_admin=request.is_admin, resource_policy=request.resource_policy,
            rate_limit=request.rate_limit)
        return pb.CreateKeypairResponse(keypair=keypair_to_proto(keypair))

    async def UpdateKeypair(self, request: pb.UpdateKeypairRequest, context: Context) -> (
            pb.UpdateKeypairResponse):
        changes = _set(request, "is_active", "is_admin", "resource_policy", "rate_limit")
        keypair = await self._t.update_keypair(principal(), request.access_key, changes)
        return pb.UpdateKeypairResponse(keypair=keypair_to_proto(keypair))

    async def DeleteKeypair(self, request: pb.DeleteKeypairRequest, context: Context) -> (
            pb.DeleteKeypairResponse):
        await self._t.delete_keypair(principal(), request.access_key)
        return pb.DeleteKeypairResponse()

    async def ListResourcePolicies(self, request: pb.ListResourcePoliciesRequest,
                                   context: Context) -> pb.ListResourcePoliciesResponse:
        items = await self._t.list_policies(principal(), _KINDS.get(request.kind, ""))
        return pb.ListResourcePoliciesResponse(
            resource_policies=[policy_to_proto(p) for p in items])

    async def CreateResourcePolicy(self, request: pb.CreateResourcePolicyRequest,
                                   context: Context) -> pb.CreateResourcePolicyResponse:
        p = request.resource_policy
        policy = await self._t.create_policy(principal(), PolicyView(
            kind=_KINDS.get(p.kind, ""), name=p.name, created_at=p.create_time.ToDatetime(),
            limits=dict(p.limits), total_resource_slots=dict(p.total_resource_slots),
            default_for_unspecified=p.default_for_unspecified))
        return pb.CreateResourcePolicyResponse(resource_policy=policy_to_proto(policy))

    async def UpdateResourcePolicy(self, request: pb.UpdateResourcePolicyRequest,
                                   context: Context) -> pb.UpdateResourcePolicyResponse:
        changes: dict[str, Any] = {"limits": dict(request.limits),
                                   "default_for_unspecified": request.default_for_unspecified}
        policy = await self._t.update_policy(principal(), _KINDS.get(request.kind, ""),
                                             request.name, changes | _slots_change(request))
        return pb.UpdateResourcePolicyResponse(resource_policy=policy_to_proto(policy))

    async def DeleteResourcePolicy(self, request: pb.DeleteResourcePolicyRequest,
                                   context: Context) -> pb.DeleteResourcePolicyResponse:
        await self._t.delete_policy(principal(), _KINDS.get(request.kind, ""), request.name)
        return pb.DeleteResourcePolicyResponse()

    async def ListAuditLogs(self, request: pb.ListAuditLogsRequest, context: Context) -> (
            pb.ListAuditLogsResponse):
        where = AuditFilter(action_prefix=request.action_prefix,
                            target_type=request.target_type, target_id=request.target_id)
        entries, total = await self._audit.entries(
            principal(), where, page_of(request.page.offset, request.page.limit))
        return pb.ListAuditLogsResponse(entries=[audit_to_proto(e) for e in entries],
                                        total_count=total)


class AuthServicer(auth_grpc.AuthServiceServicer):
    def __init__(self, login: PasswordLogin) -> None:
        self._login = login

    async def Authorize(self, request: auth_pb.AuthorizeRequest, context: Context) -> (
            auth_pb.AuthorizeResponse):
        keypair, user = await self._login.authorize(request.domain, request.username,
                                                    request.password)
        return auth_pb.AuthorizeResponse(keypair=keypair_to_proto(keypair),
                                         user=user_to_proto(user))
