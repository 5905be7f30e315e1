"""Multi-kernel cluster sessions and lifecycle timers (issue 3).

Revision ID: 0006_cluster_sessions
Revises: 0005_vfolder_model
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0006_cluster_sessions"
down_revision = "0005_vfolder_model"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
