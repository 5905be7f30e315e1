"""Virtual folders: one row per folder, owned by a user or a project.

Revision ID: 0002_vfolders
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_vfolders"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("live_name", sa.String(64), nullable=True),
        sa.Column("volume", sa.String(64), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("owner_project_id", sa.Uuid(), nullable=True),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("usage_mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vfolders"),
        sa.ForeignKeyConstraint(["owner_user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_vfolders_owner_user_id_users"),
        sa.ForeignKeyConstraint(["owner_project_id"], ["projects.id"], ondelete="CASCADE",
                                name="fk_vfolders_owner_project_id_projects"),
        sa.UniqueConstraint("owner_user_id", "live_name", name="uq_vfolders_user_live_name"),
        sa.UniqueConstraint("owner_project_id", "live_name",
                            name="uq_vfolders_project_live_name"),
        sa.CheckConstraint("(owner_user_id IS NULL) <> (owner_project_id IS NULL)",
                           name="ck_vfolders_one_owner"),
    )


def downgrade() -> None:
    op.drop_table("vfolders")
