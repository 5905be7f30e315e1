"""SQL side of the tenancy use cases (:mod:`bai.manager.domain.tenancy`) and of password login.

Every write is one transaction. Unique and foreign-key violations become domain errors here, at
the adapter border (``ALREADY_EXISTS`` for a taken name, ``NOT_FOUND`` for a policy, domain or
project that does not exist), so nothing is half-created.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bai.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from bai.manager.adapters.db.admin import SqlAdminRepository
from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import (
    DomainRow,
    FairShareWeightRow,
    KernelRow,
    KeypairResourcePolicyRow,
    KeypairRow,
    ProjectMemberRow,
    ProjectResourcePolicyRow,
    ProjectRow,
    SessionDependencyRow,
    SessionRow,
    StatusHistoryRow,
    UserResourcePolicyRow,
    UserRow,
    VFolderInvitationRow,
    VFolderQuotaScopeRow,
    VFolderRow,
    VFolderShareRow,
)
from bai.manager.domain.admin import KeypairView, Page, Scope, UserView
from bai.manager.domain.auth import LoginAccount
from bai.manager.domain.model import LIVE_STATES, utcnow
from bai.manager.domain.tenancy import (
    POLICY_LIMITS,
    DomainView,
    MemberView,
    NewKeypair,
    NewUser,
    PolicyView,
    ProjectView,
    PurgeReport,
)
from bai.manager.domain.vfolders.model import ScopeType, VFolderStatus
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SqlTenancyRepository"]

_POLICY_ROWS: dict[str, type[Any]] = {
    "keypair": KeypairResourcePolicyRow,
    "user": UserResourcePolicyRow,
    "project": ProjectResourcePolicyRow,
}
_USER_COLUMNS = frozenset({"username", "role", "status", "full_name", "description",
                           "need_password_change", "resource_policy", "password_hash",
                           "failed_login_count", "locked_until", "modified_at"})
_KEYPAIR_COLUMNS = frozenset({"is_active", "is_admin", "resource_policy", "rate_limit"})


def _domain_view(row: DomainRow) -> DomainView:
    return DomainView(name=row.name, description=row.description, is_active=row.is_active,
                      created_at=row.created_at,
                      total_resource_slots=dict(row.total_resource_slots or {}))


def _project_view(row: ProjectRow, members: Sequence[MemberView] = ()) -> ProjectView:
    return ProjectView(id=row.id, name=row.name, domain=row.domain_name,
                       description=row.description, is_active=row.is_active,
                       created_at=row.created_at,
                       total_resource_slots=dict(row.total_resource_slots or {}),
                       resource_policy=row.resource_policy or "default", members=tuple(members))


def _policy_view(kind: str, row: Any) -> PolicyView:
    limits = {k: getattr(row, k) for k in POLICY_LIMITS[kind] if getattr(row, k) is not None}
    if kind == "keypair":
        return PolicyView(kind=kind, name=row.name, created_at=row.created_at, limits=limits,
                          total_resource_slots=dict(row.total_resource_slots or {}),
                          default_for_unspecified=row.default_for_unspecified)
    return PolicyView(kind=kind, name=row.name, created_at=row.created_at, limits=limits)


def _integrity(exc: IntegrityError, what: str) -> Exception:
    text = str(exc.orig).lower()
    if "unique" in text or "duplicate" in text:
        return AlreadyExists(f"{what} already exists", reason="ALREADY_EXISTS")
    if "foreign key" in text:
        return NotFound(f"{what}: a referenced domain, project, user or resource policy does "
                        "not exist", reason="REFERENCE_NOT_FOUND")
    return InvalidArgument(f"{what}: rejected by the database", reason="CONSTRAINT_VIOLATION")


async def _members(s: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID,
                                                                     list[MemberView]]:
    found: dict[uuid.UUID, list[MemberView]] = defaultdict(list)
    if ids:
        query = (select(ProjectMemberRow.project_id, UserRow.id, UserRow.email,
                        ProjectMemberRow.role)
                 .join(UserRow, UserRow.id == ProjectMemberRow.user_id)
                 .where(ProjectMemberRow.project_id.in_(ids)).order_by(UserRow.email))
        for project_id, user_id, email, role in (await s.execute(query)).all():
            found[project_id].append(MemberView(user_id=user_id, email=email, role=role))
    return found


class SqlTenancyRepository:
    """Implements :class:`~bai.manager.domain.tenancy.TenancyRepository` and
    :class:`~bai.manager.domain.auth.LoginRepository`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._admin = SqlAdminRepository(db)

    async def _commit(self, what: str, work: Any) -> Any:
        try:
            async with self._db.write() as s:
                return await work(s)
        except IntegrityError as exc:
            raise _integrity(exc, what) from exc

    # ---- domains -------------------------------------------------------------------------

    async def list_domains(self, names: frozenset[str] | None, page: Page) -> tuple[
            list[DomainView], int]:
        query = select(DomainRow)
        if names is not None:
            query = query.where(DomainRow.name.in_(names))
        async with self._db.read() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = await s.scalars(query.order_by(DomainRow.name).offset(page.offset)
                                   .limit(page.limit))
            return [_domain_view(r) for r in rows], int(total or 0)

    async def get_domain(self, name: str) -> DomainView | None:
        async with self._db.read() as s:
            row = await s.get(DomainRow, name)
            return _domain_view(row) if row else None

    async def create_domain(self, domain: DomainView) -> DomainView:
        async def work(s: AsyncSession) -> DomainView:
            s.add(DomainRow(name=domain.name, description=domain.description,
                            is_active=domain.is_active, created_at=domain.created_at,
                            total_resource_slots=domain.total_resource_slots))
            await s.flush()
            return domain
        result: DomainView = await self._commit(f"domain {domain.name!r}", work)
        return result

    async def update_domain(self, name: str, changes: dict[str, Any]) -> DomainView:
        async def work(s: AsyncSession) -> DomainView:
            row = await s.get(DomainRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"domain {name!r} not found", reason="DOMAIN_NOT_FOUND")
            for key in ("description", "is_active", "total_resource_slots"):
                if key in changes:
                    setattr(row, key, changes[key])
            return _domain_view(row)
        result: DomainView = await self._commit(f"domain {name!r}", work)
        return result

    async def delete_domain(self, name: str) -> None:
        async def work(s: AsyncSession) -> None:
            if await s.get(DomainRow, name) is None:
                raise NotFound(f"domain {name!r} not found", reason="DOMAIN_NOT_FOUND")
            users = await s.scalar(select(func.count()).where(UserRow.domain_name == name))
            projects = await s.scalar(select(func.count()).where(ProjectRow.domain_name == name))
            if users or projects:
                raise FailedPrecondition(
                    f"domain {name!r} still has {users} user(s) and {projects} project(s)",
                    reason="DOMAIN_NOT_EMPTY")
            await s.execute(delete(DomainRow).where(DomainRow.name == name))
        await self._commit(f"domain {name!r}", work)

    # ---- projects ------------------------------------------------------------------------

    async def list_projects(self, domain: str | None, ids: frozenset[uuid.UUID] | None,
                            is_active: bool | None, page: Page) -> tuple[
            list[ProjectView], int]:
        query = select(ProjectRow)
        if domain is not None:
            query = query.where(ProjectRow.domain_name == domain)
        if ids is not None:
            query = query.where(ProjectRow.id.in_(ids))
        if is_active is not None:
            query = query.where(ProjectRow.is_active.is_(is_active))
        async with self._db.read() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = list(await s.scalars(query.order_by(ProjectRow.domain_name, ProjectRow.name)
                                        .offset(page.offset).limit(page.limit)))
            members = await _members(s, [r.id for r in rows])
            return [_project_view(r, members[r.id]) for r in rows], int(total or 0)

    async def _project_in(self, s: AsyncSession, project_id: uuid.UUID) -> ProjectView:
        row = await s.get(ProjectRow, project_id)
        if row is None:
            raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
        return _project_view(row, (await _members(s, [row.id]))[row.id])

    async def get_project(self, project_id: uuid.UUID) -> ProjectView | None:
        async with self._db.read() as s:
            row = await s.get(ProjectRow, project_id)
            if row is None:
                return None
            return _project_view(row, (await _members(s, [row.id]))[row.id])

    async def create_project(self, project: ProjectView) -> ProjectView:
        async def work(s: AsyncSession) -> ProjectView:
            s.add(ProjectRow(id=project.id, name=project.name, domain_name=project.domain,
                             description=project.description, is_active=project.is_active,
                             created_at=project.created_at,
                             total_resource_slots=project.total_resource_slots,
                             resource_policy=project.resource_policy))
            await s.flush()
            return project
        result: ProjectView = await self._commit(
            f"project {project.name!r} in domain {project.domain!r}", work)
        return result

    async def update_project(self, project_id: uuid.UUID, changes: dict[str, Any]) -> (
            ProjectView):
        async def work(s: AsyncSession) -> ProjectView:
            row = await s.get(ProjectRow, project_id, with_for_update=True)
            if row is None:
                raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
            for key in ("name", "description", "is_active", "resource_policy",
                        "total_resource_slots"):
                if key in changes:
                    setattr(row, key, changes[key])
            await s.flush()
            return await self._project_in(s, project_id)
        result: ProjectView = await self._commit(f"project {project_id}", work)
        return result

    async def delete_project(self, project_id: uuid.UUID) -> None:
        async def work(s: AsyncSession) -> None:
            row = await s.get(ProjectRow, project_id)
            if row is None:
                raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
            live = await s.scalar(select(func.count()).where(
                SessionRow.domain_name == row.domain_name, SessionRow.project_name == row.name,
                SessionRow.state.in_([x.value for x in LIVE_STATES])))
            folders = await s.scalar(select(func.count()).where(
                VFolderRow.owner_project_id == project_id,
                VFolderRow.status != VFolderStatus.PURGED.value))
            if live or folders:
                raise FailedPrecondition(
                    f"project {row.name!r} still has {live} live session(s) and {folders} "
                    "folder(s)", reason="PROJECT_NOT_EMPTY")
            await s.execute(delete(ProjectMemberRow).where(
                ProjectMemberRow.project_id == project_id))
            await s.execute(delete(VFolderRow).where(VFolderRow.owner_project_id == project_id))
            await s.execute(delete(ProjectRow).where(ProjectRow.id == project_id))
        await self._commit(f"project {project_id}", work)

    async def add_members(self, project_id: uuid.UUID, user_ids: list[uuid.UUID],
                          role: str) -> ProjectView:
        async def work(s: AsyncSession) -> ProjectView:
            project = await s.get(ProjectRow, project_id)
            if project is None:
                raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
            users = {u.id: u for u in await s.scalars(select(UserRow).where(
                UserRow.id.in_(user_ids)))}
            for user_id in user_ids:
                user = users.get(user_id)
                if user is None:
                    raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
                if user.domain_name != project.domain_name:
                    raise InvalidArgument(f"user {user.email} is not in domain "
                                          f"{project.domain_name!r}", reason="OTHER_DOMAIN")
                member = await s.get(ProjectMemberRow, (project_id, user_id))
                if member is None:
                    s.add(ProjectMemberRow(project_id=project_id, user_id=user_id, role=role))
                else:
                    member.role = role
            await s.flush()
            return await self._project_in(s, project_id)
        result: ProjectView = await self._commit(f"project {project_id}", work)
        return result

    async def remove_members(self, project_id: uuid.UUID, user_ids: list[uuid.UUID]) -> (
            ProjectView):
        async def work(s: AsyncSession) -> ProjectView:
            if await s.get(ProjectRow, project_id) is None:
                raise NotFound(f"project {project_id} not found", reason="PROJECT_NOT_FOUND")
            await s.execute(delete(ProjectMemberRow).where(
                ProjectMemberRow.project_id == project_id,
                ProjectMemberRow.user_id.in_(user_ids)))
            return await self._project_in(s, project_id)
        result: ProjectView = await self._commit(f"project {project_id}", work)
        return result

    # ---- users ---------------------------------------------------------------------------

    async def get_user(self, ref: str) -> UserView | None:
        try:
            scope = Scope(user_id=uuid.UUID(ref))
            email = ""
        except ValueError:
            scope, email = Scope(), ref.lower()
        return await self._admin.find_user(scope, email)

    async def user_view(self, user_id: uuid.UUID) -> UserView | None:
        return await self._admin.find_user(Scope(user_id=user_id), "")

    async def create_user(self, user: NewUser, keypair: NewKeypair | None) -> UserView:
        async def work(s: AsyncSession) -> None:
            s.add(UserRow(id=user.id, email=user.email, username=user.username,
                          role=user.role.value, domain_name=user.domain, status=user.status,
                          created_at=user.created_at, full_name=user.full_name,
                          description=user.description,
                          need_password_change=user.need_password_change,
                          resource_policy=user.resource_policy,
                          password_hash=user.password_hash))
            await s.flush()
            if user.project_ids:
                found = set(await s.scalars(select(ProjectRow.id).where(
                    ProjectRow.id.in_(user.project_ids), ProjectRow.domain_name == user.domain)))
                missing = [str(p) for p in user.project_ids if p not in found]
                if missing:
                    raise NotFound(f"project(s) {', '.join(missing)} not found in domain "
                                   f"{user.domain!r}", reason="PROJECT_NOT_FOUND")
                s.add_all(ProjectMemberRow(project_id=p, user_id=user.id, role="member")
                          for p in user.project_ids)
            if keypair is not None:
                s.add(_keypair_row(user.id, keypair, user.created_at))
            await s.flush()
        await self._commit(f"user {user.email!r}", work)
        created = await self.user_view(user.id)
        assert created is not None
        return created

    async def update_user(self, user_id: uuid.UUID, changes: dict[str, Any]) -> UserView:
        values = {k: v for k, v in changes.items() if k in _USER_COLUMNS}

        async def work(s: AsyncSession) -> None:
            done = await s.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
            if not done.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
        await self._commit(f"user {user_id}", work)
        updated = await self.user_view(user_id)
        assert updated is not None
        return updated

    async def delete_user(self, user_id: uuid.UUID) -> None:
        async def work(s: AsyncSession) -> None:
            await s.execute(update(UserRow).where(UserRow.id == user_id)
                            .values(status="deleted"))
            await s.execute(update(KeypairRow).where(KeypairRow.user_id == user_id)
                            .values(is_active=False))
        await self._commit(f"user {user_id}", work)

    async def purge_user(self, user_id: uuid.UUID, heir_id: uuid.UUID,
                         purge_shared_vfolders: bool) -> PurgeReport:
        async def work(s: AsyncSession) -> PurgeReport:
            user = await s.get(UserRow, user_id, with_for_update=True)
            if user is None:
                raise NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND")
            # Locking the keys first makes a session being created for one of them wait (its
            # foreign key) and then fail, so no live session slips past the check below.
            keys = list(await s.scalars(select(KeypairRow.access_key).where(
                KeypairRow.user_id == user_id).with_for_update()))
            await _refuse_live_sessions(s, user.email, keys)
            transferred = await _pass_shared_folders(s, user.email, user_id, heir_id,
                                                     purge_shared_vfolders)
            sessions = await _delete_sessions(s, keys)
            await _delete_user_rows(s, user_id, user.email)
            return PurgeReport(transferred_vfolder_ids=tuple(transferred),
                               deleted_keypair_count=len(keys), deleted_session_count=sessions)
        result: PurgeReport = await self._commit(f"purge of user {user_id}", work)
        return result

    # ---- keypairs ------------------------------------------------------------------------

    async def get_keypair(self, access_key: str) -> KeypairView | None:
        return await self._admin.get_keypair(access_key)

    async def create_keypair(self, user_id: uuid.UUID, keypair: NewKeypair) -> KeypairView:
        async def work(s: AsyncSession) -> None:
            s.add(_keypair_row(user_id, keypair, utcnow()))
            await s.flush()
        await self._commit(f"keypair {keypair.access_key}", work)
        created = await self.get_keypair(keypair.access_key)
        assert created is not None
        return created

    async def update_keypair(self, access_key: str, changes: dict[str, Any]) -> KeypairView:
        values = {k: v for k, v in changes.items() if k in _KEYPAIR_COLUMNS}

        async def work(s: AsyncSession) -> None:
            if values:
                await s.execute(update(KeypairRow).where(KeypairRow.access_key == access_key)
                                .values(**values))
        await self._commit(f"keypair {access_key}", work)
        updated = await self.get_keypair(access_key)
        if updated is None:
            raise NotFound(f"keypair {access_key!r} not found", reason="KEYPAIR_NOT_FOUND")
        return updated

    async def delete_keypair(self, access_key: str) -> None:
        async def work(s: AsyncSession) -> None:
            owned = await s.scalar(select(func.count()).where(
                SessionRow.access_key == access_key))
            if owned:
                raise FailedPrecondition(
                    f"keypair {access_key} owns {owned} session(s); deactivate it instead",
                    reason="KEYPAIR_IN_USE")
            await s.execute(delete(KeypairRow).where(KeypairRow.access_key == access_key))
        await self._commit(f"keypair {access_key}", work)

    # ---- resource policies ---------------------------------------------------------------

    async def list_policies(self, kind: str) -> list[PolicyView]:
        row_type = _POLICY_ROWS[kind]
        async with self._db.read() as s:
            rows = await s.scalars(select(row_type).order_by(row_type.name))
            return [_policy_view(kind, r) for r in rows]

    async def create_policy(self, policy: PolicyView) -> PolicyView:
        row_type = _POLICY_ROWS[policy.kind]
        values: dict[str, Any] = dict(policy.limits)
        if policy.kind == "keypair":
            values["total_resource_slots"] = policy.total_resource_slots
            values["default_for_unspecified"] = policy.default_for_unspecified
            values["allowed_vfolder_hosts"] = {}

        async def work(s: AsyncSession) -> PolicyView:
            row = row_type(name=policy.name, created_at=policy.created_at, **values)
            s.add(row)
            await s.flush()
            return _policy_view(policy.kind, row)
        result: PolicyView = await self._commit(
            f"{policy.kind} resource policy {policy.name!r}", work)
        return result

    async def update_policy(self, kind: str, name: str, changes: dict[str, Any]) -> PolicyView:
        row_type = _POLICY_ROWS[kind]

        async def work(s: AsyncSession) -> PolicyView:
            row = await s.get(row_type, name, with_for_update=True)
            if row is None:
                raise NotFound(f"{kind} resource policy {name!r} not found",
                               reason="RESOURCE_POLICY_NOT_FOUND")
            for key, value in changes.items():
                setattr(row, key, value)
            await s.flush()
            return _policy_view(kind, row)
        result: PolicyView = await self._commit(f"{kind} resource policy {name!r}", work)
        return result

    async def delete_policy(self, kind: str, name: str) -> None:
        row_type = _POLICY_ROWS[kind]
        owner: Any = {"keypair": KeypairRow, "user": UserRow, "project": ProjectRow}[kind]

        async def work(s: AsyncSession) -> None:
            if await s.get(row_type, name) is None:
                raise NotFound(f"{kind} resource policy {name!r} not found",
                               reason="RESOURCE_POLICY_NOT_FOUND")
            column: Any = owner.resource_policy
            used = await s.scalar(select(func.count()).where(column == name))
            if used:
                raise FailedPrecondition(f"{kind} resource policy {name!r} is used by {used} "
                                         f"{kind}(s)", reason="RESOURCE_POLICY_IN_USE")
            await s.execute(delete(row_type).where(row_type.name == name))
        await self._commit(f"{kind} resource policy {name!r}", work)

    # ---- password login ------------------------------------------------------------------

    async def login_account(self, email: str) -> LoginAccount | None:
        async with self._db.read() as s:
            row = await s.scalar(select(UserRow).where(UserRow.email == email))
            if row is None:
                return None
            return LoginAccount(user_id=row.id, email=row.email, domain=row.domain_name,
                                status=row.status, password_hash=row.password_hash,
                                locked_until=row.locked_until)

    async def record_login_failure(self, user_id: uuid.UUID, threshold: int,
                                   lock_until: datetime) -> bool:
        async with self._db.write() as s:
            # One UPDATE ... RETURNING-free increment, then a conditional lock, in one
            # transaction: two replicas counting at once never lose a failure.
            await s.execute(update(UserRow).where(UserRow.id == user_id).values(
                failed_login_count=UserRow.failed_login_count + 1))
            locked = await s.execute(
                update(UserRow).where(UserRow.id == user_id,
                                      UserRow.failed_login_count >= threshold)
                .values(failed_login_count=0, locked_until=lock_until))
            return bool(locked.rowcount)  # type: ignore[attr-defined]

    async def record_login_success(self, user_id: uuid.UUID, at: datetime) -> None:
        async with self._db.write() as s:
            await s.execute(update(UserRow).where(UserRow.id == user_id).values(
                failed_login_count=0, locked_until=None, last_login_at=at))

    async def main_keypair(self, user_id: uuid.UUID) -> KeypairView | None:
        async with self._db.read() as s:
            access_key = await s.scalar(
                select(KeypairRow.access_key)
                .where(KeypairRow.user_id == user_id, KeypairRow.is_active.is_(True))
                .order_by(KeypairRow.created_at, KeypairRow.access_key).limit(1))
        return await self.get_keypair(access_key) if access_key else None


