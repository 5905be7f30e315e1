"""Tenancy use cases: domains, projects and members, users, keypairs, resource policies.

Each use case validates its input, asks :mod:`bai.manager.domain.rbac` whether the caller may do
it, then makes one repository call (one transaction). Uniqueness is guarded by the database's
constraints (the repository turns a violation into ``ALREADY_EXISTS``), not by a SELECT first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from bai.common.auth import generate_keypair
from bai.common.errors import FailedPrecondition, InvalidArgument, NotFound
from bai.manager.domain import rbac, slots
from bai.manager.domain.admin import KeypairView, Page, UserView
from bai.manager.domain.errors import InvalidSlots
from bai.manager.domain.model import Principal, Role, utcnow
from bai.manager.domain.passwords import MIN_PASSWORD_LENGTH, hash_password_async
from bai.manager.domain.rbac import Action, Kind, Target

__all__ = [
    "POLICY_LIMITS",
    "DomainView",
    "NewKeypair",
    "NewUser",
    "PolicyView",
    "ProjectView",
    "PurgeReport",
    "TenancyRepository",
    "TenancyService",
    "generate_keypair",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,63}$")
USER_STATUSES = ("active", "inactive", "before-verification")
MEMBER_ROLES = ("member", "admin")


POLICY_LIMITS: Mapping[str, frozenset[str]] = {
    "keypair": frozenset({"max_session_lifetime", "max_concurrent_sessions",
                          "max_pending_session_count", "max_concurrent_sftp_sessions",
                          "max_containers_per_session", "idle_timeout"}),
    "user": frozenset({"max_vfolder_count", "max_quota_scope_size",
                       "max_session_count_per_model_session", "max_customized_image_count"}),
    "project": frozenset({"max_vfolder_count", "max_quota_scope_size", "max_network_count"}),
}
"""Integer limits by policy kind (quota sizes may be -1 = unlimited)."""


@dataclass(frozen=True, slots=True)
class DomainView:
    name: str
    description: str
    is_active: bool
    created_at: datetime
    total_resource_slots: dict[str, str]


@dataclass(frozen=True, slots=True)
class MemberView:
    user_id: uuid.UUID
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class ProjectView:
    id: uuid.UUID
    name: str
    domain: str
    description: str
    is_active: bool
    created_at: datetime
    total_resource_slots: dict[str, str]
    resource_policy: str
    members: tuple[MemberView, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyView:
    kind: str
    name: str
    created_at: datetime
    limits: dict[str, int]
    total_resource_slots: dict[str, str] = field(default_factory=dict)
    default_for_unspecified: str = ""


@dataclass(frozen=True, slots=True)
class NewKeypair:
    access_key: str
    secret_key: str
    is_active: bool = True
    is_admin: bool = False
    resource_policy: str = "default"
    rate_limit: int = 30000


@dataclass(frozen=True, slots=True)
class NewUser:
    id: uuid.UUID
    email: str
    username: str
    role: Role
    domain: str
    status: str
    full_name: str
    description: str
    need_password_change: bool
    resource_policy: str
    password_hash: str | None
    project_ids: tuple[uuid.UUID, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What :meth:`TenancyService.purge_user` did."""

    transferred_vfolder_ids: tuple[uuid.UUID, ...]
    """Shared folders of the purged user that now belong to the purging admin."""
    deleted_keypair_count: int
    deleted_session_count: int
    """Finished sessions deleted with their kernels and status history."""


