"""Who may do what: the one authorization table every manager use case consults.

Roles are Backend.AI's (superadmin, admin = domain admin, user, monitor) plus the project admin,
a user whose membership in a project has the role ``admin``. The rules, by kind of object:

* superadmin: everything.
* monitor: lists and reads everything but other users' folders (their contents are private),
  changes nothing (``READ_ONLY_ROLE``).
* domain admin: everything inside its own domain (sessions, keypairs, users, projects, project
  folders), except that it never changes a superadmin's user or keypairs; it reads its own
  domain and every resource policy, and changes neither. It does not open users' private
  folders (as in Backend.AI's folder API).
* project admin: lists/reads/changes/deletes the sessions started in its projects, the folders
  its projects own, and changes its projects' membership (but does not delete the project).
* user: starts sessions only in projects it belongs to (of its own domain); its own sessions
  and folders (everything), its own user (read, change), its own keypairs
  (read), its projects and the folders they own (read), its domain and resource policies (read).
* resource groups and fair-share weights: only a superadmin changes them; a domain admin reads
  the groups its domain may use and the weights of its domain's projects and users; a user reads
  the groups one of its projects may use (``Target.allowed_domains`` / ``allowed_projects``,
  empty meaning everyone, as the scheduler reads them).

Anything else is denied with ``PERMISSION_DENIED``. Use cases call :func:`authorize` (raises) or
:func:`allows` (a bool, for filtering and for "not found" instead of "forbidden" answers).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from bai.manager.domain.errors import NotAllowed
from bai.manager.domain.model import Principal, Role

__all__ = ["Action", "Kind", "Target", "admin_project_ids", "allows", "authorize",
           "member_project_ids"]


class Action(enum.StrEnum):
    LIST = "list"
    READ = "read"
    CREATE = "create"
    MODIFY = "modify"
    DELETE = "delete"

    @property
    def writes(self) -> bool:
        return self not in (Action.LIST, Action.READ)


class Kind(enum.StrEnum):
    SESSION = "session"
    VFOLDER = "vfolder"
    KEYPAIR = "keypair"
    USER = "user"
    PROJECT = "project"
    DOMAIN = "domain"
    RESOURCE_POLICY = "resource_policy"
    AGENT = "agent"
    AUDIT_LOG = "audit_log"
    RESOURCE_GROUP = "resource_group"
    FAIR_SHARE_WEIGHT = "fair_share_weight"


@dataclass(frozen=True, slots=True)
class Target:
    """The object of an action, described by what the rules look at (None = not known)."""

    kind: Kind
    domain: str | None = None
    """The domain the object lives in."""
    owner_user_id: uuid.UUID | None = None
    """Users: the user itself; keypairs, folders: the owning user."""
    owner_access_key: str | None = None
    """Sessions: the owning access key."""
    owner_role: Role | None = None
    """Users and keypairs: the (owning) user's role; for a create, the role asked for."""
    project_id: uuid.UUID | None = None
    """Projects: the project; folders: the owning project."""
    project_name: str | None = None
    """Sessions: the project (of ``domain``) they were started in."""
    allowed_domains: frozenset[str] = frozenset()
    """Resource groups: the domains that may use it (empty: every domain)."""
    allowed_projects: frozenset[str] = frozenset()
    """Resource groups: the ``domain/project`` names that may use it (empty: every project)."""


def admin_project_ids(who: Principal) -> frozenset[uuid.UUID]:
    return frozenset(p.id for p in who.projects if p.role == "admin")


def member_project_ids(who: Principal) -> frozenset[uuid.UUID]:
    return frozenset(p.id for p in who.projects)


def _in_domain(who: Principal, target: Target) -> bool:
    return target.domain is not None and target.domain == who.domain


def _project_admin_of(who: Principal, target: Target) -> bool:
    if target.project_id is not None and target.project_id in admin_project_ids(who):
        return True
    return (target.project_name is not None and _in_domain(who, target)
            and any(p.name == target.project_name and p.role == "admin" for p in who.projects))


def _group_admits_domain(who: Principal, target: Target) -> bool:
    """Whether a resource group may be used by some project of the caller's domain."""
    if target.allowed_domains and who.domain not in target.allowed_domains:
        return False
    return not target.allowed_projects or any(
        p.startswith(f"{who.domain}/") for p in target.allowed_projects)


def _group_admits_member(who: Principal, target: Target) -> bool:
    """Whether a resource group may be used by one of the caller's projects."""
    if target.allowed_domains and who.domain not in target.allowed_domains:
        return False
    return not target.allowed_projects or any(
        f"{who.domain}/{p.name}" in target.allowed_projects for p in who.projects)


def _domain_admin(who: Principal, action: Action, target: Target) -> bool:
    if target.kind is Kind.RESOURCE_GROUP:
        return not action.writes and _group_admits_domain(who, target)
    if target.kind is Kind.FAIR_SHARE_WEIGHT:
        return not action.writes and _in_domain(who, target)
    if target.kind in (Kind.DOMAIN, Kind.RESOURCE_POLICY):
        return not action.writes and (target.kind is Kind.RESOURCE_POLICY
                                      or _in_domain(who, target) or action is Action.LIST)
    if target.kind is Kind.VFOLDER:
        return target.project_id is not None and _in_domain(who, target)
    if target.kind is Kind.AGENT:
        return False
    if target.kind is Kind.AUDIT_LOG:
        return action is Action.LIST
    if target.owner_role is Role.SUPERADMIN and action.writes:
        return False  # it sees its domain's superadmins, but never changes them
    return _in_domain(who, target)


def _member(who: Principal, action: Action, target: Target) -> bool:
    kind, own_user = target.kind, target.owner_user_id == who.user_id
    match kind:
        case Kind.SESSION:
            if action is Action.CREATE:  # only in a project one belongs to
                return _in_domain(who, target) and any(
                    p.name == target.project_name for p in who.projects)
            return target.owner_access_key == who.access_key or _project_admin_of(who, target)
        case Kind.VFOLDER:
            if own_user or _project_admin_of(who, target):
                return True
            return not action.writes and target.project_id in member_project_ids(who)
        case Kind.USER:
            return own_user and action in (Action.LIST, Action.READ, Action.MODIFY)
        case Kind.KEYPAIR:
            return own_user and not action.writes
        case Kind.PROJECT:
            if _project_admin_of(who, target):
                return action is not Action.DELETE and action is not Action.CREATE
            return not action.writes and target.project_id in member_project_ids(who)
        case Kind.DOMAIN:
            return not action.writes and (_in_domain(who, target) or action is Action.LIST)
        case Kind.RESOURCE_POLICY:
            return not action.writes
        case Kind.RESOURCE_GROUP:
            return not action.writes and _group_admits_member(who, target)
    return False


def allows(who: Principal, action: Action, target: Target) -> bool:
    """Whether ``who`` may do ``action`` to ``target``."""
    if who.role is Role.SUPERADMIN:
        return True
    if who.role is Role.MONITOR and target.kind is not Kind.VFOLDER:
        return not action.writes
    if who.role is Role.MONITOR and action.writes:
        return False
    if who.role is Role.ADMIN and _domain_admin(who, action, target):
        return True
    return _member(who, action, target)


def authorize(who: Principal, action: Action, target: Target) -> None:
    """Raises :class:`NotAllowed` unless ``who`` may do ``action`` to ``target``."""
    if allows(who, action, target):
        return
    if who.role is Role.MONITOR:
        raise NotAllowed(f"monitors have read-only access (cannot {action} a {target.kind})",
                         reason="READ_ONLY_ROLE")
    raise NotAllowed(f"{who.email} may not {action} this {target.kind}")
