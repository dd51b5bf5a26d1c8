"""Failures a person retried: when, and the task that carries the messages again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("failures", sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("failures", sa.Column("retry_task_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("failures", "retry_task_id")
    op.drop_column("failures", "retried_at")