class TenancyRepository(Protocol):
    async def list_domains(self, names: frozenset[str] | None, page: Page) -> tuple[
        list[DomainView], int]: ...
    async def get_domain(self, name: str) -> DomainView | None: ...
    async def create_domain(self, domain: DomainView) -> DomainView: ...
    async def update_domain(self, name: str, changes: dict[str, Any]) -> DomainView: ...
    async def delete_domain(self, name: str) -> None: ...

    async def list_projects(self, domain: str | None, ids: frozenset[uuid.UUID] | None,
                            is_active: bool | None, page: Page) -> tuple[
        list[ProjectView], int]: ...
    async def get_project(self, project_id: uuid.UUID) -> ProjectView | None: ...
    async def create_project(self, project: ProjectView) -> ProjectView: ...
    async def update_project(self, project_id: uuid.UUID, changes: dict[str, Any]) -> (
        ProjectView): ...
    async def delete_project(self, project_id: uuid.UUID) -> None: ...
    async def add_members(self, project_id: uuid.UUID, user_ids: list[uuid.UUID],
                          role: str) -> ProjectView: ...
    async def remove_members(self, project_id: uuid.UUID, user_ids: list[uuid.UUID]) -> (
        ProjectView): ...

    async def get_user(self, ref: str) -> UserView | None: ...
    async def create_user(self, user: NewUser, keypair: NewKeypair | None) -> UserView: ...
    async def update_user(self, user_id: uuid.UUID, changes: dict[str, Any]) -> UserView: ...
    async def delete_user(self, user_id: uuid.UUID) -> None: ...
    async def purge_user(self, user_id: uuid.UUID, heir_id: uuid.UUID,
                         purge_shared_vfolders: bool) -> PurgeReport:
        """Deletes the user and what hangs on it in one transaction, or nothing: refuses
        (FAILED_PRECONDITION) while it has live sessions or folders that are neither purged
        nor (without ``purge_shared_vfolders``) shared, which pass to ``heir_id``."""
        ...

    async def get_keypair(self, access_key: str) -> KeypairView | None: ...
    async def create_keypair(self, user_id: uuid.UUID, keypair: NewKeypair) -> KeypairView: ...
    async def update_keypair(self, access_key: str, changes: dict[str, Any]) -> KeypairView: ...
    async def delete_keypair(self, access_key: str) -> None: ...

    async def list_policies(self, kind: str) -> list[PolicyView]: ...
    async def create_policy(self, policy: PolicyView) -> PolicyView: ...
    async def update_policy(self, kind: str, name: str, changes: dict[str, Any]) -> (
        PolicyView): ...
    async def delete_policy(self, kind: str, name: str) -> None: ...


def _name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise InvalidArgument(f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-'",
                              reason="INVALID_NAME")
    return value


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument(f"{what} {value!r} is not a UUID", reason="INVALID_ID") from exc


def _role(value: str) -> Role:
    try:
        return Role(value.strip().lower() or "user")
    except ValueError as exc:
        raise InvalidArgument(f"unknown role {value!r} (superadmin, admin, user or monitor)",
                              reason="INVALID_ROLE") from exc


async def _password(value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
                              reason="WEAK_PASSWORD")
    return await hash_password_async(value)


def _status(value: str) -> str:
    status = value.strip().lower() or "active"
    if status not in USER_STATUSES:
        raise InvalidArgument(f"unknown user status {value!r} ({', '.join(USER_STATUSES)})",
                              reason="INVALID_STATUS")
    return status


def _slot_caps(raw: Mapping[str, str]) -> dict[str, str]:
    try:
        return slots.to_strings(slots.parse_request(raw))
    except InvalidSlots as exc:
        raise InvalidArgument(exc.message, reason="INVALID_RESOURCE_SLOTS") from exc


def _limits(kind: str, raw: Mapping[str, int]) -> dict[str, int]:
    allowed = POLICY_LIMITS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidArgument(f"unknown {kind} policy limit(s): {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(allowed))})", reason="UNKNOWN_LIMIT")
    for key, value in raw.items():
        floor = -1 if key == "max_quota_scope_size" else 0
        if value < floor or value > 2**62:
            raise InvalidArgument(f"{key}={value} is out of range", reason="INVALID_LIMIT")
    return dict(raw)


def _policy_kind(kind: str) -> str:
    if kind not in POLICY_LIMITS:
        raise InvalidArgument("a resource policy kind (keypair, user or project) is required",
                              reason="INVALID_POLICY_KIND")
    return kind


def _user_target(user: UserView) -> Target:
    return Target(Kind.USER, domain=user.domain, owner_user_id=user.id, owner_role=user.role)


