"""Records keep a small sketch of their shingle set (its size and its 128 bin minima, 516 bytes) instead
of the set itself: verification rules most candidates out on the sketch, and makes the set again from
the text for the few that remain.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("sketch", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("records", "sketch")
