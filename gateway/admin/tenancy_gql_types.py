"""GraphQL types, inputs and payloads of the tenancy API (Backend.AI's names and shapes);
the resolvers are in :mod:`bai.gateway.admin.tenancy_gql`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import strawberry
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = [
    "AuditLog",
    "AuditLogList",
    "CreateDomainPayload",
    "CreateGroupPayload",
    "CreateKeyPairPayload",
    "CreateKeyPairResourcePolicyInput",
    "CreateKeyPairResourcePolicyPayload",
    "Domain",
    "DomainInput",
    "GroupDetail",
    "GroupInput",
    "GroupMember",
    "GroupRef",
    "KeyPairCreated",
    "KeyPairInput",
    "KeyPairResourcePolicy",
    "ModifyDomainInput",
    "ModifyGroupInput",
    "ModifyKeyPairInput",
    "ModifyKeyPairResourcePolicyInput",
    "ModifyUserInput",
    "PurgeUserInput",
    "SimplePayload",
    "UserInput",
    "UserPayload",
    "UserPayloadUser",
    "timestamp",
]

def timestamp(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    when: datetime = ts.ToDatetime(tzinfo=UTC)
    return when


def _json(value: Any) -> str:
    return json.dumps(value)


# ---- types ---------------------------------------------------------------------------------


@strawberry.type
class Domain:
    name: str
    description: str
    is_active: bool
    created_at: datetime | None
    modified_at: datetime | None
    total_resource_slots: str
    """JSON text."""
    allowed_vfolder_hosts: str
    allowed_docker_registries: list[str]
    integration_id: str | None

    @classmethod
    def of(cls, d: pb.Domain) -> Domain:
        return cls(name=d.name, description=d.description, is_active=d.is_active,
                   created_at=timestamp(d.create_time), modified_at=None,
                   total_resource_slots=_json(dict(d.total_resource_slots)),
                   allowed_vfolder_hosts="{}", allowed_docker_registries=[],
                   integration_id=None)


@strawberry.type
class GroupMember:
    id: UUID
    email: str
    role: str


@strawberry.type(name="Group")
class GroupDetail:
    id: UUID
    name: str
    description: str
    is_active: bool
    created_at: datetime | None
    modified_at: datetime | None
    domain_name: str
    total_resource_slots: str
    allowed_vfolder_hosts: str
    integration_id: str | None
    resource_policy: str
    type: str
    members: list[GroupMember]

    @classmethod
    def of(cls, p: pb.Project) -> GroupDetail:
        return cls(id=UUID(p.id), name=p.name, description=p.description,
                   is_active=p.is_active, created_at=timestamp(p.create_time), modified_at=None,
                   domain_name=p.domain, total_resource_slots=_json(dict(p.total_resource_slots)),
                   allowed_vfolder_hosts="{}", integration_id=None,
                   resource_policy=p.resource_policy, type="GENERAL",
                   members=[GroupMember(id=UUID(m.user_id), email=m.email, role=m.role)
                            for m in p.members])


@strawberry.type
class KeyPairResourcePolicy:
    name: str
    created_at: datetime | None
    default_for_unspecified: str
    total_resource_slots: str
    max_session_lifetime: int
    max_concurrent_sessions: int
    max_pending_session_count: int | None
    max_pending_session_resource_slots: str | None
    max_concurrent_sftp_sessions: int
    max_containers_per_session: int
    idle_timeout: int
    allowed_vfolder_hosts: str

    @classmethod
    def of(cls, p: pb.ResourcePolicy) -> KeyPairResourcePolicy:
        limits = dict(p.limits)
        return cls(name=p.name, created_at=timestamp(p.create_time),
                   default_for_unspecified=p.default_for_unspecified,
                   total_resource_slots=_json(dict(p.total_resource_slots)),
                   max_session_lifetime=limits.get("max_session_lifetime", 0),
                   max_concurrent_sessions=limits.get("max_concurrent_sessions", 0),
                   max_pending_session_count=limits.get("max_pending_session_count"),
                   max_pending_session_resource_slots=None,
                   max_concurrent_sftp_sessions=limits.get("max_concurrent_sftp_sessions", 0),
                   max_containers_per_session=limits.get("max_containers_per_session", 0),
                   idle_timeout=limits.get("idle_timeout", 0), allowed_vfolder_hosts="{}")


@strawberry.type
class AuditLog:
    id: str
    created_at: datetime | None
    actor_user_id: str | None
    actor_access_key: str | None
    actor_role: str
    action: str
    target_type: str
    target_id: str
    success: bool
    error_reason: str | None
    detail: str

    @classmethod
    def of(cls, e: pb.AuditLogEntry) -> AuditLog:
        return cls(id=str(e.id), created_at=timestamp(e.time),
                   actor_user_id=e.actor_user_id or None,
                   actor_access_key=e.actor_access_key or None, actor_role=e.actor_role,
                   action=e.action, target_type=e.target_type, target_id=e.target_id,
                   success=e.success, error_reason=e.error_reason or None,
                   detail=e.detail_json)


@strawberry.type
class AuditLogList:
    items: list[AuditLog]
    total_count: int


# ---- inputs (Backend.AI's names) ------------------------------------------------------------


@strawberry.input
class UserInput:
    username: str | None = None
    password: str
    need_password_change: bool = False
    full_name: str | None = None
    description: str | None = None
    is_active: bool | None = None
    status: str | None = None
    domain_name: str = "default"
    role: str | None = None
    group_ids: list[str] | None = None
    allowed_client_ip: list[str] | None = None
    totp_activated: bool | None = None
    resource_policy: str | None = None
    sudo_session_enabled: bool | None = None
    container_uid: int | None = None
    container_main_gid: int | None = None
    container_gids: list[int] | None = None


@strawberry.input
class ModifyUserInput:
    username: str | None = None
    password: str | None = None
    need_password_change: bool | None = None
    full_name: str | None = None
    description: str | None = None
    is_active: bool | None = None
    status: str | None = None
    domain_name: str | None = None
    role: str | None = None
    group_ids: list[str] | None = None
    allowed_client_ip: list[str] | None = None
    totp_activated: bool | None = None
    resource_policy: str | None = None
    sudo_session_enabled: bool | None = None
    main_access_key: str | None = None
    container_uid: int | None = None
    container_main_gid: int | None = None
    container_gids: list[int] | None = None


@strawberry.input
class PurgeUserInput:
    purge_shared_vfolders: bool = False
    """Refuse rather than pass the user's shared folders to the caller."""
    delegate_endpoint_ownership: bool = False
    """Accepted and moot: bai has no model-serving endpoints."""


