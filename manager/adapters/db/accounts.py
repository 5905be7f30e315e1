"""SQL account repository (keypairs, projects) and the idempotent admin bootstrap."""

from __future__ import annotations

import logging
import uuid

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import (
    DomainRow,
    KeypairRow,
    ProjectMemberRow,
    ProjectRow,
    UserRow,
)
from bai.manager.domain.model import KeypairInfo, ProjectGrant, Role, utcnow
from bai.manager.domain.passwords import hash_password
from sqlalchemy import select, update

__all__ = ["ADMIN_EMAIL", "SqlAccountRepository", "bootstrap_admin", "create_user"]

log = logging.getLogger(__name__)
ADMIN_EMAIL = "admin@localhost"


class SqlAccountRepository:
    """Implements :class:`bai.manager.domain.ports.AccountRepository`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_keypair(self, access_key: str) -> KeypairInfo | None:
        async with self._db.read() as s:
            row = (
                await s.execute(
                    select(KeypairRow, UserRow)
                    .join(UserRow, UserRow.id == KeypairRow.user_id)
                    .where(KeypairRow.access_key == access_key)
                )
            ).first()
            if row is None:
                return None
            keypair, user = row
            # Memberships ride along so that RBAC (project admins) needs no query per call.
            grants = (await s.execute(
                select(ProjectRow.id, ProjectRow.name, ProjectMemberRow.role)
                .join(ProjectMemberRow, ProjectMemberRow.project_id == ProjectRow.id)
                .where(ProjectMemberRow.user_id == user.id)
            )).all()
        return KeypairInfo(
            access_key=keypair.access_key,
            secret_key=keypair.secret_key,
            is_active=keypair.is_active and user.status == "active",
            is_admin=keypair.is_admin,
            user_id=user.id,
            email=user.email,
            role=Role(user.role),
            domain=user.domain_name,
            projects=tuple(ProjectGrant(id=i, name=n, role=r) for i, n, r in grants),
            rate_limit=keypair.rate_limit,
            resource_policy=keypair.resource_policy or "default",
        )

    async def project_exists(self, domain: str, project: str) -> bool:
        async with self._db.read() as s:
            found = await s.scalar(
                select(ProjectRow.id).where(
                    ProjectRow.domain_name == domain, ProjectRow.name == project
                )
            )
        return found is not None


async def create_user(
    db: Database,
    *,
    email: str,
    access_key: str,
    secret_key: str,
    role: Role = Role.USER,
    domain: str = "default",
    project: str = "default",
    is_active: bool = True,
) -> uuid.UUID:
    """Creates (or updates) a user with one keypair in ``domain``/``project``; idempotent."""
    now = utcnow()
    async with db.write() as s:
        if await s.get(DomainRow, domain) is None:
            s.add(DomainRow(name=domain, description="", is_active=True, created_at=now))
            await s.flush()
        project_row = await s.scalar(
            select(ProjectRow).where(ProjectRow.domain_name == domain, ProjectRow.name == project)
        )
        if project_row is None:
            project_row = ProjectRow(id=uuid.uuid4(), name=project, domain_name=domain,
                                     description="", is_active=True, created_at=now)
            s.add(project_row)
        user = await s.scalar(select(UserRow).where(UserRow.email == email))
        if user is None:
            user = UserRow(id=uuid.uuid4(), email=email, username=email.split("@")[0],
                           role=role.value, domain_name=domain, status="active", created_at=now)
            s.add(user)
        else:
            user.role = role.value
        await s.flush()
        if await s.get(ProjectMemberRow, (project_row.id, user.id)) is None:
            s.add(ProjectMemberRow(project_id=project_row.id, user_id=user.id))
        keypair = await s.get(KeypairRow, access_key)
        is_admin = role in (Role.SUPERADMIN, Role.ADMIN)
        if keypair is None:
            s.add(KeypairRow(access_key=access_key, secret_key=secret_key, user_id=user.id,
                             is_active=is_active, is_admin=is_admin, created_at=now))
        else:
            if keypair.user_id != user.id:
                raise ValueError(f"access key {access_key} belongs to another user")
            keypair.secret_key, keypair.is_active, keypair.is_admin = (
                secret_key, is_active, is_admin,
            )
        return user.id


async def bootstrap_admin(db: Database, access_key: str, secret_key: str,
                          password: str | None = None) -> uuid.UUID:
    """Domain "default", project "default", superadmin admin@localhost with this keypair.

    ``password`` becomes the superadmin's web-login password only while it has none, so a
    password changed later is never reset by a rerun.
    """
    user_id = await create_user(
        db, email=ADMIN_EMAIL, access_key=access_key, secret_key=secret_key,
        role=Role.SUPERADMIN,
    )
    if password:
        async with db.write() as s:
            await s.execute(update(UserRow).where(UserRow.id == user_id,
                                                  UserRow.password_hash.is_(None))
                            .values(password_hash=hash_password(password)))
    log.info("bootstrapped superadmin %s with access key %s", ADMIN_EMAIL, access_key)
    return user_id
