"""Initial schema: tenancy, keypairs, agents, images, sessions, kernels, status history.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_domains"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.ForeignKeyConstraint(
            ["domain_name"], ["domains.name"], name="fk_projects_domain_name_domains"
        ),
        sa.UniqueConstraint("domain_name", "name", name="uq_projects_domain_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(128), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.ForeignKeyConstraint(
            ["domain_name"], ["domains.name"], name="fk_users_domain_name_domains"
        ),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "user_id", name="pk_project_members"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], ondelete="CASCADE",
            name="fk_project_members_project_id_projects",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE",
            name="fk_project_members_user_id_users",
        ),
    )
    op.create_table(
        "keypairs",
        sa.Column("access_key", sa.String(32), nullable=False),
        sa.Column("secret_key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("access_key", name="pk_keypairs"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_keypairs_user_id_users"),
    )
    op.create_index("ix_keypairs_user_id", "keypairs", ["user_id"])
    op.create_table(
        "agents",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("capacity", sa.JSON(), nullable=False),
        sa.Column("occupied", sa.JSON(), nullable=False),
        sa.Column("architecture", sa.String(32), nullable=False),
        sa.Column("resource_group", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("first_contact", _TS, nullable=False),
        sa.Column("last_heartbeat", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
    )
    op.create_index("ix_agents_status", "agents", ["status"])
    op.create_index("ix_agents_resource_group", "agents", ["resource_group"])
    op.create_table(
        "images",
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("architecture", sa.String(32), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_images"),
    )
    op.create_table(
        "agent_images",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("image_ref", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "image_ref", name="pk_agent_images"),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], ondelete="CASCADE",
            name="fk_agent_images_agent_id_agents",
        ),
        sa.ForeignKeyConstraint(
            ["image_ref"], ["images.ref"], ondelete="CASCADE",
            name="fk_agent_images_image_ref_images",
        ),
    )
    op.create_index("ix_agent_images_image_ref", "agent_images", ["image_ref"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("live_name", sa.String(64), nullable=True),
        sa.Column("access_key", sa.String(32), nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("project_name", sa.String(64), nullable=False),
        sa.Column("session_type", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state_changed_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("terminated_at", _TS, nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["access_key"], ["keypairs.access_key"], name="fk_sessions_access_key_keypairs"
        ),
        sa.ForeignKeyConstraint(
            ["domain_name"], ["domains.name"], name="fk_sessions_domain_name_domains"
        ),
        sa.UniqueConstraint("access_key", "live_name", name="uq_sessions_live_name"),
        sa.UniqueConstraint("access_key", "request_id", name="uq_sessions_request_id"),
    )
    op.create_index("ix_sessions_state_created_at", "sessions", ["state", "created_at"])
    op.create_index(
        "ix_sessions_access_key_created_at", "sessions", ["access_key", "created_at"]
    )
    op.create_table(
        "kernels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("container_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cluster_role", sa.String(16), nullable=False),
        sa.Column("cluster_idx", sa.Integer(), nullable=False),
        sa.Column("occupied_slots", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kernels"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], ondelete="CASCADE",
            name="fk_kernels_session_id_sessions",
        ),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_kernels_agent_id_agents"),
    )
    op.create_index("ix_kernels_session_id", "kernels", ["session_id"])
    op.create_index("ix_kernels_agent_id", "kernels", ["agent_id"])
    op.create_table(
        "session_status_history",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_status_history"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], ondelete="CASCADE",
            name="fk_session_status_history_session_id_sessions",
        ),
    )
    op.create_index(
        "ix_session_status_history_session_id", "session_status_history", ["session_id"]
    )


def downgrade() -> None:
    for table in (
        "session_status_history",
        "kernels",
        "sessions",
        "agent_images",
        "images",
        "agents",
        "keypairs",
        "project_members",
        "users",
        "projects",
        "domains",
    ):
        op.drop_table(table)