@strawberry.input
class KeyPairInput:
    is_active: bool = True
    is_admin: bool = False
    resource_policy: str | None = None
    concurrency_limit: int | None = None
    rate_limit: int | None = None


@strawberry.input
class ModifyKeyPairInput:
    is_active: bool | None = None
    is_admin: bool | None = None
    resource_policy: str | None = None
    concurrency_limit: int | None = None
    rate_limit: int | None = None


@strawberry.input
class GroupInput:
    type: str | None = None
    description: str = ""
    is_active: bool = True
    domain_name: str
    total_resource_slots: str | None = None
    allowed_vfolder_hosts: str | None = None
    integration_id: str | None = None
    resource_policy: str | None = None
    container_registry: str | None = None


@strawberry.input
class ModifyGroupInput:
    name: str | None = None
    description: str | None = None
    is_active: bool | None = None
    domain_name: str | None = None
    total_resource_slots: str | None = None
    user_update_mode: str | None = None
    user_uuids: list[str] | None = None
    allowed_vfolder_hosts: str | None = None
    integration_id: str | None = None
    resource_policy: str | None = None
    container_registry: str | None = None


@strawberry.input
class DomainInput:
    description: str = ""
    is_active: bool = True
    total_resource_slots: str | None = None
    allowed_vfolder_hosts: str | None = None
    allowed_docker_registries: list[str] | None = None
    integration_id: str | None = None


