"""Song jobs: a group per request and the delivered message of each job.

Revision ID: 0005_song_jobs
Revises: 0004_image_results
Create Date: 2026-12-01 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_song_jobs"
down_revision: str | None = "0004_image_results"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("delivery_message_id", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_group_id"))
        batch_op.drop_column("delivery_message_id")
        batch_op.drop_column("group_id")
