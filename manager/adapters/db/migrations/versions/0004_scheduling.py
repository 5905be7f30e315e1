"""Scheduling: resource groups, resource policies, priorities, predicates (issue 3).

Revision ID: 0004_scheduling
Revises: 0003_tenancy
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0004_scheduling"
down_revision = "0003_tenancy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