@strawberry.input
class ModifyDomainInput:
    name: str | None = None
    description: str | None = None
    is_active: bool | None = None
    total_resource_slots: str | None = None
    allowed_vfolder_hosts: str | None = None
    allowed_docker_registries: list[str] | None = None
    integration_id: str | None = None


@strawberry.input
class CreateKeyPairResourcePolicyInput:
    default_for_unspecified: str = "UNLIMITED"
    total_resource_slots: str | None = None
    max_session_lifetime: int = 0
    max_concurrent_sessions: int = 30
    max_containers_per_session: int = 1
    idle_timeout: int = 0
    allowed_vfolder_hosts: str | None = None
    max_pending_session_count: int | None = None
    max_pending_session_resource_slots: str | None = None
    max_concurrent_sftp_sessions: int = 1


@strawberry.input
class ModifyKeyPairResourcePolicyInput:
    default_for_unspecified: str | None = None
    total_resource_slots: str | None = None
    max_session_lifetime: int | None = None
    max_concurrent_sessions: int | None = None
    max_containers_per_session: int | None = None
    idle_timeout: int | None = None
    allowed_vfolder_hosts: str | None = None
    max_pending_session_count: int | None = None
    max_pending_session_resource_slots: str | None = None
    max_concurrent_sftp_sessions: int | None = None


# ---- payloads ------------------------------------------------------------------------------


@strawberry.type
class SimplePayload:
    ok: bool
    msg: str


@strawberry.type
class CreateDomainPayload:
    ok: bool
    msg: str
    domain: Domain | None


@strawberry.type
class CreateGroupPayload:
    ok: bool
    msg: str
    group: GroupDetail | None


@strawberry.type
class KeyPairCreated:
    access_key: str
    secret_key: str
    is_active: bool
    is_admin: bool
    user_id: str
    resource_policy: str
    rate_limit: int
    created_at: datetime | None


@strawberry.type
class CreateKeyPairPayload:
    ok: bool
    msg: str
    keypair: KeyPairCreated | None


@strawberry.type
class GroupRef:
    id: UUID
    name: str


@strawberry.type(name="UserNode")
class UserPayloadUser:
    """Backend.AI's User, as the ``user`` query and the user mutations return it."""

    uuid: UUID
    id: UUID
    email: str
    username: str
    full_name: str
    role: str
    status: str
    status_info: str | None
    domain_name: str
    need_password_change: bool
    description: str
    is_active: bool
    created_at: datetime | None
    modified_at: datetime | None
    main_access_key: str | None
    groups: list[GroupRef]
    allowed_client_ip: list[str] | None
    sudo_session_enabled: bool
    totp_activated: bool
    resource_policy: str

    @classmethod
    def of(cls, u: admin_pb.User) -> UserPayloadUser:
        return cls(uuid=UUID(u.id), id=UUID(u.id), email=u.email, username=u.username,
                   full_name=u.full_name, role=u.role, status=u.status, status_info=None,
                   domain_name=u.domain, need_password_change=u.need_password_change,
                   description=u.description, is_active=u.status == "active",
                   created_at=timestamp(u.create_time), modified_at=None,
                   main_access_key=u.main_access_key or None,
                   groups=[GroupRef(id=UUID(p.id), name=p.name) for p in u.projects],
                   allowed_client_ip=None, sudo_session_enabled=False, totp_activated=False,
                   resource_policy=u.resource_policy or "default")


@strawberry.type
class UserPayload:
    ok: bool
    msg: str
    user: UserPayloadUser | None


@strawberry.type
class CreateKeyPairResourcePolicyPayload:
    ok: bool
    msg: str
    resource_policy: KeyPairResourcePolicy | None
