"""Vfolder model: project folders, invitations and shares, trash, quotas (issue 4).

Revision ID: 0005_vfolder_model
Revises: 0004_scheduling
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005_vfolder_model"
down_revision = "0004_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
