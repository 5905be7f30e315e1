"""Tenancy: roles, keypair state, resource policies' owners, password login, audit log (issue 5).

Adds the three resource-policy tables (keypair, user, project; the scheduler enforces them), a
``resource_policy`` name on keypairs, users and projects, the per-key rate limit, password login
columns with a per-user lockout, the project-admin role on memberships, and the audit log.

Policy references are nullable foreign keys: SQLite can only add a foreign-key column whose
default is NULL without rebuilding the table, and rebuilding ``users`` would cascade-delete its
memberships and folders. Existing rows are back-filled with the "default" policy, and the
manager always writes a name, so NULL never appears in practice.

Revision ID: 0003_tenancy
Revises: 0002_vfolders
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_tenancy"
down_revision = "0002_vfolders"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_EMPTY_JSON = sa.text("'{}'")

# (table, referenced policy table) for the policy-name columns this revision adds.
_POLICY_REFS = (
    ("keypairs", "keypair_resource_policies"),
    ("users", "user_resource_policies"),
    ("projects", "project_resource_policies"),
)


def _create_policy_tables() -> None:
    op.create_table(
        "keypair_resource_policies",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("default_for_unspecified", sa.String(16), nullable=False),
        sa.Column("total_resource_slots", sa.JSON(), nullable=False),
        sa.Column("max_session_lifetime", sa.Integer(), nullable=False),
        sa.Column("max_concurrent_sessions", sa.Integer(), nullable=False),
        sa.Column("max_pending_session_count", sa.Integer(), nullable=True),
        sa.Column("max_pending_session_resource_slots", sa.JSON(), nullable=True),
        sa.Column("max_concurrent_sftp_sessions", sa.Integer(), nullable=False),
        sa.Column("max_containers_per_session", sa.Integer(), nullable=False),
        sa.Column("idle_timeout", sa.Integer(), nullable=False),
        sa.Column("allowed_vfolder_hosts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_keypair_resource_policies"),
    )
    op.create_table(
        "user_resource_policies",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("max_vfolder_count", sa.Integer(), nullable=False),
        sa.Column("max_quota_scope_size", sa.BigInteger(), nullable=False),
        sa.Column("max_session_count_per_model_session", sa.Integer(), nullable=False),
        sa.Column("max_customized_image_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_user_resource_policies"),
    )
    op.create_table(
        "project_resource_policies",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("max_vfolder_count", sa.Integer(), nullable=False),
        sa.Column("max_quota_scope_size", sa.BigInteger(), nullable=False),
        sa.Column("max_network_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_project_resource_policies"),
    )
    now = sa.func.current_timestamp()
    op.execute(sa.table(
        "keypair_resource_policies", sa.column("name"), sa.column("created_at"),
        sa.column("default_for_unspecified"), sa.column("total_resource_slots", sa.JSON()),
        sa.column("max_session_lifetime"), sa.column("max_concurrent_sessions"),
        sa.column("max_concurrent_sftp_sessions"), sa.column("max_containers_per_session"),
        sa.column("idle_timeout"), sa.column("allowed_vfolder_hosts", sa.JSON()),
    ).insert().values(
        name="default", created_at=now, default_for_unspecified="UNLIMITED",
        total_resource_slots={}, max_session_lifetime=0, max_concurrent_sessions=30,
        max_concurrent_sftp_sessions=1, max_containers_per_session=1, idle_timeout=0,
        allowed_vfolder_hosts={},
    ))
    op.execute(sa.table(
        "user_resource_policies", sa.column("name"), sa.column("created_at"),
        sa.column("max_vfolder_count"), sa.column("max_quota_scope_size"),
        sa.column("max_session_count_per_model_session"),
        sa.column("max_customized_image_count"),
    ).insert().values(
        name="default", created_at=now, max_vfolder_count=0, max_quota_scope_size=-1,
        max_session_count_per_model_session=10, max_customized_image_count=3,
    ))
    op.execute(sa.table(
        "project_resource_policies", sa.column("name"), sa.column("created_at"),
        sa.column("max_vfolder_count"), sa.column("max_quota_scope_size"),
        sa.column("max_network_count"),
    ).insert().values(
        name="default", created_at=now, max_vfolder_count=0, max_quota_scope_size=-1,
        max_network_count=3,
    ))


def _add_policy_reference(table: str, policy_table: str) -> None:
    fk_name = f"fk_{table}_resource_policy_{policy_table}"
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a referencing column in place only when its default is NULL.
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN resource_policy VARCHAR(64) "
            f"CONSTRAINT {fk_name} REFERENCES {policy_table} (name)"
        )
    else:
        op.add_column(table, sa.Column("resource_policy", sa.String(64), nullable=True))
        op.create_foreign_key(fk_name, table, policy_table, ["resource_policy"], ["name"])
    op.execute(f"UPDATE {table} SET resource_policy = 'default'")


def upgrade() -> None:
    _create_policy_tables()
    for table, policy_table in _POLICY_REFS:
        _add_policy_reference(table, policy_table)

    op.add_column("keypairs", sa.Column("rate_limit", sa.Integer(), nullable=False,
                                        server_default="30000"))
    op.add_column("keypairs", sa.Column("last_used", _TS, nullable=True))

    op.add_column("users", sa.Column("full_name", sa.String(64), nullable=False,
                                     server_default=""))
    op.add_column("users", sa.Column("description", sa.Text(), nullable=False,
                                     server_default=""))
    op.add_column("users", sa.Column("password_hash", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("need_password_change", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("users", sa.Column("failed_login_count", sa.Integer(), nullable=False,
                                     server_default="0"))
    op.add_column("users", sa.Column("locked_until", _TS, nullable=True))
    op.add_column("users", sa.Column("last_login_at", _TS, nullable=True))
    op.add_column("users", sa.Column("modified_at", _TS, nullable=True))

    op.add_column("domains", sa.Column("total_resource_slots", sa.JSON(), nullable=False,
                                       server_default=_EMPTY_JSON))
    op.add_column("projects", sa.Column("total_resource_slots", sa.JSON(), nullable=False,
                                        server_default=_EMPTY_JSON))
    op.add_column("project_members", sa.Column("role", sa.String(16), nullable=False,
                                               server_default="member"))

    op.create_table(
        "audit_logs",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_access_key", sa.String(32), nullable=True),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(128), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_logs"),
    )
    op.create_index("ix_audit_logs_at", "audit_logs", ["at"])
    op.create_index("ix_audit_logs_target", "audit_logs", ["target_type", "target_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_logs_target", table_name="audit_logs")
    op.drop_index("ix_audit_logs_at", table_name="audit_logs")
    op.drop_table("audit_logs")
    with op.batch_alter_table("project_members") as batch:
        batch.drop_column("role")
    for table in ("domains", "projects"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("total_resource_slots")
    with op.batch_alter_table("users") as batch:
        for column in ("modified_at", "last_login_at", "locked_until", "failed_login_count",
                       "need_password_change", "password_hash", "description", "full_name"):
            batch.drop_column(column)
    with op.batch_alter_table("keypairs") as batch:
        batch.drop_column("last_used")
        batch.drop_column("rate_limit")
    for table, policy_table in _POLICY_REFS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_resource_policy_{policy_table}",
                                  type_="foreignkey")
            batch.drop_column("resource_policy")
    op.drop_table("project_resource_policies")
    op.drop_table("user_resource_policies")
    op.drop_table("keypair_resource_policies")
