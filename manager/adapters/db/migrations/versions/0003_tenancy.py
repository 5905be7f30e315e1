"""Tenancy: roles, keypair state, resource policies' owners, password login, audit log (issue 5).

Revision ID: 0003_tenancy
Revises: 0002_vfolders
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003_tenancy"
down_revision = "0002_vfolders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
