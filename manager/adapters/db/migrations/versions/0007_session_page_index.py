"""Session pages by state: (state, created_at, id) replaces (state, created_at).

The admin session list pages over ids ordered by creation time, newest first, ties broken by
id; with this index a one-state page is a (backward) index scan instead of a sort over every
matching row.

Revision ID: 0007_session_page_index
Revises: 0006_cluster_sessions
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0007_session_page_index"
down_revision = "0006_cluster_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_sessions_state_created_at", table_name="sessions")
    op.create_index("ix_sessions_state_created_at_id", "sessions", ["state", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_state_created_at_id", table_name="sessions")
    op.create_index("ix_sessions_state_created_at", "sessions", ["state", "created_at"])