async def _refuse_live_sessions(s: AsyncSession, email: str, keys: Sequence[str]) -> None:
    if not keys:
        return
    live = await s.scalar(select(func.count()).where(
        SessionRow.access_key.in_(keys), SessionRow.state.in_([x.value for x in LIVE_STATES])))
    if live:
        raise FailedPrecondition(f"user {email} still has {live} live session(s): terminate "
                                 "them first", reason="USER_HAS_LIVE_SESSIONS")


async def _pass_shared_folders(s: AsyncSession, email: str, user_id: uuid.UUID,
                               heir_id: uuid.UUID, purge_shared: bool) -> list[uuid.UUID]:
    """Gives the user's shared folders to ``heir_id`` (unless ``purge_shared``); refuses while
    any other folder of the user still holds contents (ready or in the trash)."""
    folders = {f.id: f for f in await s.scalars(select(VFolderRow).where(
        VFolderRow.owner_user_id == user_id, VFolderRow.status != VFolderStatus.PURGED.value))}
    shared = set() if purge_shared or not folders else set(await s.scalars(
        select(VFolderShareRow.vfolder_id).where(VFolderShareRow.vfolder_id.in_(folders),
                                                 VFolderShareRow.user_id != user_id)))
    kept = sorted(f.name for f in folders.values() if f.id not in shared)
    if kept:
        raise FailedPrecondition(
            f"user {email} still owns {len(kept)} folder(s) ({', '.join(kept)}): delete and "
            "purge them first" + ("" if purge_shared else " (shared folders pass to you)"),
            reason="USER_HAS_VFOLDERS")
    moved = sorted(shared)
    live_names = [n for f in moved if (n := folders[f].live_name)]  # trashed: no live name
    clashes = sorted(n for n in await s.scalars(select(VFolderRow.live_name).where(
        VFolderRow.owner_user_id == heir_id, VFolderRow.live_name.in_(live_names))) if n
        ) if live_names else []
    if clashes:  # the unique constraint would refuse too, but less precisely
        raise AlreadyExists(f"you already own folder(s) named {', '.join(clashes)}, as shared "
                            f"folders of {email} that would pass to you are: rename one first",
                            reason="VFOLDER_NAME_TAKEN")
    if moved:
        # The heir owns them now: its own share of them (if any) is redundant.
        await s.execute(delete(VFolderShareRow).where(VFolderShareRow.vfolder_id.in_(moved),
                                                      VFolderShareRow.user_id == heir_id))
        await s.execute(update(VFolderRow).where(VFolderRow.id.in_(moved))
                        .values(owner_user_id=heir_id))
        await s.flush()
    return moved


