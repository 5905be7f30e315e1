"""Who may do what with a folder: one function per decision, so an RBAC module can replace them.

Roles come from the users table (superadmin, admin = domain admin, user, monitor) and the
project membership role (member or admin).

Simplification: ``wd`` grants the same file rights as ``rw`` (upload, mkdir, move, delete files);
folder-level actions (rename, trash, purge, share, options, quota) stay with the owner of a user
folder, or the admins of a project folder, whatever a share grants.
"""

from __future__ import annotations

import uuid

from bai.manager.domain import rbac
from bai.manager.domain.model import Principal, Role
from bai.manager.domain.vfolders.model import Permission, ScopeType, VFolderRecord

__all__ = [
    "access_permission",
    "can_create_project_folder",
    "can_manage",
    "can_read_scope_quota",
    "can_set_scope_quota",
    "can_write",
]

PROJECT_ADMIN = "admin"


def _domain_admin_of(who: Principal, domain: str) -> bool:
    return who.role is Role.ADMIN and bool(domain) and who.domain == domain


def access_permission(who: Principal, record: VFolderRecord, *, member_role: str | None,
                      share: Permission | None) -> Permission | None:
    """The caller's permission on a folder, or None when they may not see it at all.

    A share (or accepted invitation) overrides the folder's own permission: that is what a
    shared folder is mounted with.
    """
    if record.owner_user_id is not None and record.owner_user_id == who.user_id:
        return record.permission
    if share is not None:
        return share
    if record.owner_project_id is not None and member_role is not None:
        return record.permission
    if who.is_superadmin:
        return record.permission
    if record.owner_project_id is not None and _domain_admin_of(who, record.project_domain):
        return record.permission
    return None


def can_manage(who: Principal, record: VFolderRecord, *, member_role: str | None) -> bool:
    """Rename, trash, restore, purge, share, invite, change options or quota of a folder:
    the manager's RBAC decides (``member_role`` is the fresh membership, read per call)."""
    target = rbac.Target(rbac.Kind.VFOLDER, domain=record.project_domain or None,
                         owner_user_id=record.owner_user_id,
                         project_id=record.owner_project_id)
    return rbac.allows(who, rbac.Action.MODIFY, target) or (
        record.owner_project_id is not None and member_role == PROJECT_ADMIN)


def can_create_project_folder(who: Principal, *, project_domain: str,
                              member_role: str | None) -> bool:
    """Only project admins, domain admins of the project's domain and superadmins."""
    return (who.is_superadmin or member_role == PROJECT_ADMIN
            or _domain_admin_of(who, project_domain))


def can_write(permission: Permission | None) -> bool:
    """Upload, mkdir, move and delete files."""
    return permission in (Permission.READ_WRITE, Permission.READ_WRITE_DELETE)


def can_set_scope_quota(who: Principal, *, scope_domain: str) -> bool:
    return who.is_superadmin or _domain_admin_of(who, scope_domain)


def can_read_scope_quota(who: Principal, scope_type: ScopeType, scope_id: uuid.UUID, *,
                         scope_domain: str, member_role: str | None) -> bool:
    if scope_type is ScopeType.USER and scope_id == who.user_id:
        return True
    if scope_type is ScopeType.PROJECT and member_role is not None:
        return True
    return can_set_scope_quota(who, scope_domain=scope_domain)
