"""Governance: config change audit and send-data post audit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 19:47:12.215430
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=False),
        sa.Column("setting", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_audit")),
    )
    with op.batch_alter_table("config_audit", schema=None) as batch_op:
        batch_op.create_index("ix_config_audit_guild_recent", ["guild_id", "id"], unique=False)

    op.create_table(
        "send_data_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_send_data_audit_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_data_audit")),
    )
    with op.batch_alter_table("send_data_audit", schema=None) as batch_op:
        batch_op.create_index("ix_send_data_audit_guild_recent", ["guild_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("send_data_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_send_data_audit_guild_recent")

    op.drop_table("send_data_audit")
    with op.batch_alter_table("config_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_config_audit_guild_recent")

    op.drop_table("config_audit")
