"""Voice: per-user /tts voice and per-server reading mode.

Revision ID: 0006_tts
Revises: 0002
Create Date: 2026-12-01 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_tts"
down_revision: str | None = "0005_song_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tts_user_settings",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("voice", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_tts_user_settings")),
    )
    op.create_table(
        "tts_reading",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("announce_speaker", sa.Boolean(), nullable=False),
        sa.Column("skip_bots", sa.Boolean(), nullable=False),
        sa.Column("voice_members_only", sa.Boolean(), nullable=False),
        sa.Column("required_role_id", sa.BigInteger(), nullable=True),
        sa.Column("max_chars", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_tts_reading")),
    )


def downgrade() -> None:
    op.drop_table("tts_reading")
    op.drop_table("tts_user_settings")
