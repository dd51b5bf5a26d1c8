"""Template counts get snapshots: the counts as of a ``shingle_counts`` row, so a process starts from the
newest snapshot and the rows after it (not from every row ever written), and the rows it covers go.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shingle_count_snapshots",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
        sa.Column("counts", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shingle_count_snapshots")
