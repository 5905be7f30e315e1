"""SQLAlchemy 2 models of the manager database (the Alembic migrations create the same schema).

Slots are JSON objects of decimal strings. Timestamps are stored in UTC and read back
timezone-aware on both SQLite and PostgreSQL. A live session's name is unique per owner through
``live_name``: it equals ``name`` while the session is live and is NULL once it is terminal
(NULLs never collide in a unique constraint, on either database).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AgentImageRow",
    "AgentRow",
    "AuditLogRow",
    "Base",
    "DomainRow",
    "FairShareWeightRow",
    "ImageRow",
    "KernelRow",
    "KeypairResourcePolicyRow",
    "KeypairRow",
    "ProjectMemberRow",
    "ProjectResourcePolicyRow",
    "ProjectRow",
    "ResourceGroupRow",
    "SessionDependencyRow",
    "SessionRow",
    "StatusHistoryRow",
    "UserResourcePolicyRow",
    "UserRow",
    "UtcDateTime",
    "VFolderRow",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class DomainRow(Base):
    __tablename__ = "domains"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Cap on the domain's combined occupancy (decimal strings; empty = unlimited)."""


class KeypairResourcePolicyRow(Base):
    """Limits per access key (Backend.AI's keypair resource policy); the scheduler enforces them."""

    __tablename__ = "keypair_resource_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    default_for_unspecified: Mapped[str] = mapped_column(String(16), default="UNLIMITED")
    """LIMITED or UNLIMITED: what a slot missing from ``total_resource_slots`` allows."""
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Cap on the key's combined occupancy (decimal strings)."""
    max_session_lifetime: Mapped[int] = mapped_column(Integer, default=0)
    """Seconds; 0 = unlimited."""
    max_concurrent_sessions: Mapped[int] = mapped_column(Integer, default=30)
    max_pending_session_count: Mapped[int | None] = mapped_column(Integer)
    """None = unlimited."""
    max_pending_session_resource_slots: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """None = unlimited."""
    max_concurrent_sftp_sessions: Mapped[int] = mapped_column(Integer, default=1)
    max_containers_per_session: Mapped[int] = mapped_column(Integer, default=1)
    idle_timeout: Mapped[int] = mapped_column(Integer, default=0)
    """Seconds; 0 = never idle-terminated."""
    allowed_vfolder_hosts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserResourcePolicyRow(Base):
    __tablename__ = "user_resource_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    max_vfolder_count: Mapped[int] = mapped_column(Integer, default=0)
    """0 = unlimited."""
    max_quota_scope_size: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Bytes; -1 = unlimited."""
    max_session_count_per_model_session: Mapped[int] = mapped_column(Integer, default=10)
    max_customized_image_count: Mapped[int] = mapped_column(Integer, default=3)
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default="{}")
    """Cap on the combined occupancy of all the user's keypairs (decimal strings; empty =
    unlimited); added by 0004_scheduling, enforced by the scheduler."""


class ProjectResourcePolicyRow(Base):
    __tablename__ = "project_resource_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    max_vfolder_count: Mapped[int] = mapped_column(Integer, default=0)
    """0 = unlimited."""
    max_quota_scope_size: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Bytes; -1 = unlimited."""
    max_network_count: Mapped[int] = mapped_column(Integer, default=3)


class ProjectRow(Base):
    """A project (Backend.AI's "group") inside a domain."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("domain_name", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    resource_policy: Mapped[str | None] = mapped_column(
        ForeignKey("project_resource_policies.name"), default="default")
    """Always written by the manager (nullable only so SQLite could add it in place)."""
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(128), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    """superadmin, admin, user or monitor."""
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    resource_policy: Mapped[str | None] = mapped_column(
        ForeignKey("user_resource_policies.name"), default="default")
    """Always written by the manager (nullable only so SQLite could add it in place)."""
    full_name: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    password_hash: Mapped[str | None] = mapped_column(Text)
    """``scrypt$n$r$p$salt$hash`` (see bai.manager.domain.passwords); None = no password login."""
    need_password_change: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    """Consecutive failed password logins; reset by a success or by the lockout expiring."""
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    modified_at: Mapped[datetime | None]


class ProjectMemberRow(Base):
    __tablename__ = "project_members"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), default="member")
    """member or admin (a project admin manages the project's sessions and folders)."""


class KeypairRow(Base):
    __tablename__ = "keypairs"

    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    resource_policy: Mapped[str | None] = mapped_column(
        ForeignKey("keypair_resource_policies.name"), default="default")
    """Always written by the manager (nullable only so SQLite could add it in place)."""
    rate_limit: Mapped[int] = mapped_column(Integer, default=30000)
    """Requests per 15-minute window (Backend.AI's unit); the gateway enforces it."""
    last_used: Mapped[datetime | None]


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    """ALIVE, LOST or TERMINATED."""
    capacity: Mapped[dict[str, Any]]
    """Total slots (decimal strings)."""
    occupied: Mapped[dict[str, Any]]
    """Slots reserved by placed kernels (decimal strings); the scheduler's source of truth."""
    architecture: Mapped[str] = mapped_column(String(32))
    resource_group: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    first_contact: Mapped[datetime]
    last_heartbeat: Mapped[datetime]


class ImageRow(Base):
    __tablename__ = "images"

    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(128), default="")
    labels: Mapped[dict[str, Any]]
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    architecture: Mapped[str] = mapped_column(String(32), default="")
    aliases: Mapped[list[Any]]
    """From the ``ai.bai.aliases`` label."""
    updated_at: Mapped[datetime]


