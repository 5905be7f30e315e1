"""Vfolder model: project folders, invitations and shares, trash, quotas (issue 4).

Adds to ``vfolders``: ``cloneable``, ``quota_bytes`` (0 = none) and ``creator_user_id`` (who made a
project folder); new tables ``vfolder_shares`` (user-level access with its own permission),
``vfolder_invitations`` (``pending_flag`` is TRUE while pending, else NULL, so one pending
invitation per folder and invitee is a plain unique constraint) and ``vfolder_quota_scopes``
(total bytes per user or project).

Revision ID: 0005_vfolder_model
Revises: 0004_scheduling
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_vfolder_model"
down_revision = "0004_scheduling"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("vfolders", sa.Column("cloneable", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column("vfolders", sa.Column("quota_bytes", sa.BigInteger(), nullable=False,
                                        server_default="0"))
    # No foreign key: the creator is informational and must not block deleting that user.
    op.add_column("vfolders", sa.Column("creator_user_id", sa.Uuid(), nullable=True))
    op.create_table(
        "vfolder_shares",
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("vfolder_id", "user_id", name="pk_vfolder_shares"),
        sa.ForeignKeyConstraint(["vfolder_id"], ["vfolders.id"], ondelete="CASCADE",
                                name="fk_vfolder_shares_vfolder_id_vfolders"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_vfolder_shares_user_id_users"),
    )
    op.create_index("ix_vfolder_shares_user_id", "vfolder_shares", ["user_id"])
    op.create_table(
        "vfolder_invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("inviter_user_id", sa.Uuid(), nullable=False),
        sa.Column("invitee_user_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pending_flag", sa.Boolean(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("modified_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vfolder_invitations"),
        sa.ForeignKeyConstraint(["vfolder_id"], ["vfolders.id"], ondelete="CASCADE",
                                name="fk_vfolder_invitations_vfolder_id_vfolders"),
        sa.ForeignKeyConstraint(["inviter_user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_vfolder_invitations_inviter_user_id_users"),
        sa.ForeignKeyConstraint(["invitee_user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_vfolder_invitations_invitee_user_id_users"),
        sa.UniqueConstraint("vfolder_id", "invitee_user_id", "pending_flag",
                            name="uq_vfolder_invitations_pending"),
    )
    op.create_index("ix_vfolder_invitations_invitee_user_id", "vfolder_invitations",
                    ["invitee_user_id"])
    op.create_table(
        "vfolder_quota_scopes",
        sa.Column("scope_type", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("scope_type", "scope_id", name="pk_vfolder_quota_scopes"),
    )


def downgrade() -> None:
    op.drop_table("vfolder_quota_scopes")
    op.drop_index("ix_vfolder_invitations_invitee_user_id", "vfolder_invitations")
    op.drop_table("vfolder_invitations")
    op.drop_index("ix_vfolder_shares_user_id", "vfolder_shares")
    op.drop_table("vfolder_shares")
    with op.batch_alter_table("vfolders") as batch:
        batch.drop_column("creator_user_id")
        batch.drop_column("quota_bytes")
        batch.drop_column("cloneable")
