"""Scheduling: resource groups, session priority / start time / dependencies, fair-share weights
(issue 3).

Revision ID: 0004_scheduling
Revises: 0003_tenancy
Create Date: 2026-11-26
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004_scheduling"
down_revision = "0003_tenancy"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    groups = op.create_table(
        "resource_groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("scheduler", sa.String(64), nullable=False),
        sa.Column("agent_selector", sa.String(64), nullable=False),
        sa.Column("scheduler_opts", sa.JSON(), nullable=False),
        sa.Column("allowed_domains", sa.JSON(), nullable=False),
        sa.Column("allowed_projects", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_resource_groups"),
    )
    # Every install starts with the group agents and sessions use when they name none.
    op.bulk_insert(groups, [{
        "name": "default", "description": "the default resource group", "is_active": True,
        "scheduler": "fifo", "agent_selector": "dispersed", "scheduler_opts": {},
        "allowed_domains": [], "allowed_projects": [], "created_at": datetime.now(UTC),
    }])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False,
                                   server_default="10"))
        batch.add_column(sa.Column("starts_at", _TS, nullable=True))
    op.create_table(
        "session_dependencies",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("depends_on", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "depends_on", name="pk_session_dependencies"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE",
                                name="fk_session_dependencies_session_id_sessions"),
        sa.ForeignKeyConstraint(["depends_on"], ["sessions.id"], ondelete="CASCADE",
                                name="fk_session_dependencies_depends_on_sessions"),
    )
    op.create_index("ix_session_dependencies_depends_on", "session_dependencies",
                    ["depends_on"])
    # Backend.AI's user policies carry no slot cap; ours do (the scheduler enforces it).
    with op.batch_alter_table("user_resource_policies") as batch:
        batch.add_column(sa.Column("total_resource_slots", sa.JSON(), nullable=False,
                                   server_default="{}"))
    op.create_table(
        "fair_share_weights",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("weight", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", name="pk_fair_share_weights"),
    )


def downgrade() -> None:
    op.drop_table("fair_share_weights")
    with op.batch_alter_table("user_resource_policies") as batch:
        batch.drop_column("total_resource_slots")
    op.drop_index("ix_session_dependencies_depends_on", table_name="session_dependencies")
    op.drop_table("session_dependencies")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("starts_at")
        batch.drop_column("priority")
    op.drop_table("resource_groups")