async def _delete_sessions(s: AsyncSession, keys: Sequence[str]) -> int:
    """The (finished) sessions of ``keys`` with their kernels, status history and dependencies,
    explicitly (SQLite enforces ON DELETE CASCADE only with its pragma on), by subquery: the
    ids never travel as thousands of bound parameters. Returns how many sessions went."""
    if not keys:
        return 0
    ids = select(SessionRow.id).where(SessionRow.access_key.in_(keys)).scalar_subquery()
    await s.execute(delete(SessionDependencyRow).where(
        SessionDependencyRow.session_id.in_(ids) | SessionDependencyRow.depends_on.in_(ids)))
    await s.execute(delete(KernelRow).where(KernelRow.session_id.in_(ids)))
    await s.execute(delete(StatusHistoryRow).where(StatusHistoryRow.session_id.in_(ids)))
    done = await s.execute(delete(SessionRow).where(SessionRow.access_key.in_(keys)))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def _delete_user_rows(s: AsyncSession, user_id: uuid.UUID, email: str) -> None:
    await s.execute(delete(KeypairRow).where(KeypairRow.user_id == user_id))
    await s.execute(delete(ProjectMemberRow).where(ProjectMemberRow.user_id == user_id))
    await s.execute(delete(VFolderShareRow).where(VFolderShareRow.user_id == user_id))
    await s.execute(delete(VFolderInvitationRow).where(
        (VFolderInvitationRow.inviter_user_id == user_id)
        | (VFolderInvitationRow.invitee_user_id == user_id)))
    await s.execute(delete(VFolderRow).where(VFolderRow.owner_user_id == user_id))  # purged
    await s.execute(delete(VFolderQuotaScopeRow).where(
        VFolderQuotaScopeRow.scope_type == ScopeType.USER.value,
        VFolderQuotaScopeRow.scope_id == user_id))
    await s.execute(delete(FairShareWeightRow).where(FairShareWeightRow.scope == "user",
                                                     FairShareWeightRow.subject == email))
    await s.execute(delete(UserRow).where(UserRow.id == user_id))


def _keypair_row(user_id: uuid.UUID, keypair: NewKeypair, at: datetime) -> KeypairRow:
    return KeypairRow(access_key=keypair.access_key, secret_key=keypair.secret_key,
                      user_id=user_id, is_active=keypair.is_active, is_admin=keypair.is_admin,
                      created_at=at, resource_policy=keypair.resource_policy,
                      rate_limit=keypair.rate_limit)