class TenancyService:
    def __init__(self, repo: TenancyRepository,
                 on_identity_change: Callable[[], None] | None = None) -> None:
        self._repo = repo
        # Called after a change to users, keypairs or memberships (drops cached credentials).
        self._changed = on_identity_change or (lambda: None)

    # ---- domains -------------------------------------------------------------------------

    async def list_domains(self, who: Principal, page: Page) -> tuple[list[DomainView], int]:
        rbac.authorize(who, Action.LIST, Target(Kind.DOMAIN))
        names = None if who.role in (Role.SUPERADMIN, Role.MONITOR) else frozenset({who.domain})
        return await self._repo.list_domains(names, page)

    async def create_domain(self, who: Principal, name: str, description: str, is_active: bool,
                            caps: Mapping[str, str]) -> DomainView:
        domain = DomainView(name=_name(name, "domain"), description=description,
                            is_active=is_active, created_at=utcnow(),
                            total_resource_slots=_slot_caps(caps))
        rbac.authorize(who, Action.CREATE, Target(Kind.DOMAIN, domain=name))
        return await self._repo.create_domain(domain)

    async def update_domain(self, who: Principal, name: str, changes: dict[str, Any]) -> (
            DomainView):
        rbac.authorize(who, Action.MODIFY, Target(Kind.DOMAIN, domain=name))
        if "total_resource_slots" in changes:
            changes["total_resource_slots"] = _slot_caps(changes["total_resource_slots"])
        return await self._repo.update_domain(name, changes)

    async def delete_domain(self, who: Principal, name: str) -> None:
        rbac.authorize(who, Action.DELETE, Target(Kind.DOMAIN, domain=name))
        await self._repo.delete_domain(name)

    # ---- projects ------------------------------------------------------------------------

    async def list_projects(self, who: Principal, domain: str, is_active: bool | None,
                            page: Page) -> tuple[list[ProjectView], int]:
        if who.role in (Role.SUPERADMIN, Role.MONITOR):
            return await self._repo.list_projects(domain or None, None, is_active, page)
        if who.role is Role.ADMIN:
            if domain and domain != who.domain:
                return [], 0
            return await self._repo.list_projects(who.domain, None, is_active, page)
        return await self._repo.list_projects(domain or None, rbac.member_project_ids(who),
                                              is_active, page)

    async def _project(self, who: Principal, action: Action, project_id: str) -> ProjectView:
        project = await self._repo.get_project(_uuid(project_id, "project id"))
        if project is None or not rbac.allows(who, Action.READ, _project_target(project)):
            raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
        rbac.authorize(who, action, _project_target(project))
        return project

    async def get_project(self, who: Principal, project_id: str) -> ProjectView:
        return await self._project(who, Action.READ, project_id)

    async def create_project(self, who: Principal, name: str, domain: str, description: str,
                             is_active: bool, caps: Mapping[str, str],
                             resource_policy: str) -> ProjectView:
        domain = domain or who.domain
        project = ProjectView(id=uuid.uuid4(), name=_name(name, "project"), domain=domain,
                              description=description, is_active=is_active,
                              created_at=utcnow(), total_resource_slots=_slot_caps(caps),
                              resource_policy=resource_policy or "default")
        rbac.authorize(who, Action.CREATE, Target(Kind.PROJECT, domain=domain))
        return await self._repo.create_project(project)

    async def update_project(self, who: Principal, project_id: str,
                             changes: dict[str, Any]) -> ProjectView:
        project = await self._project(who, Action.MODIFY, project_id)
        if "name" in changes:
            _name(changes["name"], "project")
        if "total_resource_slots" in changes:
            changes["total_resource_slots"] = _slot_caps(changes["total_resource_slots"])
        return await self._repo.update_project(project.id, changes)

    async def delete_project(self, who: Principal, project_id: str) -> None:
        project = await self._project(who, Action.DELETE, project_id)
        await self._repo.delete_project(project.id)

    async def add_members(self, who: Principal, project_id: str, user_ids: list[str],
                          role: str) -> ProjectView:
        project = await self._project(who, Action.MODIFY, project_id)
        role = role or "member"
        if role not in MEMBER_ROLES:
            raise InvalidArgument(f"member role {role!r} is neither member nor admin",
                                  reason="INVALID_ROLE")
        updated = await self._repo.add_members(
            project.id, [_uuid(u, "user id") for u in user_ids], role)
        self._changed()
        return updated

    async def remove_members(self, who: Principal, project_id: str,
                             user_ids: list[str]) -> ProjectView:
        project = await self._project(who, Action.MODIFY, project_id)
        updated = await self._repo.remove_members(project.id,
                                                  [_uuid(u, "user id") for u in user_ids])
        self._changed()
        return updated

    # ---- users ---------------------------------------------------------------------------

    async def _user(self, who: Principal, action: Action, ref: str) -> UserView:
        user = await self._repo.get_user(ref.strip() or str(who.user_id))
        if user is None or not rbac.allows(who, Action.READ, _user_target(user)):
            raise NotFound(f"user {ref!r} not found", reason="USER_NOT_FOUND")
        rbac.authorize(who, action, _user_target(user))
        return user

    async def get_user(self, who: Principal, ref: str) -> UserView:
        return await self._user(who, Action.READ, ref)

    async def create_user(self, who: Principal, *, email: str, username: str, password: str,
                          role: str, domain: str, status: str, full_name: str, description: str,
                          need_password_change: bool, project_ids: list[str],
                          resource_policy: str, with_keypair: bool) -> tuple[
            UserView, KeypairView | None]:
        email = email.strip().lower()
        if not _EMAIL_RE.match(email):
            raise InvalidArgument(f"{email!r} is not an e-mail address", reason="INVALID_EMAIL")
        user_role, domain = _role(role), domain or who.domain
        rbac.authorize(who, Action.CREATE, Target(Kind.USER, domain=domain,
                                                  owner_role=user_role))
        new = NewUser(
            id=uuid.uuid4(), email=email, username=username or email.split("@")[0],
            role=user_role, domain=domain, status=_status(status), full_name=full_name,
            description=description, need_password_change=need_password_change,
            resource_policy=resource_policy or "default",
            password_hash=await _password(password) if password else None,
            project_ids=tuple(_uuid(p, "project id") for p in project_ids),
            created_at=utcnow())
        keypair = None
        if with_keypair:
            access, secret = generate_keypair()
            keypair = NewKeypair(access_key=access, secret_key=secret,
                                 is_admin=user_role in (Role.SUPERADMIN, Role.ADMIN))
        user = await self._repo.create_user(new, keypair)
        created = await self._repo.get_keypair(keypair.access_key) if keypair else None
        return user, created

    async def update_user(self, who: Principal, ref: str, changes: dict[str, Any]) -> UserView:
        user = await self._user(who, Action.MODIFY, ref)
        privileged = {"role", "status", "resource_policy"} & set(changes)
        if privileged and (who.user_id == user.id and who.role is not Role.SUPERADMIN):
            raise FailedPrecondition(
                f"you cannot change your own {', '.join(sorted(privileged))}",
                reason="SELF_PRIVILEGE_CHANGE")
        if "role" in changes:
            new_role = _role(changes["role"])
            rbac.authorize(who, Action.MODIFY, Target(Kind.USER, domain=user.domain,
                                                      owner_role=new_role))
            changes["role"] = new_role.value
        if "status" in changes:
            changes["status"] = _status(changes["status"])
        if "password" in changes:
            changes["password_hash"] = await _password(changes.pop("password"))
            changes["failed_login_count"], changes["locked_until"] = 0, None
        changes["modified_at"] = utcnow()
        updated = await self._repo.update_user(user.id, changes)
        self._changed()
        return updated

    async def delete_user(self, who: Principal, ref: str) -> None:
        user = await self._user(who, Action.DELETE, ref)
        if user.id == who.user_id:
            raise FailedPrecondition("you cannot delete yourself", reason="SELF_DELETE")
        await self._repo.delete_user(user.id)
        self._changed()

    async def purge_user(self, who: Principal, ref: str,
                         purge_shared_vfolders: bool) -> PurgeReport:
        """Backend.AI's ``purge_user``. Unlike Backend.AI, live sessions are not destroyed on
        the way (refused instead: terminate them first), and folder contents are not erased
        here (the user's unshared folders must be deleted and purged first); shared folders
        pass to the caller, as in Backend.AI."""
        user = await self._user(who, Action.DELETE, ref)
        if user.id == who.user_id:
            raise FailedPrecondition("you cannot purge yourself", reason="SELF_DELETE")
        report = await self._repo.purge_user(user.id, who.user_id, purge_shared_vfolders)
        self._changed()
        return report

    # ---- keypairs ------------------------------------------------------------------------

    async def _keypair(self, who: Principal, action: Action, access_key: str) -> KeypairView:
        keypair = await self._repo.get_keypair(access_key.strip())
        if keypair is None:
            raise NotFound(f"keypair {access_key!r} not found", reason="KEYPAIR_NOT_FOUND")
        owner = await self._repo.get_user(str(keypair.user_id))
        target = Target(Kind.KEYPAIR, domain=owner.domain if owner else None,
                        owner_user_id=keypair.user_id, owner_role=keypair.role)
        if not rbac.allows(who, Action.READ, target):
            raise NotFound(f"keypair {access_key!r} not found", reason="KEYPAIR_NOT_FOUND")
        rbac.authorize(who, action, target)
        return keypair

    async def get_keypair(self, who: Principal, access_key: str) -> KeypairView:
        keypair = await self._keypair(who, Action.READ, access_key)
        if who.role is Role.SUPERADMIN or keypair.user_id == who.user_id:
            return keypair
        return replace(keypair, secret_key="")

    async def create_keypair(self, who: Principal, user_ref: str, *, is_active: bool,
                             is_admin: bool, resource_policy: str,
                             rate_limit: int) -> KeypairView:
        owner = await self._user(who, Action.READ, user_ref)
        rbac.authorize(who, Action.CREATE, Target(Kind.KEYPAIR, domain=owner.domain,
                                                  owner_user_id=owner.id,
                                                  owner_role=owner.role))
        if rate_limit < 0:
            raise InvalidArgument("rate_limit must not be negative", reason="INVALID_RATE_LIMIT")
        access, secret = generate_keypair()
        return await self._repo.create_keypair(owner.id, NewKeypair(
            access_key=access, secret_key=secret, is_active=is_active, is_admin=is_admin,
            resource_policy=resource_policy or "default", rate_limit=rate_limit or 30000))

    async def update_keypair(self, who: Principal, access_key: str,
                             changes: dict[str, Any]) -> KeypairView:
        keypair = await self._keypair(who, Action.MODIFY, access_key)
        if "rate_limit" in changes and changes["rate_limit"] <= 0:
            raise InvalidArgument("rate_limit must be positive", reason="INVALID_RATE_LIMIT")
        if changes.get("is_active") is False and keypair.access_key == who.access_key:
            raise FailedPrecondition("you cannot deactivate the keypair you are signing with",
                                     reason="SELF_DEACTIVATE")
        updated = await self._repo.update_keypair(keypair.access_key, changes)
        self._changed()
        return updated

    async def delete_keypair(self, who: Principal, access_key: str) -> None:
        keypair = await self._keypair(who, Action.DELETE, access_key)
        if keypair.access_key == who.access_key:
            raise FailedPrecondition("you cannot delete the keypair you are signing with",
                                     reason="SELF_DELETE")
        await self._repo.delete_keypair(keypair.access_key)
        self._changed()

    # ---- resource policies ---------------------------------------------------------------

    async def list_policies(self, who: Principal, kind: str) -> list[PolicyView]:
        rbac.authorize(who, Action.LIST, Target(Kind.RESOURCE_POLICY))
        return await self._repo.list_policies(_policy_kind(kind))

    async def create_policy(self, who: Principal, policy: PolicyView) -> PolicyView:
        kind = _policy_kind(policy.kind)
        _name(policy.name, "resource policy")
        rbac.authorize(who, Action.CREATE, Target(Kind.RESOURCE_POLICY))
        return await self._repo.create_policy(PolicyView(
            kind=kind, name=policy.name, created_at=utcnow(),
            limits=_limits(kind, policy.limits),
            total_resource_slots=_slot_caps(policy.total_resource_slots),
            default_for_unspecified=_default_for_unspecified(policy.default_for_unspecified)))

    async def update_policy(self, who: Principal, kind: str, name: str,
                            changes: dict[str, Any]) -> PolicyView:
        kind = _policy_kind(kind)
        rbac.authorize(who, Action.MODIFY, Target(Kind.RESOURCE_POLICY))
        values: dict[str, Any] = _limits(kind, changes.pop("limits", {}))
        if "total_resource_slots" in changes:
            values["total_resource_slots"] = _slot_caps(changes["total_resource_slots"])
        if changes.get("default_for_unspecified"):
            values["default_for_unspecified"] = _default_for_unspecified(
                changes["default_for_unspecified"])
        return await self._repo.update_policy(kind, name, values)

    async def delete_policy(self, who: Principal, kind: str, name: str) -> None:
        kind = _policy_kind(kind)
        rbac.authorize(who, Action.DELETE, Target(Kind.RESOURCE_POLICY))
        await self._repo.delete_policy(kind, name)


def _default_for_unspecified(value: str) -> str:
    value = value.strip().upper() or "UNLIMITED"
    if value not in ("LIMITED", "UNLIMITED"):
        raise InvalidArgument(f"default_for_unspecified {value!r} is neither LIMITED nor "
                              "UNLIMITED", reason="INVALID_ARGUMENT")
    return value


def _project_target(project: ProjectView) -> Target:
    return Target(Kind.PROJECT, domain=project.domain, project_id=project.id)
