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
    "Base",
    "DomainRow",
    "ImageRow",
    "KernelRow",
    "KeypairRow",
    "ProjectMemberRow",
    "ProjectRow",
    "SessionRow",
    "StatusHistoryRow",
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


class ProjectMemberRow(Base):
    __tablename__ = "project_members"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class KeypairRow(Base):
    __tablename__ = "keypairs"

    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


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
        Index("ix_sessions_state_created_at", "state", "created_at"),
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
    """ready or deleted."""
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