class AgentImageRow(Base):
    """Which agent holds which image (replaced at every registration)."""

    __tablename__ = "agent_images"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    image_ref: Mapped[str] = mapped_column(
        ForeignKey("images.ref", ondelete="CASCADE"), primary_key=True, index=True
    )


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("access_key", "live_name", name="uq_sessions_live_name"),
        UniqueConstraint("access_key", "request_id", name="uq_sessions_request_id"),
        # Admin session pages: one state, newest first (migration 0007).
        Index("ix_sessions_state_created_at_id", "state", "created_at", "id"),
        Index("ix_sessions_access_key_created_at", "access_key", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    live_name: Mapped[str | None] = mapped_column(String(64))
    access_key: Mapped[str] = mapped_column(ForeignKey("keypairs.access_key"))
    domain_name: Mapped[str] = mapped_column(ForeignKey("domains.name"))
    project_name: Mapped[str] = mapped_column(String(64))
    session_type: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    state_changed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    terminated_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    """Scheduling priority 0-100 (higher first; Backend.AI's default 10)."""
    starts_at: Mapped[datetime | None]
    """Not scheduled before this time (None: as soon as possible)."""
    started_at: Mapped[datetime | None]
    """When the session first entered RUNNING (its lifetime counts from there)."""
    last_activity_at: Mapped[datetime | None]
    """Latest execution or app start (written in batches; None: none since it started)."""


class KernelRow(Base):
    __tablename__ = "kernels"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), index=True)
    container_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    cluster_role: Mapped[str] = mapped_column(String(16), default="main")
    cluster_idx: Mapped[int] = mapped_column(Integer, default=1)
    occupied_slots: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class StatusHistoryRow(Base):
    __tablename__ = "session_status_history"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class VFolderRow(Base):
    """A virtual folder (contents on the storage proxy). ``live_name`` is ``name`` until the
    folder is deleted, then NULL, so a live name is unique per owner."""

    __tablename__ = "vfolders"
    __table_args__ = (
        UniqueConstraint("owner_user_id", "live_name", name="uq_vfolders_user_live_name"),
        UniqueConstraint("owner_project_id", "live_name", name="uq_vfolders_project_live_name"),
        CheckConstraint("(owner_user_id IS NULL) <> (owner_project_id IS NULL)",
                        name="ck_vfolders_one_owner"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    live_name: Mapped[str | None] = mapped_column(String(64))
    volume: Mapped[str] = mapped_column(String(64))
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"))
    owner_project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"))
    permission: Mapped[str] = mapped_column(String(8))
    """ro, rw or wd."""
    usage_mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    """ready, delete-pending (in the trash), delete-complete (purged) or deleted (before 0005)."""
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    """When it went to the trash (or was deleted)."""
    cloneable: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Per-folder quota; 0 = none."""
    creator_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """Who created it; no foreign key, so it never blocks deleting that user."""


class VFolderShareRow(Base):
    """A user's access to a folder they do not own, with its own permission (share or accepted
    invitation)."""

    __tablename__ = "vfolder_shares"

    vfolder_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vfolders.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    permission: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class VFolderInvitationRow(Base):
    """An invitation to a user folder. ``pending_flag`` is True while pending, else NULL, so the
    unique constraint allows one pending invitation per folder and invitee."""

    __tablename__ = "vfolder_invitations"
    __table_args__ = (
        UniqueConstraint("vfolder_id", "invitee_user_id", "pending_flag",
                         name="uq_vfolder_invitations_pending"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    vfolder_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vfolders.id", ondelete="CASCADE"))
    inviter_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"))
    invitee_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)
    permission: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    """pending, accepted, rejected or canceled."""
    pending_flag: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class VFolderQuotaScopeRow(Base):
    """Total bytes all folders of a user or a project may hold."""

    __tablename__ = "vfolder_quota_scopes"

    scope_type: Mapped[str] = mapped_column(String(8), primary_key=True)
    """user or project."""
    scope_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class AuditLogRow(Base):
    """One admin or session action: who did what to which target, when, and whether it worked."""

    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """No foreign key: the trail outlives deleted users."""
    actor_access_key: Mapped[str | None] = mapped_column(String(32))
    actor_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    """Dotted verb, e.g. ``user.create``, ``session.destroy``."""
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(128))
    success: Mapped[bool] = mapped_column(Boolean)
    error_reason: Mapped[str] = mapped_column(String(64), default="")
    """The domain error's UPPER_SNAKE reason when ``success`` is false."""
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ResourceGroupRow(Base):
    """A resource group (Backend.AI's scaling group): its agents, scheduler and who may use it."""

    __tablename__ = "resource_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    scheduler: Mapped[str] = mapped_column(String(64), default="fifo")
    """Name of a ``backendai_scheduler_v10`` plugin."""
    agent_selector: Mapped[str] = mapped_column(String(64), default="dispersed")
    """Name of a ``backendai_agentselector_v10`` plugin."""
    scheduler_opts: Mapped[dict[str, Any]]
    """Plugin options (e.g. fair-share window and half-life)."""
    allowed_domains: Mapped[list[Any]]
    """Domain names that may use the group; empty: every domain."""
    allowed_projects: Mapped[list[Any]]
    """``domain/project`` names that may use the group; empty: every project."""
    created_at: Mapped[datetime]


class SessionDependencyRow(Base):
    """``session_id`` starts only after ``depends_on`` finished successfully."""

    __tablename__ = "session_dependencies"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class FairShareWeightRow(Base):
    """Fair-share weight of a user (``scope`` "user", subject the e-mail) or a project
    (``scope`` "project", subject ``domain/project``); absent means 1."""

    __tablename__ = "fair_share_weights"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    weight: Mapped[str] = mapped_column(String(32))
    """A positive decimal string."""
