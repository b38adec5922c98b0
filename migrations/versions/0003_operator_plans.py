"""Operator plans: grants table, per-server quota scope, aggregated send-data refusals.

Revision ID: 0003_operator_plans
Revises: 0002
Create Date: 2026-12-01 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_operator_plans"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_type", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("plan", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_grants")),
    )
    with op.batch_alter_table("operator_grants", schema=None) as batch_op:
        batch_op.create_index("ix_operator_grants_subject", ["subject_type", "subject_id"], unique=False)

    # Existing counters were global: they keep scope 0.
    with op.batch_alter_table("quota_usage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.BigInteger(), server_default="0", autoincrement=False, nullable=False)
        )
        batch_op.drop_constraint("pk_quota_usage", type_="primary")
        batch_op.create_primary_key(
            "pk_quota_usage", ["user_id", "scope", "feature", "window", "window_start"]
        )

    with op.batch_alter_table("send_data_audit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("refusal_key", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("minute", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_send_data_audit_refusal_key"), ["refusal_key", "minute"]
        )
        batch_op.create_index(batch_op.f("ix_send_data_audit_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("send_data_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_data_audit_created_at"))
        batch_op.drop_constraint(batch_op.f("uq_send_data_audit_refusal_key"), type_="unique")
        batch_op.drop_column("minute")
        batch_op.drop_column("refusal_key")
        batch_op.drop_column("count")

    op.execute("DELETE FROM quota_usage WHERE scope <> 0")
    with op.batch_alter_table("quota_usage", schema=None) as batch_op:
        batch_op.drop_constraint("pk_quota_usage", type_="primary")
        batch_op.create_primary_key("pk_quota_usage", ["user_id", "feature", "window", "window_start"])
        batch_op.drop_column("scope")

    with op.batch_alter_table("operator_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_operator_grants_subject")
    op.drop_table("operator_grants")
