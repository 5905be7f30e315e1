"""Lifecycle timers for the expiry loop (issue 3): when a session started running and when it
last saw an execution or app start.

Cluster sessions need no schema change: kernels already carry cluster_role / cluster_idx, and
the cluster mode and timeouts live in the session's spec (JSON).

Revision ID: 0006_cluster_sessions
Revises: 0005_vfolder_model
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_cluster_sessions"
down_revision = "0005_vfolder_model"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("started_at", _TS, nullable=True))
        batch.add_column(sa.Column("last_activity_at", _TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_activity_at")
        batch.drop_column("started_at")
